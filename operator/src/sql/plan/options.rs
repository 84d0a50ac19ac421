//! FDW option lists (servers, user mappings, foreign tables): create clauses and the
//! ADD / SET / DROP diff against what the catalog holds.

use std::collections::BTreeMap;

use crate::api::SecretValue;
use crate::secrets::Secrets;
use crate::sql::quote::Sql;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionValue<'a> {
    Plain(&'a str),
    Secret(&'a str),
}

impl OptionValue<'_> {
    fn raw(&self) -> &str {
        match self {
            OptionValue::Plain(v) | OptionValue::Secret(v) => v,
        }
    }

    fn append_to(&self, sql: Sql) -> Sql {
        match self {
            OptionValue::Plain(v) => sql.literal(v),
            OptionValue::Secret(v) => sql.secret(v),
        }
    }
}

/// Plain and secret-sourced options together, ordered by name.
pub fn desired<'a>(
    plain: &'a BTreeMap<String, String>,
    secret: &'a BTreeMap<String, SecretValue>,
    secrets: &'a Secrets,
) -> BTreeMap<&'a str, OptionValue<'a>> {
    plain
        .iter()
        .map(|(k, v)| (k.as_str(), OptionValue::Plain(v)))
        .chain(secret.iter().map(|(k, v)| (k.as_str(), OptionValue::Secret(secrets.get(&v.secret_key_ref)))))
        .collect()
}

/// ` OPTIONS (k 'v', ...)`, or nothing when there are no options.
pub fn create_clause(options: &BTreeMap<&str, OptionValue>) -> Sql {
    if options.is_empty() {
        return Sql::default();
    }
    let items = options.iter().map(|(k, v)| v.append_to(Sql::default().ident(k).push(" ")));
    Sql::new(" OPTIONS (").join(items, ", ").push(")")
}

/// ` OPTIONS (ADD .., SET .., DROP ..)` turning `observed` (`key=value` catalog entries) into
/// `desired`, or `None` when they agree.
pub fn alter_clause(observed: &[String], desired: &BTreeMap<&str, OptionValue>) -> Option<Sql> {
    let current: BTreeMap<&str, &str> = observed.iter().map(|o| o.split_once('=').unwrap_or((o, ""))).collect();
    let mut items = Vec::new();
    for (key, value) in desired {
        match current.get(key) {
            Some(now) if *now == value.raw() => {}
            Some(_) => items.push(value.append_to(Sql::new("SET ").ident(key).push(" "))),
            None => items.push(value.append_to(Sql::new("ADD ").ident(key).push(" "))),
        }
    }
    for key in current.keys().filter(|k| !desired.contains_key(*k)) {
        items.push(Sql::new("DROP ").ident(key));
    }
    (!items.is_empty()).then(|| Sql::new(" OPTIONS (").join(items, ", ").push(")"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alter_adds_sets_and_drops_only_what_differs() {
        let observed = ["host=old".to_string(), "port=5432".to_string(), "stale=x".to_string()];
        let desired = BTreeMap::from([
            ("host", OptionValue::Plain("new")),
            ("port", OptionValue::Plain("5432")),
            ("password", OptionValue::Secret("s3cret")),
        ]);
        let sql = alter_clause(&observed, &desired).unwrap();
        assert_eq!(sql.to_string(), r#" OPTIONS (SET "host" 'new', ADD "password" '<redacted>', DROP "stale")"#);
        let same = BTreeMap::from([
            ("host", OptionValue::Plain("old")),
            ("port", OptionValue::Plain("5432")),
            ("stale", OptionValue::Plain("x")),
        ]);
        assert_eq!(alter_clause(&observed, &same), None);
    }
}
