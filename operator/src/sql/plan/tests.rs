//! Plans computed from hand-made observations: no database needed.

use super::*;
use crate::api::SecretKeyRef;
use crate::sql::observe::{ObservedExtension, ObservedServer, ObservedUserMapping};
use crate::template::load_manifest;
use crate::validate::validate;

const SPEC: &str = "apiVersion: pgwarehouse.dev/v1alpha1\nkind: DataWarehouseStack\nmetadata: {name: w}\nspec:\n  \
    sources:\n  - name: cp\n    wrapper: postgres_fdw\n    options: {host: db}\n    userMapping:\n      \
    secretOptions: {password: {secretKeyRef: {name: cp, key: password}}}\n  \
    schedules: [{name: refresh, schedule: '*/5 * * * *', command: SELECT 1}]\n";

fn setup() -> (ValidatedStack, Secrets) {
    let stack = validate(&load_manifest(SPEC).unwrap()).unwrap();
    let mut secrets = Secrets::default();
    secrets.insert(SecretKeyRef { name: "cp".into(), key: "password".into() }, "hunter2".into());
    (stack, secrets)
}

fn empty_server() -> Observed {
    Observed {
        database: "warehouse".into(),
        current_user: "postgres".into(),
        cron_database_name: Some("warehouse".into()),
        preload_libraries: "pg_cron".into(),
        schemas: vec!["public".into()],
        ..Observed::default()
    }
}

fn ext(name: &str, version: &str) -> ObservedExtension {
    ObservedExtension { name: name.into(), version: version.into(), schema: "public".into() }
}

#[test]
fn a_fresh_database_gets_every_item_in_dependency_order() {
    // A postgres_fdw server reads in bulk unless the source says otherwise (fetch_size).
    let (stack, secrets) = setup();
    let plan = plan(&stack, &empty_server(), &secrets).unwrap();
    let items: Vec<String> = plan.units.iter().map(item_label).collect();
    assert_eq!(
        items,
        ["ledger/pgwarehouse", "extension/postgres_fdw", "extension/pg_cron", "source/cp", "schedule/refresh"]
    );
    let sql: Vec<String> = plan.view().changes.into_iter().filter(|c| c.item == "source/cp").map(|c| c.sql).collect();
    assert_eq!(
        sql,
        [
            r#"CREATE SERVER "cp" FOREIGN DATA WRAPPER "postgres_fdw" OPTIONS ("fetch_size" '10000', "host" 'db')"#,
            r#"CREATE USER MAPPING FOR PUBLIC SERVER "cp" OPTIONS ("password" '<redacted>')"#,
        ]
    );
}

#[test]
fn a_matching_database_plans_nothing_and_a_changed_secret_plans_one_statement() {
    let (stack, mut secrets) = setup();
    let mut observed = empty_server();
    observed.ledger_exists = true;
    observed.extensions = vec![ext("postgres_fdw", "1.1"), ext("pg_cron", "1.4")];
    observed.servers = vec![ObservedServer {
        name: "cp".into(),
        wrapper: "postgres_fdw".into(),
        options: vec!["fetch_size=10000".into(), "host=db".into()],
    }];
    observed.user_mappings = vec![ObservedUserMapping {
        server: "cp".into(),
        user: "public".into(),
        options: vec!["password=hunter2".into()],
    }];
    observed.managed.jobs = vec![crate::sql::observe::ObservedJob {
        id: 1,
        name: Some("refresh".into()),
        schedule: "*/5 * * * *".into(),
        command: "SELECT 1".into(),
        database: "warehouse".into(),
        username: "postgres".into(),
        active: true,
    }];
    observed.managed.ledger = vec![crate::sql::observe::LedgerEntry {
        kind: "job".into(),
        name: "refresh".into(),
        detail: serde_json::json!({}),
    }];
    assert!(plan(&stack, &observed, &secrets).unwrap().is_empty());

    secrets.insert(SecretKeyRef { name: "cp".into(), key: "password".into() }, "rotated".into());
    let changed = plan(&stack, &observed, &secrets).unwrap();
    let view = serde_json::to_string(&changed.view()).unwrap();
    assert!(view.contains(r#"OPTIONS (SET \"password\" '<redacted>')"#), "{view}");
    assert!(!view.contains("rotated") && !view.contains("hunter2"));
}

#[test]
fn pg_cron_loaded_elsewhere_is_refused_before_any_statement() {
    let (stack, secrets) = setup();
    let observed = Observed { cron_database_name: Some("postgres".into()), ..empty_server() };
    let error = plan(&stack, &observed, &secrets).unwrap_err().to_string();
    assert!(error.contains("cron.database_name = 'warehouse'"), "{error}");
}

#[test]
fn a_same_server_source_reaches_the_port_the_server_listens_on() {
    let stack = validate(
        &load_manifest(
            "kind: DataWarehouseStack\nmetadata: {name: w}\nspec:\n  sources:\n  - name: cp\n    wrapper: postgres_fdw\n    \
             sameServer: true\n    options: {dbname: controlplane}\n",
        )
        .unwrap(),
    )
    .unwrap();
    let sql_on = |port: &str| {
        let observed = Observed { port: port.into(), ..empty_server() };
        let plan = plan(&stack, &observed, &Secrets::default()).unwrap();
        plan.view().changes.into_iter().find(|c| c.kind == "server").map(|c| c.sql).unwrap()
    };
    assert_eq!(
        sql_on("6543"),
        r#"CREATE SERVER "cp" FOREIGN DATA WRAPPER "postgres_fdw" OPTIONS ("dbname" 'controlplane', "fetch_size" '10000', "host" '127.0.0.1', "port" '6543')"#
    );

    let mut observed = Observed { port: "7000".into(), ..empty_server() };
    observed.servers = vec![ObservedServer {
        name: "cp".into(),
        wrapper: "postgres_fdw".into(),
        options: vec![
            "dbname=controlplane".into(),
            "fetch_size=10000".into(),
            "host=127.0.0.1".into(),
            "port=6543".into(),
        ],
    }];
    let moved = plan(&stack, &observed, &Secrets::default()).unwrap().view();
    let alter: Vec<_> = moved.changes.iter().filter(|c| c.kind == "server").map(|c| c.sql.as_str()).collect();
    assert_eq!(
        alter,
        [r#"ALTER SERVER "cp" OPTIONS (SET "port" '7000')"#],
        "a server started on another port follows it"
    );
}
