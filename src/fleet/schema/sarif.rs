//! `kustos validate --output sarif`: the findings as SARIF 2.1.0, which code
//! review tools (GitHub code scanning, GitLab, Azure DevOps) read to
//! annotate the lines of a pull request.

use std::collections::BTreeMap;

use serde_json::{json, Value as Json};

use crate::fleet::validate::Report;

/// What each rule checks, for the tool's rule list.
fn rule_text(rule: &str) -> &'static str {
    match rule {
        "schema" => "Objects match the schema of their kind (unknown fields, types, required fields, allowed values)",
        "schema-api-version" => "Objects use an API version that serves their kind",
        "secret-not-encrypted" => "Secrets and secretGenerator inputs are SOPS-encrypted",
        "sops-metadata" | "sops-config" | "sops-rule" | "sops-recipients" | "sops-cluster-key" => {
            "SOPS files follow .sops.yaml and the clusters can decrypt them"
        }
        "service-account" => "Flux Kustomizations and HelmReleases name a service account",
        "cross-namespace-ref" => "Sources are referenced within their own namespace",
        "source-url" => "Sources point at URLs the fleet allows",
        "remote-base" => "Kustomizations use no remote bases",
        "kustomize-build" => "Every kustomization builds",
        "yaml-syntax" | "read" => "Every YAML file reads and parses",
        _ => "kustos validate rule",
    }
}

/// The report as a SARIF log.
pub fn sarif(report: &Report) -> Json {
    let mut rules: BTreeMap<&str, Json> = BTreeMap::new();
    let results: Vec<Json> = report
        .findings
        .iter()
        .map(|f| {
            rules.entry(f.rule).or_insert_with(|| {
                json!({
                    "id": f.rule,
                    "shortDescription": { "text": rule_text(f.rule) },
                })
            });
            let mut region = json!({});
            if let Some(l) = f.line {
                region = json!({ "startLine": l });
            }
            let mut location = json!({
                "physicalLocation": {
                    "artifactLocation": { "uri": f.file, "uriBaseId": "SRCROOT" },
                }
            });
            if f.line.is_some() {
                location["physicalLocation"]["region"] = region;
            }
            if let Some(o) = &f.object {
                location["logicalLocations"] = json!([{ "name": o, "kind": "object" }]);
            }
            json!({
                "ruleId": f.rule,
                "level": "error",
                "message": { "text": f.message },
                "locations": [location],
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "kustos",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules.into_values().collect::<Vec<_>>(),
            }},
            "results": results,
        }],
    })
}
