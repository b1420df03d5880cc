#!/usr/bin/env python3
"""Regenerates schemas/bundle.json.gz, the schemas `kustos validate` embeds.

Reads the upstream files named in SOURCES (the Kubernetes OpenAPI v3
specification of one minor, the Flux controllers' CRDs and Kyverno's
policy CRDs), converts them to one JSON Schema (draft 7) document and
writes it gzipped. Needs the network (raw files from GitHub) unless
--mirrors names a folder of local git clones (`owner+name/repo` or
`owner/name` under it); it needs PyYAML. Not run by the tests.

The conversion, like kubeconform's `-strict` schemas:
- `$ref`s point into one shared `definitions` table, and only the
  definitions the listed kinds reach are kept;
- every object with `properties` rejects other fields
  (`additionalProperties: false`), except where the API server keeps unknown
  fields (`x-kubernetes-preserve-unknown-fields`) and inside
  allOf/anyOf/oneOf/not, which only add constraints to a structural schema;
- `x-kubernetes-int-or-string` becomes integer-or-string, a custom
  resource's `metadata` is Kubernetes' ObjectMeta;
- descriptions, defaults, formats and other annotations are dropped: they
  validate nothing (formats are not asserted, as the API server does not
  assert most of them either).

Usage: scripts/refresh-schemas.py [--mirrors DIR] [--check]
"""
import argparse
import gzip
import io
import json
import os
import subprocess
import sys
import urllib.request

try:
    import yaml
except ImportError:  # pragma: no cover
    sys.exit("refresh-schemas: needs PyYAML (pip install pyyaml)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "schemas", "bundle.json.gz")

KUBERNETES_MINOR = "1.34"
# kubernetes-sigs/kubectl-validate keeps byte-for-byte copies of
# kubernetes/kubernetes' api/openapi-spec/v3 for each release branch; a
# pinned commit of it is reproducible, a release branch is not.
KUBERNETES = ("kubernetes-sigs/kubectl-validate",
              "a97ccfaca20b164819afdae780392496f6ed6bbd",
              "pkg/openapiclient/builtins/" + KUBERNETES_MINOR)
# group-version path -> kinds checked.
KUBERNETES_KINDS = {
    "api/v1": ["Namespace", "ServiceAccount", "ConfigMap", "Secret", "Service",
               "ResourceQuota", "LimitRange", "PersistentVolumeClaim", "Pod"],
    "apis/apps/v1": ["Deployment", "StatefulSet", "DaemonSet"],
    "apis/batch/v1": ["Job", "CronJob"],
    "apis/rbac.authorization.k8s.io/v1": ["Role", "ClusterRole", "RoleBinding",
                                          "ClusterRoleBinding"],
    "apis/networking.k8s.io/v1": ["NetworkPolicy", "Ingress"],
    "apis/policy/v1": ["PodDisruptionBudget"],
    "apis/autoscaling/v2": ["HorizontalPodAutoscaler"],
    "apis/apiextensions.k8s.io/v1": ["CustomResourceDefinition"],
}

# (repository, release tag, commit, CRD files, previous line's tag and
# commit). The controllers of the newest Flux release, and Kyverno. API
# versions the previous supported release line still served (Flux 2.7's
# source.toolkit.fluxcd.io/v1beta2, say) keep that release's schema and are
# marked `not_served_by`: clusters upgrade Flux and repositories move to the new
# versions at different times, so such an object is reported in the summary,
# not as a finding.
CRDS = [
    ("fluxcd/source-controller", "v1.9.1", "092bcff3c9c3f258a44310507201d295ff294ba6", [
        "config/crd/bases/source.toolkit.fluxcd.io_gitrepositories.yaml",
        "config/crd/bases/source.toolkit.fluxcd.io_ocirepositories.yaml",
        "config/crd/bases/source.toolkit.fluxcd.io_helmrepositories.yaml",
        "config/crd/bases/source.toolkit.fluxcd.io_helmcharts.yaml",
        "config/crd/bases/source.toolkit.fluxcd.io_buckets.yaml",
        "config/crd/bases/source.toolkit.fluxcd.io_externalartifacts.yaml",
    ], ("v1.7.4", "2eb5a81a22b414215f25d7981fd3ab7b078ad6ca")),
    ("fluxcd/kustomize-controller", "v1.9.4", "1324b615da01038e2859cbcde604bd5434f21933", [
        "config/crd/bases/kustomize.toolkit.fluxcd.io_kustomizations.yaml",
    ], ("v1.7.3", "090c49bdb679f827353d1658a7ab60a168dbb3a5")),
    ("fluxcd/helm-controller", "v1.6.3", "372c34e2b4a455d24ef6cbb8321c82c4533dbbd8", [
        "config/crd/bases/helm.toolkit.fluxcd.io_helmreleases.yaml",
    ], ("v1.4.5", "3ebc2f57b7323371bf0d067bfb4e411592124bdf")),
    ("fluxcd/notification-controller", "v1.9.3", "0b6fcb118ea64a36d7ca7d29904e4f5075be87bc", [
        "config/crd/bases/notification.toolkit.fluxcd.io_alerts.yaml",
        "config/crd/bases/notification.toolkit.fluxcd.io_providers.yaml",
        "config/crd/bases/notification.toolkit.fluxcd.io_receivers.yaml",
    ], ("v1.7.5", "89e4c4bfd6b9be807542036c549c2bea7c0ddf8c")),
    ("fluxcd/image-reflector-controller", "v1.2.0", "cf3258bac4120a481fecf24d24c5245a5901f9c3", [
        "config/crd/bases/image.toolkit.fluxcd.io_imagerepositories.yaml",
        "config/crd/bases/image.toolkit.fluxcd.io_imagepolicies.yaml",
    ], ("v1.0.4", "82454c4d88b1b933d5760593709c3cc64fb0e1fa")),
    ("fluxcd/image-automation-controller", "v1.2.1", "aec086297d39dc23ece874cad38efcff0b9ac0f5", [
        "config/crd/bases/image.toolkit.fluxcd.io_imageupdateautomations.yaml",
    ], ("v1.0.4", "bb63e16a96d52de5fa40d96007cfae3134f45017")),
    # The Kyverno release kustos pins (src/fleet/templates.rs).
    ("kyverno/kyverno", "v1.14.4", "ae34194871e6be1b0c1fd8de47302378db950065", [
        "config/crds/kyverno/kyverno.io_clusterpolicies.yaml",
        "config/crds/kyverno/kyverno.io_policies.yaml",
    ], None),
]

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
DROP = {"description", "default", "example", "format", "nullable", "externalDocs",
        "discriminator", "fields-to-discriminateBy", "title"}
JUNCTORS = ("allOf", "anyOf", "oneOf", "not")


def read(mirrors, repo, ref, path):
    if mirrors:
        owner, name = repo.split("/")
        for d in (os.path.join(mirrors, f"{owner}+{name}", "repo"),
                  os.path.join(mirrors, owner, name)):
            if os.path.isdir(d):
                return subprocess.check_output(["git", "-C", d, "show", f"{ref}:{path}"])
        sys.exit(f"refresh-schemas: no clone of {repo} under {mirrors}")
    url = f"https://raw.githubusercontent.com/{repo}/{ref}/{path}"
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.read()


def convert(node, structural=True):
    """One OpenAPI v3 (or CRD) schema node as strict JSON Schema."""
    if isinstance(node, list):
        return [convert(n, structural) for n in node]
    if not isinstance(node, dict):
        return node
    # `allOf: [{$ref}]` is how the Kubernetes spec attaches a description or
    # default to a reference; the reference alone validates the same.
    all_of = node.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and "$ref" in all_of[0]:
        node = dict(all_of[0])
    if "$ref" in node:
        ref = node["$ref"].replace("#/components/schemas/", "#/definitions/")
        return {"$ref": ref}
    out = {}
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    for k, v in node.items():
        if k in DROP or k.startswith("x-kubernetes-"):
            continue
        if k == "properties":
            out[k] = {p: convert(s, structural) for p, s in v.items()}
        elif k in ("items", "additionalProperties") and isinstance(v, dict):
            out[k] = convert(v, structural)
        elif k in JUNCTORS:
            out[k] = convert(v, False)
        else:
            out[k] = v
    if node.get("x-kubernetes-int-or-string") is True:
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}] + out.get("anyOf", [])
    if structural and "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    return out


def refs(node, found):
    if isinstance(node, dict):
        r = node.get("$ref")
        if isinstance(r, str) and r.startswith("#/definitions/"):
            found.add(r[len("#/definitions/"):])
        for v in node.values():
            refs(v, found)
    elif isinstance(node, list):
        for v in node:
            refs(v, found)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mirrors", help="folder of local git clones to read instead of the network")
    ap.add_argument("--check", action="store_true", help="fail if the bundle would change")
    args = ap.parse_args()

    definitions = {}
    kinds = {}
    repo, commit, base = KUBERNETES
    for gv_path, wanted in KUBERNETES_KINDS.items():
        spec = json.loads(read(args.mirrors, repo, commit, f"{base}/{gv_path}.json"))
        for name, schema in spec["components"]["schemas"].items():
            definitions.setdefault(name, convert(schema))
            for gvk in schema.get("x-kubernetes-group-version-kind", []):
                if gvk["kind"] in wanted:
                    api = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
                    kinds.setdefault(api, {})[gvk["kind"]] = {"schema": name}
    missing = [(p, k) for p, ks in KUBERNETES_KINDS.items() for k in ks
               if not any(k in v for v in kinds.values())]
    if missing:
        sys.exit(f"refresh-schemas: kinds not found in the Kubernetes spec: {missing}")
    sources = [{"name": "kubernetes", "version": KUBERNETES_MINOR, "repository": repo,
                "commit": commit, "path": base}]

    by_content = {}

    def add_crds(repo, commit, paths, not_served_by):
        for path in paths:
            crd = yaml.safe_load(read(args.mirrors, repo, commit, path))
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for v in crd["spec"]["versions"]:
                api = f"{group}/{v['name']}"
                if not v.get("served", False) or kind in kinds.get(api, {}):
                    continue
                schema = convert(v["schema"]["openAPIV3Schema"])
                props = schema.setdefault("properties", {})
                # The API server takes these on every object, declared or not.
                for field in ("apiVersion", "kind"):
                    props.setdefault(field, {"type": "string"})
                props["metadata"] = {"$ref": f"#/definitions/{OBJECT_META}"}
                text = json.dumps(schema, sort_keys=True)
                name = by_content.get(text)
                if name is None:
                    name = f"{group}.{v['name']}.{kind}"
                    by_content[text] = name
                    definitions[name] = schema
                entry = {"schema": name}
                if not_served_by:
                    entry["not_served_by"] = not_served_by
                kinds.setdefault(api, {})[kind] = entry

    for repo, tag, commit, paths, previous in CRDS:
        source = {"name": repo, "version": tag, "repository": repo, "commit": commit,
                  "path": sorted(paths)}
        add_crds(repo, commit, paths, None)
        if previous:
            source["previous"] = {"version": previous[0], "commit": previous[1]}
            add_crds(repo, previous[1], paths, f"{repo} {tag}")
        sources.append(source)

    # Keep only what the kinds reach.
    keep, todo = set(), [e["schema"] for ks in kinds.values() for e in ks.values()]
    while todo:
        n = todo.pop()
        if n in keep:
            continue
        keep.add(n)
        found = set()
        refs(definitions[n], found)
        todo.extend(found - keep)
    bundle = {
        "kubernetes": KUBERNETES_MINOR,
        "sources": sources,
        "kinds": kinds,
        "definitions": {n: definitions[n] for n in sorted(keep)},
    }
    data = json.dumps(bundle, sort_keys=True, separators=(",", ":")).encode()
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0) as gz:
        gz.write(data)
    if args.check:
        with open(OUT, "rb") as f:
            if gzip.decompress(f.read()) != data:
                sys.exit("refresh-schemas: schemas/bundle.json.gz is out of date")
        return
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "wb") as f:
        f.write(buf.getvalue())
    n_kinds = sum(len(k) for k in kinds.values())
    print(f"{OUT}: {n_kinds} kinds, {len(keep)} definitions, "
          f"{len(data)} bytes, {len(buf.getvalue())} gzipped")


if __name__ == "__main__":
    main()
