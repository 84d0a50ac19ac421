//! The `pgwarehouse` binary as users run it.

mod support;

use std::process::{Command, Output};

use support::{Fixture, WAREHOUSE};

fn pgwarehouse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgwarehouse")).args(args).env_remove("DATABASE_URL").output().unwrap()
}

fn write_manifest(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("stack.yaml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const SOURCE: &str = "sources:\n- name: cp\n  wrapper: postgres_fdw\n  options: {host: 127.0.0.1, port: \"PORT\", dbname: controlplane}\n  userMapping:\n    options: {user: cp_reader}\n    secretOptions: {password: {secretKeyRef: {name: cp, key: password}}}\n  importSchemas: [{remoteSchema: public, into: f}]\n";

#[test]
fn validate_reports_every_error_with_its_field_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_manifest(
        &dir,
        "apiVersion: pgwarehouse.dev/v1alpha1\nkind: DataWarehouseStack\nmetadata: {name: w}\nspec:\n  \
         sources: [{name: a, wrapper: postgres_fdw}, {name: a, wrapper: postgres_fdw}]\n  \
         schedules: [{name: s, schedule: 5 minutes, command: SELECT 1}]\n",
    );
    let out = pgwarehouse(&["validate", "-f", &file]);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        "error: spec.sources[1]: \"a\" is declared twice\n\
         error: spec.schedules[0].schedule: \"5 minutes\" is not a pg_cron schedule; write '*/5 * * * *'\n"
    );

    let good = write_manifest(&dir, "kind: DataWarehouseStack\nmetadata: {name: w}\nspec: {template: datawarehouse}\n");
    let out = pgwarehouse(&["validate", "-f", &good]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "w: valid\n");
}

#[test]
fn validate_needs_no_secrets_but_checks_the_files_when_given_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_manifest(
        &dir,
        &format!("kind: DataWarehouseStack\nmetadata: {{name: w}}\nspec:\n{}", indent(&SOURCE.replace("PORT", "1"))),
    );
    let out = pgwarehouse(&["validate", "-f", &file]);
    assert!(out.status.success(), "a pull request has no Secrets: {}", String::from_utf8_lossy(&out.stderr));

    let secrets = dir.path().display().to_string();
    let out = pgwarehouse(&["validate", "-f", &file, "--secrets-dir", &secrets]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "error: spec.sources[0].userMapping.secretOptions.password: Secret \"cp\" has no key \"password\"\n"
    );
    std::fs::create_dir(dir.path().join("cp")).unwrap();
    std::fs::write(dir.path().join("cp/password"), "s3cret\n").unwrap();
    assert!(pgwarehouse(&["validate", "-f", &file, "--secrets-dir", &secrets]).status.success());
}

#[test]
fn validate_reports_type_enum_and_unknown_field_errors_with_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_manifest(
        &dir,
        "apiVersion: pgwarehouse.dev/v1alpha1\nkind: DataWarehouseStack\nmetadata: {name: w}\nspec:\n  \
         refreshs: []\n  sources: [{name: a, wrapper: postgres_fdw, optionz: {}}]\n  \
         partitions: [{table: public.m, column: time, interval: 1 day, epoch: fortnightly, premake: four}]\n  \
         schedules: [{name: s, schedule: 5 minutes, command: SELECT 1}]\n",
    );
    let out = pgwarehouse(&["validate", "-f", &file]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let mut paths: Vec<&str> =
        stderr.lines().map(|l| l.trim_start_matches("error: ").split(": ").next().unwrap()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "spec.partitions[0].epoch",
            "spec.partitions[0].premake",
            "spec.refreshs",
            "spec.schedules[0].schedule",
            "spec.sources[0].optionz"
        ],
        "{stderr}"
    );
    assert!(stderr.contains("spec.sources[0].optionz: unknown field (did you mean \"options\"?)"), "{stderr}");
}

#[test]
fn a_missing_secret_file_is_named_before_any_connection() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_manifest(
        &dir,
        &format!("kind: DataWarehouseStack\nmetadata: {{name: w}}\nspec:\n{}", indent(&SOURCE.replace("PORT", "1"))),
    );
    let secrets = dir.path().display().to_string();
    // Port 1 refuses connections: reaching it would be a different error.
    let out =
        pgwarehouse(&["plan", "-f", &file, "--secrets-dir", &secrets, "--database-url", "postgres://x@127.0.0.1:1/w"]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "error: spec.sources[0].userMapping.secretOptions.password: Secret \"cp\" has no key \"password\"\n"
    );
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

#[tokio::test]
async fn plan_json_lists_changes_with_secrets_redacted_and_apply_reports_items() {
    let fx = Fixture::start().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("{SOURCE}partitions: [{{table: public.nowhere, column: t, interval: 1 day}}]\n");
    let file = write_manifest(&dir, &fx.manifest(&spec));
    let secrets = fx.secrets_dir.path().display().to_string();
    let url = fx.server.url(WAREHOUSE);

    let out =
        pgwarehouse(&["plan", "-f", &file, "--secrets-dir", &secrets, "--database-url", &url, "--output", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!stdout.contains(support::CP_READER_PASSWORD), "secret leaked: {stdout}");
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let changes = plan["changes"].as_array().unwrap();
    let mapping = changes.iter().find(|c| c["kind"] == "user_mapping").unwrap();
    assert_eq!(mapping["action"], "create");
    assert_eq!(mapping["name"], "cp/public");
    assert_eq!(
        mapping["sql"],
        r#"CREATE USER MAPPING FOR PUBLIC SERVER "cp" OPTIONS ("password" '<redacted>', "user" 'cp_reader')"#
    );
    assert!(changes.iter().any(|c| c["kind"] == "import" && c["action"] == "create"));

    let out = pgwarehouse(&["apply", "-f", &file, "--secrets-dir", &secrets, "--database-url", &url]);
    assert!(!out.status.success(), "the partition on a missing table fails the run");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.lines().any(|l| l.starts_with("source/cp") && l.contains("changed")), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("partition/public.nowhere") && l.contains("FAILED")), "{stdout}");
    assert_eq!(String::from_utf8(out.stderr).unwrap(), "error: 1 item(s) failed\n");

    // DATABASE_URL works as well as the flag; nothing is left to do for the source.
    let out = Command::new(env!("CARGO_BIN_EXE_pgwarehouse"))
        .args(["plan", "-f", &file, "--secrets-dir", &secrets])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!stdout.contains("# source/cp"), "{stdout}");
}

#[test]
fn crd_prints_the_checked_in_definition() {
    let out = pgwarehouse(&["crd"]);
    assert!(out.status.success());
    let checked_in = include_str!("../../crds/datawarehousestacks.pgwarehouse.dev.yaml");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), checked_in);
}

#[test]
fn every_command_has_help() {
    for command in ["validate", "plan", "apply", "render", "crd", "local", "status"] {
        let out = pgwarehouse(&[command, "--help"]);
        assert!(out.status.success(), "{command}");
        assert!(String::from_utf8(out.stdout).unwrap().starts_with(|c: char| c.is_uppercase()), "{command}");
    }
}

#[test]
fn render_prints_every_object_without_the_superuser_password() {
    let quickstart = concat!(env!("CARGO_MANIFEST_DIR"), "/../stack-templates/examples/quickstart.yaml");
    let out = pgwarehouse(&["render", "-f", quickstart]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let kinds: Vec<&str> = stdout.lines().filter_map(|l| l.strip_prefix("kind: ")).collect();
    assert_eq!(kinds, ["Secret", "ConfigMap", "Service", "Service", "StatefulSet"]);
    assert!(stdout.contains("password: <generated by the operator>"), "{stdout}");
    assert!(stdout.contains("cron.database_name = 'warehouse'"), "{stdout}");
}
