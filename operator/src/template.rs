//! Loading a manifest and merging the stack template under it.
//!
//! The merge works on plain YAML/JSON values before the typed spec exists, so a template can
//! fill any field and the user's manifest wins wherever both speak.

use serde_json::Value;

use crate::api::DataWarehouseStack;
use crate::field_errors::{FieldError, ValidationErrors};
use crate::structure::strip_structural_errors;

/// Templates built into the binary, by name.
const TEMPLATES: &[(&str, &str)] = &[("datawarehouse", include_str!("../../stack-templates/datawarehouse.yaml"))];

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the manifest is not valid YAML: {0}")]
    Yaml(String),
    #[error("the manifest is not a DataWarehouseStack: {0}")]
    Shape(String),
    #[error("spec.template: unknown template {0:?} (known: {known})", known = template_names().join(", "))]
    UnknownTemplate(String),
    #[error("{0}")]
    Invalid(ValidationErrors),
}

pub fn template_names() -> Vec<&'static str> {
    TEMPLATES.iter().map(|(name, _)| *name).collect()
}

/// Parses a manifest as one would `kubectl apply` it and merges its template under the spec.
/// Any structural error (wrong type, unknown field, ...) fails the load with all of them.
pub fn load_manifest(yaml: &str) -> Result<DataWarehouseStack, LoadError> {
    let (stack, errors) = read_manifest(yaml)?;
    if errors.is_empty() { Ok(stack) } else { Err(LoadError::Invalid(ValidationErrors(errors))) }
}

/// Parses a manifest, checks its structure and merges its template under the spec. Values that
/// fail the structural check are left out of the stack and returned as errors, so that the
/// caller can validate the rest and report everything at once.
pub fn read_manifest(yaml: &str) -> Result<(DataWarehouseStack, Vec<FieldError>), LoadError> {
    let mut manifest: Value = serde_saphyr::from_str(yaml).map_err(|e| LoadError::Yaml(e.to_string()))?;
    let kind = manifest.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind != "DataWarehouseStack" {
        return Err(LoadError::Shape(format!("kind is {kind:?}")));
    }
    let errors = strip_structural_errors(&mut manifest);
    if let Some(spec) = manifest.get_mut("spec") {
        *spec = with_template(spec.take())?;
    }
    match serde_json::from_value(manifest) {
        Ok(stack) => Ok((stack, errors)),
        // A required field that failed the check cannot be left out; its error says why.
        Err(_) if !errors.is_empty() => Err(LoadError::Invalid(ValidationErrors(errors))),
        Err(e) => Err(LoadError::Shape(e.to_string())),
    }
}

/// A stack read from the API server, with its template merged beneath its spec.
pub fn resolve(stack: &DataWarehouseStack) -> Result<DataWarehouseStack, LoadError> {
    let spec = serde_json::to_value(&stack.spec).map_err(|e| LoadError::Shape(e.to_string()))?;
    let spec = serde_json::from_value(with_template(spec)?).map_err(|e| LoadError::Shape(e.to_string()))?;
    Ok(DataWarehouseStack { metadata: stack.metadata.clone(), spec, status: stack.status.clone() })
}

/// The spec with its template (if it names one) merged beneath it.
pub fn with_template(spec: Value) -> Result<Value, LoadError> {
    let Some(name) = spec.get("template").and_then(Value::as_str) else {
        return Ok(spec);
    };
    let text = TEMPLATES
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, text)| *text)
        .ok_or_else(|| LoadError::UnknownTemplate(name.to_string()))?;
    let template: Value = serde_saphyr::from_str(text).expect("built-in templates are valid YAML");
    Ok(merge(template, spec))
}

/// Deep merge where `over` wins: objects merge key by key, lists of named objects merge item by
/// item by `name`, anything else is replaced.
fn merge(under: Value, over: Value) -> Value {
    match (under, over) {
        (Value::Object(mut base), Value::Object(top)) => {
            for (key, value) in top {
                let merged = match base.remove(&key) {
                    Some(existing) => merge(existing, value),
                    None => value,
                };
                base.insert(key, merged);
            }
            Value::Object(base)
        }
        (Value::Array(base), Value::Array(top)) if is_named_list(&base) && is_named_list(&top) => {
            let mut merged = base;
            for item in top {
                match merged.iter().position(|b| b.get("name") == item.get("name")) {
                    Some(at) => merged[at] = merge(merged[at].take(), item),
                    None => merged.push(item),
                }
            }
            Value::Array(merged)
        }
        (_, over) => over,
    }
}

fn is_named_list(items: &[Value]) -> bool {
    items.iter().all(|item| item.get("name").is_some_and(Value::is_string))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn user_wins_and_named_lists_merge_by_name() {
        let under = json!({"postgres": {"database": "warehouse", "parameters": {"work_mem": "64MB"}},
            "extensions": [{"name": "pg_cron"}, {"name": "pg_partman", "schema": "partman"}]});
        let over = json!({"postgres": {"parameters": {"work_mem": "1GB"}},
            "extensions": [{"name": "pg_partman", "version": "5.2.4"}, {"name": "hstore"}]});
        assert_eq!(
            merge(under, over),
            json!({"postgres": {"database": "warehouse", "parameters": {"work_mem": "1GB"}},
                "extensions": [{"name": "pg_cron"},
                    {"name": "pg_partman", "schema": "partman", "version": "5.2.4"}, {"name": "hstore"}]})
        );
    }

    #[test]
    fn manifest_gets_the_template_beneath_it() {
        let stack = load_manifest(
            "apiVersion: pgwarehouse.dev/v1alpha1\nkind: DataWarehouseStack\nmetadata: {name: w}\n\
             spec:\n  template: datawarehouse\n  postgres: {database: dw}\n",
        )
        .unwrap();
        assert_eq!(stack.spec.postgres.database.as_deref(), Some("dw"));
        assert_eq!(stack.spec.postgres.storage.size.as_deref(), Some("10Gi"));
        let names: Vec<_> = stack.spec.extensions.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["postgres_fdw", "pg_cron", "pg_partman", "pg_stat_statements"]);
    }

    #[test]
    fn unknown_template_and_wrong_kind_are_refused() {
        let err = load_manifest("kind: DataWarehouseStack\nmetadata: {name: w}\nspec: {template: nope}\n");
        assert!(matches!(err, Err(LoadError::UnknownTemplate(name)) if name == "nope"));
        assert!(matches!(load_manifest("kind: Pod\n"), Err(LoadError::Shape(_))));
    }
}

#[cfg(test)]
mod example_tests {
    use crate::validate::validate;

    #[test]
    fn the_shipped_examples_are_valid() {
        for text in [
            include_str!("../../stack-templates/examples/quickstart.yaml"),
            include_str!("../../stack-templates/examples/customer-warehouse.yaml"),
        ] {
            let stack = super::load_manifest(text).unwrap();
            let stack = validate(&stack).unwrap_or_else(|e| panic!("{}: {e}", stack.metadata.name.unwrap_or_default()));
            assert!(stack.extensions.iter().any(|e| e.name == "pg_partman"));
        }
    }
}
