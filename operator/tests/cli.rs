//! The `pgwarehouse` binary as users run it.

mod support;

use std::process::{Command, Output};

use sqlx::Connection;

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
        "error: spec.sources[0].userMapping.secretOptions.password: Secret \"cp\" does not exist\n"
    );
    std::fs::create_dir(dir.path().join("cp")).unwrap();
    let out = pgwarehouse(&["validate", "-f", &file, "--secrets-dir", &secrets]);
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "error: spec.sources[0].userMapping.secretOptions.password: Secret \"cp\" has no key \"password\"\n"
    );
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
        "error: spec.sources[0].userMapping.secretOptions.password: Secret \"cp\" does not exist\n"
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
    for command in ["validate", "plan", "apply", "render", "crd", "local", "status", "agent"] {
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
    assert_eq!(kinds, ["Secret", "ConfigMap", "Service", "Service", "PersistentVolumeClaim", "StatefulSet"]);
    assert!(stdout.contains("password: <generated by the operator>"), "{stdout}");
    assert!(stdout.contains("cron.database_name = 'warehouse'"), "{stdout}");
}

/// Runs `apply` at a log level; returns everything it wrote and how long it took.
fn apply_at_level(level: &str, file: &str, secrets: &str, url: &str) -> (String, std::time::Duration) {
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_pgwarehouse"))
        .args(["apply", "-f", file, "--secrets-dir", secrets, "--database-url", url])
        .env("PGWAREHOUSE_LOG", level)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    (text, started.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_is_written_at_any_log_level_even_by_a_slow_unit() {
    let fx = Fixture::start().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = format!(
        "{}roles: [{{name: analyst, passwordSecretRef: {{name: analyst, key: password}}}}]\n",
        SOURCE.replace("PORT", &fx.server.port.to_string())
    );
    let file = write_manifest(&dir, &fx.manifest(&spec));
    let secrets = fx.secrets_dir.path().display().to_string();
    let url = fx.server.url(WAREHOUSE);
    let mut written = Vec::new();
    // trace: everything any library logs; info: the default level of `run`, which passes WARN.
    for level in ["trace", "info"] {
        fx.set_secret("analyst", "password", &format!("analyst-first-{level}-pw"));
        let (output, _) = apply_at_level(level, &file, &secrets, &url);
        written.push(output);

        // Rotation while another session locks pg_authid against writers (readers pass): the
        // ALTER ROLE ... PASSWORD unit waits 2 s, past sqlx's slow-statement threshold.
        fx.set_secret("analyst", "password", &format!("analyst-rotated-{level}-pw"));
        let mut holder = fx.warehouse().await;
        support::exec(&mut holder, "BEGIN").await;
        support::exec(&mut holder, "LOCK TABLE pg_catalog.pg_authid IN EXCLUSIVE MODE").await;
        let release = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            support::exec(&mut holder, "COMMIT").await;
        });
        let (file, secrets, url) = (file.clone(), secrets.clone(), url.clone());
        let level_owned = level.to_string();
        let (output, took) =
            tokio::task::spawn_blocking(move || apply_at_level(&level_owned, &file, &secrets, &url)).await.unwrap();
        release.await.unwrap();
        assert!(took >= std::time::Duration::from_secs(2), "the unit was not held up: {took:?}");
        assert!(output.contains("slow unit"), "the engine reports the slow unit at {level}: {output}");
        assert!(output.contains(r#"ALTER ROLE "analyst" PASSWORD '<redacted>'"#), "redacted: {output}");
        written.push(output);
    }
    assert!(
        written[0].contains("DEBUG pgwarehouse::sql::apply: applying item=role/analyst"),
        "trace was on: {}",
        written[0]
    );
    assert!(!written[2].contains("DEBUG"), "info is the level asked for: {}", written[2]);
    let all = written.concat();
    assert!(!all.contains('\u{1b}'), "no ANSI colour codes when stderr is not a terminal");
    for secret in [
        support::CP_READER_PASSWORD,
        "analyst-first-trace-pw",
        "analyst-rotated-trace-pw",
        "analyst-first-info-pw",
        "analyst-rotated-info-pw",
    ] {
        assert!(!all.contains(secret), "{secret} was written to stdout or stderr");
        assert!(!fx.server.log().contains(secret), "{secret} is in the server log");
    }
    let mut analyst = sqlx::PgConnection::connect(&format!(
        "postgres://analyst:analyst-rotated-info-pw@127.0.0.1:{}/{WAREHOUSE}",
        fx.server.port
    ))
    .await
    .expect("the rotated password is in force");
    support::exec(&mut analyst, "SELECT 1").await;
}

/// `pgwarehouse crd | grep -q ...`: a reader that stops early ends the command quietly.
#[test]
fn a_reader_that_stops_early_is_no_error() {
    use std::io::Read;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pgwarehouse"))
        .arg("crd")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}
