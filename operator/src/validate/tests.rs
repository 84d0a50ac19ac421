use super::*;
use crate::template::load_manifest;

fn stack(spec_yaml: &str) -> DataWarehouseStack {
    let indented: String = spec_yaml.lines().map(|l| format!("  {l}\n")).collect();
    load_manifest(&format!(
        "apiVersion: pgwarehouse.dev/v1alpha1\nkind: DataWarehouseStack\nmetadata: {{name: w}}\nspec:\n{indented}"
    ))
    .unwrap()
}

fn errors(spec_yaml: &str) -> Vec<String> {
    match validate(&stack(spec_yaml)) {
        Ok(_) => vec![],
        Err(ValidationErrors(errors)) => errors.into_iter().map(|e| format!("{}: {}", e.path, e.message)).collect(),
    }
}

#[test]
fn a_full_stack_validates_and_implies_its_extensions() {
    let v = validate(&stack(
        "sources:\n- name: cp\n  wrapper: postgres_fdw\n  tables: [{name: t, schema: f, columns: [{name: id, type: int8}]}]\n\
         - name: clerk\n  wrapper: clerk_fdw\n  userMapping: {secretOptions: {api_key: {secretKeyRef: {name: clerk, key: api-key}}}}\n\
         schedules: [{name: refresh, schedule: '*/5 * * * *', command: SELECT 1}]\n\
         partitions: [{table: public.m, column: time, interval: 1 day, epoch: seconds, retention: 30 days}]\n",
    ))
    .unwrap();
    let names: Vec<_> = v.extensions.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["postgres_fdw", "clerk_fdw", "pg_cron", "pg_partman"]);
    assert_eq!(v.database, "warehouse");
    assert_eq!(v.sources[1].wrapper.functions, Some(("clerk_fdw_handler".into(), Some("clerk_fdw_validator".into()))));
    assert_eq!(v.sources[0].tables[0].columns[0].1.as_str(), "bigint");
    assert_eq!(v.partitions[0].retention.unwrap().days, 30);
}

#[test]
fn every_error_is_reported_with_its_field_path() {
    let long = "x".repeat(64);
    let found = errors(&format!(
        "postgres: {{database: template1, parameters: {{shared_preload_libraries: x}}}}\n\
         sources:\n- {{name: cp, wrapper: postgres_fdw}}\n- {{name: cp, wrapper: mystery_fdw}}\n\
         - name: {long}\n  wrapper: postgres_fdw\n  tables: [{{name: t, columns: [{{name: a, type: 'int); DROP TABLE x; --'}}]}}]\n\
         schedules:\n- {{name: refresh, schedule: 5 minutes, command: SELECT 1}}\n- {{name: junk, schedule: '*/5 * * * * junk', command: SELECT 1}}\n\
         partitions: [{{table: public.m, column: time, interval: 1 fortnight, retention: forever}}]\n\
         roles: [{{name: pg_admin, grants: [{{schema: public, privileges: [SELECT, EXECUTE]}}]}}, {{name: PGWarehouse_Refresh}}]\n"
    ));
    let expected = [
        "spec.postgres.database: \"template1\" is a reserved database name",
        "spec.postgres.parameters.shared_preload_libraries: is set by the operator",
        "spec.sources[1]: \"cp\" is declared twice",
        "spec.sources[1].extension: wrapper \"mystery_fdw\" is not one pgwarehouse knows",
        "spec.sources[2].name: \"xxxx",
        "spec.sources[2].tables[0].columns[0].type: \"int); DROP TABLE x; --\" is not a Postgres type name",
        "spec.schedules[0].schedule: \"5 minutes\" is not a pg_cron schedule; write '*/5 * * * *'",
        "spec.schedules[1].schedule: \"*/5 * * * * junk\" has 6 fields",
        "spec.partitions[0].interval: \"1 fortnight\": unknown unit",
        "spec.partitions[0].retention: \"forever\"",
        "spec.roles[0].name: \"pg_admin\" is a reserved role name",
        "spec.roles[0].grants[0].privileges[1]: \"EXECUTE\" is not one of",
        "spec.roles[1].name: \"PGWarehouse_Refresh\" is a reserved role name",
    ];
    for want in expected {
        assert!(found.iter().any(|f| f.starts_with(want)), "missing {want:?} in {found:#?}");
    }
    assert_eq!(found.len(), expected.len(), "{found:#?}");
}

#[test]
fn reserved_job_names_and_missing_secret_keys_are_refused() {
    let found = errors(
        "schedules: [{name: pgwarehouse-partman-maintenance, schedule: '@hourly', command: SELECT 1}]\n\
         roles: [{name: analyst, passwordSecretRef: {name: analyst, key: ''}}]\n",
    );
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].starts_with("spec.schedules[0].name: names starting with \"pgwarehouse-\""));
    assert_eq!(found[1], "spec.roles[0].passwordSecretRef.key: must name a key of the Secret");
}

#[test]
fn secret_refs_name_the_fields_that_read_them() {
    let v = validate(&stack(
        "sources:\n- name: cp\n  wrapper: postgres_fdw\n  userMapping:\n    secretOptions: {password: {secretKeyRef: {name: cp, key: password}}}\n",
    ))
    .unwrap();
    let refs = v.secret_refs();
    assert_eq!(refs[0].0, "spec.sources[0].userMapping.secretOptions.password");
    assert_eq!(refs[0].1, SecretKeyRef { name: "cp".into(), key: "password".into() });
}

#[test]
fn the_stack_name_must_fit_kubernetes_names() {
    for bad in ["Warehouse", "a_b", "x-", &"a".repeat(53)] {
        let mut s = stack("{}");
        s.metadata.name = Some(bad.to_string());
        let errors = validate(&s).unwrap_err().0;
        assert_eq!(errors[0].path, "metadata.name", "{bad}");
    }
}

#[test]
fn same_server_is_for_postgres_fdw_and_owns_the_connection_options() {
    let found = errors(
        "sources:\n- {name: a, wrapper: postgres_fdw, sameServer: true, options: {dbname: cp, port: '5433'}}\n\
         - {name: b, wrapper: clerk_fdw, sameServer: true, userMapping: {options: {api_key: k}}}\n- {name: c, wrapper: postgres_fdw, sameServer: true, options: {dbname: cp}}\n",
    );
    assert_eq!(
        found,
        [
            "spec.sources[0].options.port: is set by sameServer; remove it or sameServer",
            "spec.sources[1].sameServer: only a postgres_fdw source can be the warehouse's own server",
        ]
    );
}

#[test]
fn our_wrappers_take_their_options_and_keep_credentials_in_the_mapping() {
    let key = "{secretKeyRef: {name: clerk, key: api-key}}";
    let cases: &[(&str, &str)] = &[
        (
            "wrapper: clerk_fdw\n  secretOptions: {api_key: KEY}",
            "spec.sources[0].secretOptions.api_key: is a credential: set it in userMapping.secretOptions",
        ),
        (
            "wrapper: clerk_fdw\n  userMapping: {secretOptions: {api_key: KEY}}\n  options: {api_url: ftp://x}",
            "spec.sources[0].options.api_url: \"ftp://x\" is not an http:// or https:// URL",
        ),
        ("wrapper: clerk_fdw", "spec.sources[0].userMapping.secretOptions.api_key: clerk_fdw needs api_key"),
        (
            "wrapper: clerk_fdw\n  userMapping: {secretOptions: {api_key: KEY, user: KEY}}",
            "spec.sources[0].userMapping.secretOptions.user: clerk_fdw takes only api_key in a user mapping",
        ),
        (
            "wrapper: clerk_fdw\n  userMapping: {secretOptions: {api_key: KEY}}\n  tables: [{name: t, columns: [{name: a, type: text}], options: {object: invoices}}]",
            "spec.sources[0].tables[0].options.object: \"invoices\" is not one of users, organizations, organization_memberships",
        ),
        (
            "wrapper: clerk_fdw\n  userMapping: {secretOptions: {api_key: KEY}}\n  tables: [{name: t, columns: [{name: a, type: text}]}]",
            "spec.sources[0].tables[0].options.object: clerk_fdw needs the object to read",
        ),
        (
            "wrapper: prometheus_fdw\n  options: {base_url: 'http://p:9090', bearer_token: t}",
            "spec.sources[0].options.bearer_token: is a credential",
        ),
        (
            "wrapper: prometheus_fdw\n  options: {baseurl: 'http://p:9090'}",
            "spec.sources[0].options.baseurl: prometheus_fdw has no server option \"baseurl\" (did you mean \"base_url\"?)",
        ),
        (
            "wrapper: prometheus_fdw\n  options: {base_url: 'http://p:9090', region: eu}",
            "spec.sources[0].options.region: prometheus_fdw has no server option \"region\" (it takes base_url, timeout, step)",
        ),
        ("wrapper: prometheus_fdw", "spec.sources[0].options.base_url: prometheus_fdw needs base_url"),
        (
            "wrapper: prometheus_fdw\n  options: {base_url: 'http://p:9090', step: fortnight}",
            "spec.sources[0].options.step: \"fortnight\" is not a duration",
        ),
        (
            "wrapper: prometheus_fdw\n  options: {base_url: 'http://p:9090'}\n  userMapping: {options: {username: u}}",
            "spec.sources[0].userMapping: set username and password together",
        ),
    ];
    for (source, expected) in cases {
        let found = errors(&format!("sources:\n- name: s\n  {}\n", source.replace("KEY", key)));
        assert!(found.iter().any(|f| f.starts_with(expected)), "{source}\nexpected {expected:?}\ngot {found:#?}");
        assert!(found.len() <= 2, "{source}: {found:#?}");
    }
    let fine = errors(&format!(
        "sources:\n- name: p\n  wrapper: prometheus_fdw\n  options: {{base_url: 'https://p:9090', timeout: 30s, step: '60'}}\n  \
         userMapping: {{options: {{username: u}}, secretOptions: {{password: {key}}}}}\n  \
         tables: [{{name: m, columns: [{{name: metric_name, type: text}}], options: {{object: metrics}}}}]\n"
    ));
    assert!(fine.is_empty(), "{fine:#?}");
}

#[test]
fn backup_repositories_schedules_and_targets_are_checked_together() {
    let errors = validate(&stack(
        "backup:\n  repository: {}\n  schedule: {full: '30 seconds', differential: 'nope'}\n  retention: {full: 0}\n\
         bootstrap:\n  restore:\n    repository:\n      volume: {}\n      s3: {bucket: B, endpoint: 'http://x', region: '', credentialsSecretRef: {name: s3}}\n    target: '2999-01-01T00:00:00Z'\n",
    ))
    .unwrap_err()
    .0;
    let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.backup.repository",
            "spec.backup.schedule.full",
            "spec.backup.schedule.differential",
            "spec.backup.retention.full",
            "spec.bootstrap.restore.repository",
            "spec.bootstrap.restore.target",
        ],
        "{errors:?}"
    );
    assert_eq!(errors[0].message, "set one of `s3` or `volume`");
    assert_eq!(errors[4].message, "set one of `s3` or `volume`, not both");
    assert!(errors[5].message.contains("in the future"), "{}", errors[5].message);
}

#[test]
fn an_s3_repository_reads_its_keys_from_the_named_secret() {
    let v = validate(&stack(
        "backup:\n  repository:\n    s3: {bucket: wh-backups, endpoint: s3.amazonaws.com, region: eu-west-1, credentialsSecretRef: {name: s3}}\n",
    ))
    .unwrap();
    let refs: Vec<_> = v.secret_refs().into_iter().map(|(path, r)| format!("{path} {}/{}", r.name, r.key)).collect();
    assert_eq!(
        refs,
        [
            "spec.backup.repository.s3.credentialsSecretRef s3/access-key-id",
            "spec.backup.repository.s3.credentialsSecretRef s3/secret-access-key"
        ]
    );
    let missing = crate::secrets::resolve(&v, &crate::secrets::NoSecrets).unwrap_err().to_string();
    assert_eq!(missing, "spec.backup.repository.s3.credentialsSecretRef: Secret \"s3\" does not exist", "said once");
}

#[test]
fn parameter_names_are_compared_as_postgres_compares_them() {
    let found = errors(
        "postgres:\n  parameters: {Archive_Library: basic_archive, SHARED_PRELOAD_LIBRARIES: evil, Port: '1', \
         work_mem: 64MB, Work_Mem: 1GB, maintenance_work_mem: 1GB}\n",
    );
    assert_eq!(
        found,
        [
            "spec.postgres.parameters.Archive_Library: is set by the operator and cannot be overridden",
            "spec.postgres.parameters.Port: is set by the operator and cannot be overridden",
            "spec.postgres.parameters.SHARED_PRELOAD_LIBRARIES: is set by the operator and cannot be overridden",
            "spec.postgres.parameters.work_mem: is the same parameter as \"Work_Mem\" (Postgres ignores case in names): set it once",
        ]
    );
}

#[test]
fn grants_on_schemas_whose_contents_steer_the_superuser_are_refused() {
    let found = errors(
        "roles:\n- name: analyst\n  grants: [{schema: pgwarehouse, privileges: [SELECT, UPDATE]}, {schema: cron, privileges: [INSERT]}, \
         {schema: partman, privileges: [UPDATE]}, {schema: pg_catalog, privileges: [SELECT]}, \
         {schema: information_schema, privileges: [SELECT]}, {schema: pg_temp_3, privileges: [SELECT]}, \
         {schema: public, privileges: [SELECT]}]\n",
    );
    let paths: Vec<&str> = found.iter().map(|e| e.split(": ").next().unwrap()).collect();
    assert_eq!(paths, (0..6).map(|j| format!("spec.roles[0].grants[{j}].schema")).collect::<Vec<_>>());
    assert!(found[0].contains("\"pgwarehouse\" cannot be granted: it holds the operator's ledger"), "{found:?}");
    assert!(found[1].contains("schedules any command as anyone"), "{found:?}");
}

#[test]
fn a_url_with_credentials_is_refused_without_showing_them() {
    let found = errors(
        "sources:\n- name: prom\n  wrapper: prometheus_fdw\n  options: {base_url: 'http://u:p4ss@127.0.0.1:1'}\n\
         - name: clerk\n  wrapper: clerk_fdw\n  options: {api_url: 'admin:hunter2@api.clerk.com'}\n  \
         userMapping: {secretOptions: {api_key: {secretKeyRef: {name: clerk, key: api-key}}}}\n",
    );
    assert_eq!(
        found,
        [
            "spec.sources[0].options.base_url: \"http://<credentials>@127.0.0.1:1\" carries credentials: credentials belong in the user mapping (userMapping.secretOptions)",
            "spec.sources[1].options.api_url: \"<credentials>@api.clerk.com\" is not an http:// or https:// URL",
        ]
    );
}

#[test]
fn a_refresh_query_with_a_trailing_semicolon_is_refused() {
    let found = errors("refreshes: [{name: r, target: t, query: 'SELECT 1 AS x; ', schedule: '@daily'}]\n");
    assert_eq!(found, ["spec.refreshes[0].query: must be one SELECT without a trailing ';'"]);
}

#[test]
fn an_fdw_timeout_is_at_most_ten_minutes() {
    let found = errors(
        "sources:\n- name: prom\n  wrapper: prometheus_fdw\n  options: {base_url: 'http://p:9090', timeout: 2d, step: 1h}\n",
    );
    assert_eq!(
        found,
        [
            "spec.sources[0].options.timeout: \"2d\" is longer than the longest timeout, 10m (a scan waits at most that long)"
        ]
    );
}
