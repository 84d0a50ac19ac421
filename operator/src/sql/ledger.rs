//! The engine's ledger: what it created (so pruning touches nothing else) and which migrations ran.

use serde_json::Value;

use crate::sql::quote::Sql;
use crate::validate::LEDGER_SCHEMA;

/// A change to the ledger, made in the same transaction as the DDL it describes.
#[derive(Debug, Clone, PartialEq)]
pub enum LedgerOp {
    Record {
        kind: &'static str,
        name: String,
        detail: Value,
    },
    Forget {
        kind: &'static str,
        name: String,
    },
    MigrationApplied {
        name: String,
        checksum: String,
    },
    /// Records the foreign tables an `IMPORT FOREIGN SCHEMA` just made: those of `server` in
    /// `schema` that were not there before.
    RecordImported {
        server: String,
        schema: String,
        import: String,
        existing: Vec<String>,
    },
}

/// Creates the ledger; readable by its owner (the operator's superuser) only.
pub fn bootstrap() -> Vec<Sql> {
    vec![
        Sql::new("CREATE SCHEMA IF NOT EXISTS ").ident(LEDGER_SCHEMA),
        Sql::new("REVOKE ALL ON SCHEMA ").ident(LEDGER_SCHEMA).push(" FROM PUBLIC"),
        Sql::new("CREATE TABLE IF NOT EXISTS ")
            .qualified(LEDGER_SCHEMA, "managed")
            .push(" (kind text NOT NULL, name text NOT NULL, detail jsonb NOT NULL DEFAULT '{}', ")
            .push("recorded_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (kind, name))"),
        Sql::new("CREATE TABLE IF NOT EXISTS ")
            .qualified(LEDGER_SCHEMA, "migrations")
            .push(" (name text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"),
    ]
}

/// The statements for a unit's ledger changes, batched: one insert, one delete at most.
pub fn render(ops: &[LedgerOp]) -> Vec<Sql> {
    let mut statements = Vec::new();
    let forgets: Vec<Sql> = ops
        .iter()
        .filter_map(|op| match op {
            LedgerOp::Forget { kind, name } => Some(Sql::new("(").literal(kind).push(", ").literal(name).push(")")),
            _ => None,
        })
        .collect();
    if !forgets.is_empty() {
        statements.push(
            Sql::new("DELETE FROM ")
                .qualified(LEDGER_SCHEMA, "managed")
                .push(" WHERE (kind, name) IN (")
                .join(forgets, ", ")
                .push(")"),
        );
    }
    let records: Vec<Sql> = ops
        .iter()
        .filter_map(|op| match op {
            LedgerOp::Record { kind, name, detail } => Some(
                Sql::new("(")
                    .literal(kind)
                    .push(", ")
                    .literal(name)
                    .push(", ")
                    .literal(&detail.to_string())
                    .push("::jsonb)"),
            ),
            _ => None,
        })
        .collect();
    if !records.is_empty() {
        statements.push(
            Sql::new("INSERT INTO ")
                .qualified(LEDGER_SCHEMA, "managed")
                .push(" (kind, name, detail) VALUES ")
                .join(records, ", ")
                .push(" ON CONFLICT (kind, name) DO UPDATE SET detail = EXCLUDED.detail, recorded_at = now()"),
        );
    }
    for op in ops {
        match op {
            LedgerOp::MigrationApplied { name, checksum } => statements.push(
                Sql::new("INSERT INTO ")
                    .qualified(LEDGER_SCHEMA, "migrations")
                    .push(" (name, checksum) VALUES (")
                    .literal(name)
                    .push(", ")
                    .literal(checksum)
                    .push(")"),
            ),
            LedgerOp::RecordImported { server, schema, import, existing } => statements.push(
                Sql::new("INSERT INTO ")
                    .qualified(LEDGER_SCHEMA, "managed")
                    .push(" (kind, name, detail) SELECT 'foreign_table', n.nspname || '.' || c.relname, ")
                    .push("jsonb_build_object('schema', n.nspname, 'table', c.relname, 'server', s.srvname, 'import', ")
                    .literal(import)
                    .push(") FROM pg_foreign_table ft JOIN pg_class c ON c.oid = ft.ftrelid ")
                    .push("JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_foreign_server s ON s.oid = ft.ftserver ")
                    .push("WHERE s.srvname = ")
                    .literal(server)
                    .push(" AND n.nspname = ")
                    .literal(schema)
                    .push(" AND c.relname <> ALL (ARRAY[")
                    .join(existing.iter().map(|t| Sql::default().literal(t)), ", ")
                    .push("]::text[]) ON CONFLICT (kind, name) DO NOTHING"),
            ),
            LedgerOp::Record { .. } | LedgerOp::Forget { .. } => {}
        }
    }
    statements
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_and_forgets_are_batched() {
        let ops = [
            LedgerOp::Record { kind: "server", name: "a'b".into(), detail: json!({}) },
            LedgerOp::Record { kind: "job", name: "j".into(), detail: json!({"x": 1}) },
            LedgerOp::Forget { kind: "job", name: "old".into() },
        ];
        let sql: Vec<String> = render(&ops).iter().map(ToString::to_string).collect();
        assert_eq!(
            sql,
            [
                r#"DELETE FROM "pgwarehouse"."managed" WHERE (kind, name) IN (('job', 'old'))"#,
                r#"INSERT INTO "pgwarehouse"."managed" (kind, name, detail) VALUES ('server', 'a''b', '{}'::jsonb), ('job', 'j', '{"x":1}'::jsonb) ON CONFLICT (kind, name) DO UPDATE SET detail = EXCLUDED.detail, recorded_at = now()"#,
            ]
        );
    }
}
