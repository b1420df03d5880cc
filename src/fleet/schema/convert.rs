//! A CustomResourceDefinition's schemas as strict JSON Schemas, converted
//! the way scripts/refresh-schemas.py converts the built-in ones (keep the
//! two in step): unknown fields rejected wherever the API server would
//! reject them, int-or-string made explicit, annotations dropped and
//! `metadata` checked as Kubernetes' ObjectMeta.

use serde_json::{Map as JsonMap, Value as Json};

use crate::sops::value::Map;

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const DROP: &[&str] = &[
    "description",
    "default",
    "example",
    "format",
    "nullable",
    "externalDocs",
    "discriminator",
    "title",
];
const JUNCTORS: &[&str] = &["allOf", "anyOf", "oneOf", "not"];

/// `(apiVersion, kind, schema)` for every served version of `doc`, when it
/// is a CRD; each schema carries the built-in definitions it refers to.
pub(super) fn crd_versions(doc: &Map, defs: &JsonMap<String, Json>) -> Vec<(String, String, Json)> {
    let crd = super::map_json(doc);
    let is_crd = crd.get("kind").and_then(Json::as_str) == Some("CustomResourceDefinition")
        && crd
            .get("apiVersion")
            .and_then(Json::as_str)
            .is_some_and(|a| a.starts_with("apiextensions.k8s.io/"));
    if !is_crd {
        return Vec::new();
    }
    let group = crd
        .pointer("/spec/group")
        .and_then(Json::as_str)
        .unwrap_or("");
    let kind = crd
        .pointer("/spec/names/kind")
        .and_then(Json::as_str)
        .unwrap_or("");
    let Some(versions) = crd.pointer("/spec/versions").and_then(Json::as_array) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for v in versions {
        let name = v.get("name").and_then(Json::as_str).unwrap_or("");
        let served = v.get("served").and_then(Json::as_bool).unwrap_or(false);
        let Some(schema) = v.pointer("/schema/openAPIV3Schema") else {
            continue;
        };
        if !served || name.is_empty() || kind.is_empty() {
            continue;
        }
        let mut s = convert(schema, true);
        if let Some(Json::Object(props)) = s.as_object_mut().map(|o| {
            o.entry("properties")
                .or_insert_with(|| Json::Object(JsonMap::new()))
        }) {
            // The API server takes these on every object, declared or not.
            for field in ["apiVersion", "kind"] {
                props
                    .entry(field)
                    .or_insert_with(|| serde_json::json!({"type": "string"}));
            }
            props.insert(
                "metadata".into(),
                serde_json::json!({ "$ref": format!("#/definitions/{OBJECT_META}") }),
            );
        }
        let api = if group.is_empty() {
            name.to_string()
        } else {
            format!("{group}/{name}")
        };
        out.push((api, kind.to_string(), super::with_definitions(s, defs)));
    }
    out
}

/// One CRD schema node as strict JSON Schema; `structural` is false inside
/// allOf/anyOf/oneOf/not, which only add constraints to the structural
/// schema and so must not reject fields on their own.
pub(super) fn convert(node: &Json, structural: bool) -> Json {
    let o = match node {
        Json::Array(a) => return Json::Array(a.iter().map(|n| convert(n, structural)).collect()),
        Json::Object(o) => o,
        other => return other.clone(),
    };
    let mut out = JsonMap::new();
    let preserve = o.get("x-kubernetes-preserve-unknown-fields") == Some(&Json::Bool(true));
    for (k, v) in o {
        if DROP.contains(&k.as_str()) || k.starts_with("x-kubernetes-") || k == "$ref" {
            continue;
        }
        let c = match (k.as_str(), v) {
            ("properties", Json::Object(props)) => Json::Object(
                props
                    .iter()
                    .map(|(p, s)| (p.clone(), convert(s, structural)))
                    .collect(),
            ),
            ("items" | "additionalProperties", Json::Object(_)) => convert(v, structural),
            (j, _) if JUNCTORS.contains(&j) => convert(v, false),
            _ => v.clone(),
        };
        out.insert(k.clone(), c);
    }
    if o.get("x-kubernetes-int-or-string") == Some(&Json::Bool(true)) {
        out.remove("type");
        let mut any = vec![
            serde_json::json!({"type": "integer"}),
            serde_json::json!({"type": "string"}),
        ];
        if let Some(Json::Array(a)) = out.remove("anyOf") {
            any.extend(a);
        }
        out.insert("anyOf".into(), Json::Array(any));
    }
    if structural
        && out.contains_key("properties")
        && !out.contains_key("additionalProperties")
        && !preserve
    {
        out.insert("additionalProperties".into(), Json::Bool(false));
    }
    Json::Object(out)
}
