use serde_json::{Value, json};

use super::*;
use crate::validate::validate_manifest;

fn errors_of(spec: Value) -> Vec<String> {
    let mut manifest =
        json!({"apiVersion": API_VERSION, "kind": "DataWarehouseStack", "metadata": {"name": "w"}, "spec": spec});
    strip_structural_errors(&mut manifest).into_iter().map(|e| format!("{}: {}", e.path, e.message)).collect()
}

fn manifest_errors(spec_yaml: &str) -> Vec<String> {
    let indented: String = spec_yaml.lines().map(|l| format!("  {l}\n")).collect();
    let text = format!("apiVersion: {API_VERSION}\nkind: DataWarehouseStack\nmetadata: {{name: w}}\nspec:\n{indented}");
    match validate_manifest(&text) {
        Ok(_) => vec![],
        Err(crate::template::LoadError::Invalid(errors)) => {
            errors.0.into_iter().map(|e| format!("{}: {}", e.path, e.message)).collect()
        }
        Err(other) => vec![other.to_string()],
    }
}

#[test]
fn named_cases_report_their_path_and_a_readable_reason() {
    let cases: &[(&str, Value, &str)] = &[
        (
            "enum",
            json!({"partitions": [{"table": "t", "column": "c", "interval": "1 day", "epoch": "fortnightly"}]}),
            "spec.partitions[0].epoch: \"fortnightly\" is not one of",
        ),
        (
            "type",
            json!({"partitions": [{"table": "t", "column": "c", "interval": "1 day", "premake": "four"}]}),
            "spec.partitions[0].premake: \"four\" is not of type",
        ),
        (
            "negative count",
            json!({"partitions": [{"table": "t", "column": "c", "interval": "1 day", "premake": -1}]}),
            "spec.partitions[0].premake: -1 is less than the minimum",
        ),
        ("required", json!({"sources": [{"name": "cp"}]}), "spec.sources[0].wrapper: is required"),
        (
            "unknown top field, close to a known one",
            json!({"sourcse": []}),
            "spec.sourcse: unknown field (did you mean \"sources\"?)",
        ),
        (
            "unknown nested field",
            json!({"sources": [{"name": "cp", "wrapper": "postgres_fdw", "optionz": {}}]}),
            "spec.sources[0].optionz: unknown field (did you mean \"options\"?)",
        ),
        ("unknown field with no near name", json!({"refreshs": []}), "spec.refreshs: unknown field"),
        (
            "list item of the wrong type",
            json!({"roles": [{"name": "a", "grants": [{"schema": "s", "privileges": ["SELECT", 5]}]}]}),
            "spec.roles[0].grants[0].privileges[1]: 5 is not of type \"string\"",
        ),
        (
            "map value of the wrong type",
            json!({"postgres": {"parameters": {"work_mem": 64}}}),
            "spec.postgres.parameters.work_mem: 64 is not of type \"string\"",
        ),
    ];
    for (what, spec, expected) in cases {
        let found = errors_of(spec.clone());
        assert!(found.iter().any(|e| e.starts_with(expected)), "{what}: expected {expected:?} in {found:?}");
        assert_eq!(found.len(), 1, "{what}: exactly one error, got {found:?}");
    }
}

#[test]
fn unknown_top_level_keys_and_a_wrong_api_version_are_named() {
    let mut manifest = json!({"apiVersion": "pgwarehouse.dev/v1", "kind": "DataWarehouseStack", "specs": {}});
    let found: Vec<_> = strip_structural_errors(&mut manifest).into_iter().map(|e| e.path).collect();
    assert_eq!(found, ["specs", "apiVersion"]);
}

#[test]
fn a_null_optional_field_is_accepted_as_kubectl_does() {
    assert!(errors_of(json!({"postgres": {"image": null}, "extensions": [{"name": "x", "schema": null}]})).is_empty());
}

#[test]
fn structural_and_semantic_errors_come_together() {
    let found = manifest_errors(
        "partitions: [{table: public.m, column: time, interval: 1 fortnight, epoch: fortnightly}]\n\
         schedules: [{name: s, schedule: 5 minutes, command: SELECT 1}]\nrefreshs: []\n",
    );
    let mut paths: Vec<_> = found.iter().map(|e| e.split(": ").next().unwrap()).collect();
    paths.sort();
    assert_eq!(
        paths,
        ["spec.partitions[0].epoch", "spec.partitions[0].interval", "spec.refreshs", "spec.schedules[0].schedule"],
        "{found:?}"
    );
}

/// The schema's type; a nullable one is `[type, "null"]` after [`strict`].
fn type_of(schema: &Value) -> Option<&str> {
    match schema.get("type")? {
        Value::Array(types) => types.first()?.as_str(),
        single => single.as_str(),
    }
}

/// A value of the wrong type for a field of this schema.
fn wrong_value(schema: &Value) -> Value {
    match type_of(schema) {
        Some("array" | "object") => json!("not-a-collection"),
        _ => json!({"not": "a scalar"}),
    }
}

/// The smallest value a schema accepts: required properties filled in, collections empty.
fn minimal(schema: &Value) -> Value {
    match type_of(schema) {
        Some("object") => {
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let properties = schema.get("properties").cloned().unwrap_or_default();
            Value::Object(required.iter().map(|name| (name.to_string(), minimal(&properties[*name]))).collect())
        }
        Some("array") => json!([]),
        Some("integer" | "number") => json!(1),
        Some("boolean") => json!(true),
        _ => match schema.get("enum").and_then(|e| e.get(0)) {
            Some(first) => first.clone(),
            None => json!("x"),
        },
    }
}

/// For every field under `schema`: its path and a minimal instance with that field set wrong.
fn every_field_set_wrong(schema: &Value, path: &str, out: &mut Vec<(String, Value)>) {
    let mut nested = Vec::new();
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            nested.push((format!("{path}.{name}"), child, Some(name.clone())));
        }
    }
    if let Some(items) = schema.get("items") {
        nested.push((format!("{path}[0]"), items, None));
    }
    if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        nested.push((format!("{path}.key"), values, Some("key".into())));
    }
    for (child_path, child, key) in nested {
        let mut inner = Vec::new();
        inner.push((child_path.clone(), wrong_value(child)));
        every_field_set_wrong(child, &child_path, &mut inner);
        for (field_path, child_value) in inner {
            let wrapped = match &key {
                Some(key) => {
                    let mut object = minimal(schema);
                    object[key.as_str()] = child_value;
                    object
                }
                None => json!([child_value]),
            };
            out.push((field_path, wrapped));
        }
    }
}

#[test]
fn one_bad_value_per_spec_field_is_reported_at_its_path() {
    let (schema, _) = &*SPEC_SCHEMA;
    let mut cases = Vec::new();
    every_field_set_wrong(schema, "spec", &mut cases);
    assert!(cases.len() > 60, "the walk covers the whole spec, found {}", cases.len());
    for (path, spec) in &cases {
        let found = errors_of(spec.clone());
        assert!(found.iter().any(|e| e.starts_with(&format!("{path}: "))), "{path}: got {found:?}");
    }
}

#[test]
fn an_unknown_field_is_reported_in_every_object_of_the_spec() {
    let (schema, _) = &*SPEC_SCHEMA;
    let mut cases = Vec::new();
    every_field_set_wrong(schema, "spec", &mut cases);
    let mut objects = 0;
    for (path, spec) in &cases {
        // Where the field set wrong is an object with declared properties, add a stray key instead.
        let mut spec = spec.clone();
        let Some(target) = spec.pointer_mut(&pointer(path)) else { continue };
        let Some(object_schema) = schema_at(schema, path).filter(|s| s.get("properties").is_some()) else { continue };
        *target = minimal(object_schema);
        target["bogusField"] = json!(1);
        objects += 1;
        let found = errors_of(spec);
        assert!(found.contains(&format!("{path}.bogusField: unknown field")), "{path}: got {found:?}");
    }
    assert!(objects > 10, "checked {objects} objects");
}

fn pointer(path: &str) -> String {
    path.trim_start_matches("spec")
        .replace("[", ".")
        .replace(']', "")
        .split('.')
        .skip(1)
        .map(|s| format!("/{s}"))
        .collect()
}

fn schema_at<'a>(schema: &'a Value, path: &str) -> Option<&'a Value> {
    let mut at = schema;
    for part in path.trim_start_matches("spec").replace('[', ".[").split('.').skip(1) {
        at = if part.starts_with('[') { at.get("items")? } else { at.get("properties")?.get(part)? };
    }
    Some(at)
}
