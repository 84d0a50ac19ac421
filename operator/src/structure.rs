//! The manifest's shape, checked before it becomes typed: wrong types, unknown enum values,
//! missing required fields and unknown (misspelled) fields, every one reported with its path.
//!
//! The check is the CRD's own schema (generated from the Rust types, so it cannot drift from
//! them), made strict as kubectl's server-side field validation is: an object with declared
//! properties accepts no others. Values that fail are taken out of the manifest so the rest can
//! still be typed and validated, and all errors reach the user together.

use std::sync::LazyLock;

use jsonschema::error::ValidationErrorKind;
use jsonschema::paths::LocationSegment;
use kube::CustomResourceExt;
use serde_json::{Map, Value};

use crate::api::DataWarehouseStack;
use crate::field_errors::FieldError;

const API_VERSION: &str = "pgwarehouse.dev/v1alpha1";
const TOP_LEVEL_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];

static SPEC_SCHEMA: LazyLock<(Value, jsonschema::Validator)> = LazyLock::new(|| {
    let crd = serde_json::to_value(DataWarehouseStack::crd()).expect("the CRD serializes");
    let mut spec = crd
        .pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec")
        .cloned()
        .expect("the CRD has a spec schema");
    strict(&mut spec);
    let validator = jsonschema::validator_for(&spec).expect("the CRD's spec schema compiles");
    (spec, validator)
});

/// OpenAPI 3.0 as Kubernetes reads it, in JSON Schema terms: `nullable` admits null,
/// `x-kubernetes-int-or-string` admits both, and an object with declared properties rejects
/// undeclared ones.
fn strict(schema: &mut Value) {
    let Value::Object(object) = schema else { return };
    if object.remove("nullable") == Some(Value::Bool(true))
        && let Some(Value::String(kind)) = object.get("type").cloned()
    {
        object.insert("type".into(), Value::Array(vec![Value::String(kind), "null".into()]));
    }
    if object.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) && !object.contains_key("anyOf") {
        object.insert("type".into(), serde_json::json!(["integer", "string"]));
    }
    let preserves_unknown = object.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if object.contains_key("properties") && !object.contains_key("additionalProperties") && !preserves_unknown {
        object.insert("additionalProperties".into(), Value::Bool(false));
    }
    for value in object.values_mut() {
        match value {
            Value::Array(items) => items.iter_mut().for_each(strict),
            other => strict(other),
        }
    }
}

/// Checks the manifest's shape and removes every value that failed, so that what remains types
/// cleanly. Returns the errors, each naming its field.
pub fn strip_structural_errors(manifest: &mut Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let Some(top) = manifest.as_object_mut() else {
        return vec![FieldError { path: "(manifest)".into(), message: "must be a YAML mapping".into() }];
    };
    for key in top.keys().filter(|k| !TOP_LEVEL_FIELDS.contains(&k.as_str())) {
        errors.push(unknown_field(key.clone(), key, TOP_LEVEL_FIELDS.iter().copied()));
    }
    top.retain(|key, _| TOP_LEVEL_FIELDS.contains(&key.as_str()));
    if let Some(version) = top.get("apiVersion")
        && version.as_str() != Some(API_VERSION)
    {
        errors.push(FieldError { path: "apiVersion".into(), message: format!("{version} is not {API_VERSION:?}") });
    }
    let Some(spec) = top.get_mut("spec") else { return errors };
    if spec.is_null() {
        *spec = Value::Object(Map::new());
    }
    let (schema, validator) = &*SPEC_SCHEMA;
    let mut doomed = Vec::new();
    for error in validator.iter_errors(spec) {
        let segments: Vec<Segment> = error.instance_path().iter().map(Segment::from).collect();
        let path = render_path(&segments);
        match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let known = known_properties(schema, &segments);
                for key in unexpected {
                    errors.push(unknown_field(format!("{path}.{key}"), key, known.iter().map(String::as_str)));
                    doomed.push(segments.iter().cloned().chain([Segment::Key(key.clone())]).collect());
                }
            }
            ValidationErrorKind::Required { property } => {
                let field = property.as_str().unwrap_or_default();
                errors.push(FieldError { path: format!("{path}.{field}"), message: "is required".into() });
            }
            _ => {
                errors.push(FieldError { path, message: error.to_string() });
                doomed.push(segments);
            }
        }
    }
    // Deepest first, so that a removal never moves a path still to be removed.
    doomed.sort();
    doomed.dedup();
    for segments in doomed.iter().rev() {
        remove(spec, segments);
    }
    errors
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Segment {
    Key(String),
    Index(usize),
}

impl From<LocationSegment<'_>> for Segment {
    fn from(segment: LocationSegment<'_>) -> Self {
        match segment {
            LocationSegment::Property(name) => Segment::Key(name.to_string()),
            LocationSegment::Index(i) => Segment::Index(i),
        }
    }
}

/// `spec.partitions[0].epoch`, as every other error of the pipeline spells a path.
fn render_path(segments: &[Segment]) -> String {
    let mut path = String::from("spec");
    for segment in segments {
        match segment {
            Segment::Key(key) => {
                path.push('.');
                path.push_str(key);
            }
            Segment::Index(i) => path.push_str(&format!("[{i}]")),
        }
    }
    path
}

fn known_properties(schema: &Value, segments: &[Segment]) -> Vec<String> {
    let mut at = schema;
    for segment in segments {
        at = match segment {
            Segment::Key(key) => at.get("properties").and_then(|p| p.get(key)),
            Segment::Index(_) => at.get("items"),
        }
        .unwrap_or(&Value::Null);
    }
    at.get("properties").and_then(Value::as_object).map(|p| p.keys().cloned().collect()).unwrap_or_default()
}

/// The known name a misspelled `key` most likely meant, if any is close enough.
pub(super) fn closest<'a>(key: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    known
        .map(|candidate| (strsim::damerau_levenshtein(key, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= 2.max(candidate.len() / 3))
        .min()
        .map(|(_, candidate)| candidate)
}

fn unknown_field<'a>(path: String, key: &str, known: impl Iterator<Item = &'a str>) -> FieldError {
    let message = match closest(key, known) {
        Some(candidate) => format!("unknown field (did you mean {candidate:?}?)"),
        None => "unknown field".to_string(),
    };
    FieldError { path, message }
}

fn remove(value: &mut Value, segments: &[Segment]) {
    let Some((last, parents)) = segments.split_last() else {
        *value = Value::Object(Map::new());
        return;
    };
    let mut at = value;
    for segment in parents {
        let next = match (segment, at) {
            (Segment::Key(key), Value::Object(object)) => object.get_mut(key),
            (Segment::Index(i), Value::Array(items)) => items.get_mut(*i),
            _ => None,
        };
        match next {
            Some(next) => at = next,
            None => return,
        }
    }
    match (last, at) {
        (Segment::Key(key), Value::Object(object)) => {
            object.remove(key);
        }
        // Nulled, not removed: later items keep their indexes, so their errors keep their paths.
        (Segment::Index(i), Value::Array(items)) if *i < items.len() => items[*i] = Value::Null,
        _ => {}
    }
}

#[cfg(test)]
mod tests;
