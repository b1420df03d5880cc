use super::*;

fn yaml(s: &str) -> Json {
    let docs = formats::load_plain(Format::Yaml, s.as_bytes()).unwrap();
    to_json(&docs[0])
}

fn violations(s: &Schemas, doc: &str) -> Vec<(String, String)> {
    match s.check(&yaml(doc)) {
        Verdict::Checked { violations, .. } => {
            violations.into_iter().map(|v| (v.path, v.reason)).collect()
        }
        other => panic!("{other:?}"),
    }
}

fn builtin() -> Schemas {
    Schemas::load(None).unwrap()
}

const KS: &str = "apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: team
  namespace: team
  creationTimestamp: null
spec:
  interval: 5m
  path: ./
  prune: true
  serviceAccountName: team
  sourceRef:
    kind: GitRepository
    name: team
";

#[test]
fn a_valid_flux_object_passes() {
    assert_eq!(violations(&builtin(), KS), vec![]);
}

#[test]
fn flux_mistakes_are_named_by_path() {
    let s = builtin();
    let v = violations(&s, &KS.replace("  interval: 5m", "  intervall: 5m"));
    assert!(
        v.contains(&("spec.intervall".into(), "unknown field".into())),
        "{v:?}"
    );
    assert!(
        v.contains(&("spec.interval".into(), "required field is missing".into())),
        "{v:?}"
    );
    let v = violations(&s, &KS.replace("prune: true", "prune: \"yes\""));
    assert_eq!(
        v,
        vec![(
            "spec.prune".into(),
            "must be a boolean, not a string \"yes\"".into()
        )]
    );
    let v = violations(&s, &KS.replace("kind: GitRepository", "kind: GitRepo"));
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].0, "spec.sourceRef.kind");
    assert!(
        v[0].1
            .starts_with("must be one of \"OCIRepository\", \"GitRepository\", \"Bucket\""),
        "{v:?}"
    );
}

#[test]
fn kubernetes_objects_are_checked_strictly() {
    let s = builtin();
    let deploy = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: \"2\"
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx
          resources:
            limits: {cpu: 1, memory: 64Mi}
          ports:
            - containerPort: 80
              protocl: TCP
";
    let v = violations(&s, deploy);
    assert_eq!(
        v,
        vec![
            (
                "spec.replicas".into(),
                "must be an integer, not a string \"2\"".into()
            ),
            (
                "spec.template.spec.containers[0].ports[0].protocl".into(),
                "unknown field".into()
            ),
        ]
    );
}

#[test]
fn secrets_are_checked_without_sops_and_without_their_values() {
    let s = builtin();
    let secret = "apiVersion: v1
kind: Secret
metadata:
  name: creds
data:
  password: ENC[AES256_GCM,data:abc=,iv:x,tag:y,type:str]
sops:
  mac: ENC[AES256_GCM,data:x,iv:y,tag:z,type:str]
  version: 3.9.0
";
    assert_eq!(violations(&s, secret), vec![]);
    let v = violations(&s, &secret.replace("\ndata:\n", "\ndta:\n"));
    assert_eq!(v, vec![("dta".into(), "unknown field".into())]);
    let v = violations(
        &s,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: c\nstringData:\n  token: [hunter2]\n",
    );
    assert_eq!(
        v,
        vec![(
            "stringData.token".into(),
            "must be a string, not a list".into()
        )]
    );
    let v = violations(
        &s,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: c\ntype: 12345\n",
    );
    assert_eq!(
        v,
        vec![("type".into(), "must be a string, not an integer".into())]
    );
}

#[test]
fn wrong_api_versions_and_unknown_kinds() {
    let s = builtin();
    let check = |doc: &str| s.check(&yaml(doc));
    match check(
        "apiVersion: source.toolkit.fluxcd.io/v2\nkind: GitRepository\nmetadata: {name: a}\n",
    ) {
        Verdict::WrongApiVersion(m) => {
            assert!(m.contains("use source.toolkit.fluxcd.io/v1"), "{m}")
        }
        o => panic!("{o:?}"),
    }
    match check(
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {name: a}\n",
    ) {
        Verdict::WrongApiVersion(m) => assert!(m.contains("source.toolkit.fluxcd.io/v1"), "{m}"),
        o => panic!("{o:?}"),
    }
    match check("apiVersion: apps/v1beta1\nkind: Deployment\nmetadata: {name: a}\n") {
        Verdict::WrongApiVersion(m) => {
            assert_eq!(m, "Deployment is not served as apps/v1beta1; use apps/v1")
        }
        o => panic!("{o:?}"),
    }
    assert!(matches!(
        check("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: a}\n"),
        Verdict::Skipped
    ));
    assert!(matches!(
        check("apiVersion: v1\nkind: Endpoints\nmetadata: {name: a}\n"),
        Verdict::Skipped
    ));
    // A version the previous Flux release still served is checked and noted.
    match check("apiVersion: source.toolkit.fluxcd.io/v1beta2\nkind: OCIRepository\nmetadata: {name: a}\nspec:\n  interval: 1m\n  url: oci://ghcr.io/x\n") {
        Verdict::Checked { violations, not_served_by } => {
            assert_eq!(violations, vec![]);
            assert!(not_served_by.unwrap().starts_with("fluxcd/source-controller v"));
        }
        o => panic!("{o:?}"),
    }
}

#[test]
fn kyverno_policies_are_checked() {
    let s = builtin();
    let policy = "apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: p
spec:
  validationFailureAction: Enforce
  rules:
    - name: r
      match:
        any:
          - resources:
              kinds: [Pod]
      validate:
        message: no
        pattern:
          spec:
            anything: goes
";
    assert_eq!(violations(&s, policy), vec![]);
    let v = violations(&s, &policy.replace("Enforce", "Block"));
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].0, "spec.validationFailureAction");
    let v = violations(&s, &policy.replace("      match:", "      mach:"));
    assert!(
        v.contains(&("spec.rules[0].mach".into(), "unknown field".into())),
        "{v:?}"
    );
}

#[test]
fn crds_and_kubeconform_files_given_with_schemas() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("widget.yaml"),
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, plural: widgets}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [size]
              properties:
                size: {type: integer}
                port: {x-kubernetes-int-or-string: true}
                extra: {type: object, x-kubernetes-preserve-unknown-fields: true}
",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("acme.io")).unwrap();
    std::fs::write(
        dir.path().join("acme.io/gadget_v1.json"),
        r#"{"$schema": "http://json-schema.org/schema#", "type": "object", "required": ["spec"]}"#,
    )
    .unwrap();
    let s = Schemas::load(Some(dir.path())).unwrap();
    let w = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\nspec:\n  size: 1\n  port: http\n  extra: {any: thing}\n";
    assert_eq!(violations(&s, w), vec![]);
    let v = violations(&s, &w.replace("size: 1", "sise: 1"));
    assert_eq!(
        v,
        vec![
            ("spec.sise".into(), "unknown field".into()),
            ("spec.size".into(), "required field is missing".into())
        ]
    );
    let v = violations(&s, "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n  labls: {}\nspec: {size: 1}\n");
    assert_eq!(v, vec![("metadata.labls".into(), "unknown field".into())]);
    let v = violations(
        &s,
        "apiVersion: acme.io/v1\nkind: Gadget\nmetadata: {name: g}\n",
    );
    assert_eq!(v, vec![("spec".into(), "required field is missing".into())]);
    assert!(Schemas::load(Some(&dir.path().join("missing"))).is_err());
}

#[test]
fn lines_of_paths() {
    let text = "---
apiVersion: v1
kind: ConfigMap
metadata:
  name: other
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      containers:
      - name: a
        image: x
      - name: b
        ports:
          - containerPort: 80
            protocl: TCP
";
    assert_eq!(
        line_of(
            text,
            "Deployment",
            "web",
            "spec.template.spec.containers[1].ports[0].protocl"
        ),
        Some(20)
    );
    assert_eq!(
        line_of(
            text,
            "Deployment",
            "web",
            "spec.template.spec.containers[0].image"
        ),
        Some(16)
    );
    assert_eq!(line_of(text, "Deployment", "web", "spec.missing"), Some(11));
    assert_eq!(line_of(text, "ConfigMap", "other", ""), Some(2));
    let quoted = "kind: ConfigMap\nmetadata:\n  name: c\n  annotations:\n    a.b/c: x\n";
    assert_eq!(
        line_of(quoted, "ConfigMap", "c", "metadata.annotations[\"a.b/c\"]"),
        Some(5)
    );
    assert_eq!(line_of(text, "Deployment", "nope", "spec"), None);
}

#[test]
fn paths_are_dotted() {
    assert_eq!(
        dotted("/spec/containers/0/ports/1"),
        "spec.containers[0].ports[1]"
    );
    assert_eq!(
        dotted("/metadata/annotations/a.b~1c"),
        "metadata.annotations[\"a.b/c\"]"
    );
    assert_eq!(dotted(""), "");
}
