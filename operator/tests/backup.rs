//! Backups with a real pgBackRest against a real PostgreSQL, through the local mode: a full
//! backup, rows, a differential, more rows; a point-in-time restore has exactly the rows of its
//! time and `latest` all of them; retention expires old backups; an unwritable repository shows
//! as failing archiving and recovers; bad restore input is refused before anything starts.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use pgwarehouse::backup::BackupKind;
use pgwarehouse::local::cluster::Binaries;
use pgwarehouse::local::{self, LocalOptions};
use pgwarehouse::secrets::Secrets;
use pgwarehouse::template::load_manifest;
use pgwarehouse::validate::{ValidatedStack, validate};
use sqlx::{Connection, Executor, PgConnection};

#[path = "support/local_stack.rs"]
mod local_stack;
use local_stack::options;

fn stack(retention: u32) -> ValidatedStack {
    let text = format!(
        "kind: DataWarehouseStack\nmetadata: {{name: bk}}\nspec:\n  backup:\n    repository: {{volume: {{}}}}\n    \
         retention: {{full: {retention}}}\n"
    );
    validate(&load_manifest(&text).unwrap()).unwrap()
}

/// A directory the servers can see: /tmp, inside the PostgreSQL root when there is one.
fn scratch() -> tempfile::TempDir {
    let binaries = pgwarehouse::local::cluster::Binaries::find().unwrap_or_else(|e| panic!("{e}"));
    tempfile::Builder::new().prefix("pgw-backup-").tempdir_in(binaries.on_host(Path::new("/tmp"))).unwrap()
}

async fn connect(options: &LocalOptions) -> PgConnection {
    let dir = options.data_dir.as_ref().unwrap();
    let password = std::fs::read_to_string(dir.join("superuser-password")).unwrap();
    let url = format!("postgres://postgres:{password}@127.0.0.1:{}/warehouse", options.port.unwrap());
    PgConnection::connect(&url).await.unwrap()
}

async fn count(db: &mut PgConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM t").fetch_one(db).await.unwrap()
}

/// Closes the WAL segment and waits until the archiver has handed it to pgBackRest.
async fn archive_now(db: &mut PgConnection) {
    let segment: String =
        sqlx::query_scalar("SELECT pg_walfile_name(pg_switch_wal())").fetch_one(&mut *db).await.unwrap();
    for _ in 0..300 {
        let done: bool = sqlx::query_scalar("SELECT last_archived_wal >= $1 FROM pg_stat_archiver")
            .bind(&segment)
            .fetch_one(&mut *db)
            .await
            .unwrap_or(false);
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{segment} was not archived in 30 s");
}

async fn status(stack: &ValidatedStack, options: &LocalOptions) -> String {
    let mut out = Vec::new();
    local::status(stack, options, &mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

async fn restore(stack: &ValidatedStack, options: &LocalOptions, target: Option<&str>) -> Result<String, String> {
    let mut out = Vec::new();
    local::restore(stack, &Secrets::default(), options, target, &mut out).await.map_err(|e| e.to_string())?;
    Ok(String::from_utf8(out).unwrap())
}

async fn down(stack: &ValidatedStack, options: &LocalOptions) {
    let _ = local::down(stack, options, false, &mut std::io::sink()).await;
}

/// Stops the servers of a test however it ends (Drop cannot await: a runtime of its own).
struct StopAll(Vec<(ValidatedStack, LocalOptions)>);

impl Drop for StopAll {
    fn drop(&mut self) {
        let servers = std::mem::take(&mut self.0);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            for (stack, options) in &servers {
                runtime.block_on(down(stack, options));
            }
        })
        .join();
    }
}

/// The stack's directory is owner-only and so is every file in it that holds a secret.
fn assert_private(options: &LocalOptions) {
    let dir = options.data_dir.as_ref().unwrap();
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    for secret in ["superuser-password", "pgbackrest.conf"] {
        assert_eq!(mode(&dir.join(secret)), 0o600, "{secret}");
    }
    assert!(!dir.join("initdb-password").exists() && !dir.join("pgbackrest-restore.conf").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn point_in_time_and_latest_restores_and_retention() {
    let dir = scratch();
    let repo = dir.path().join("source.backup");
    let stack = stack(2);
    let source = options(dir.path(), "source", &repo);
    let pitr = options(dir.path(), "pitr", &repo);
    let latest = options(dir.path(), "latest", &repo);
    let _stop = StopAll([&source, &pitr, &latest].map(|o| (stack.clone(), o.clone())).to_vec());
    let (_, report) = local::up(&stack, &Secrets::default(), &source, &mut std::io::sink()).await.unwrap();
    assert_eq!(report.failed().count(), 0);
    assert_private(&source);
    let mut db = connect(&source).await;
    let settings: (String, String) =
        sqlx::query_as("SELECT current_setting('archive_mode'), current_setting('archive_command')")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(settings.0, "on");
    assert!(settings.1.contains("--stanza=bk archive-push %p"), "{}", settings.1);

    local::backup(&stack, &Secrets::default(), &source, BackupKind::Full, &mut std::io::sink()).await.unwrap();
    db.execute("CREATE TABLE t (i int, at timestamptz DEFAULT clock_timestamp()); INSERT INTO t SELECT generate_series(1, 100)")
        .await
        .unwrap();
    archive_now(&mut db).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut out = Vec::new();
    local::backup(&stack, &Secrets::default(), &source, BackupKind::Differential, &mut out).await.unwrap();
    assert!(String::from_utf8_lossy(&out).starts_with("- differential backup "), "{}", String::from_utf8_lossy(&out));
    db.execute("INSERT INTO t SELECT generate_series(101, 250)").await.unwrap();
    archive_now(&mut db).await;

    let shown = status(&stack, &source).await;
    assert!(shown.contains("BackedUp=True"), "{shown}");
    // local up's first full, the full and the differential.
    assert!(shown.contains("BACKUPS to ") && shown.contains("(3 kept)"), "{shown}");
    assert!(shown.contains("last differential  "), "{shown}");
    assert!(!shown.contains("FAILING"), "{shown}");

    let target = between.to_rfc3339();
    let said = restore(&stack, &pitr, Some(&target)).await.unwrap();
    assert!(said.contains("- first full backup taken"), "the restored stack backs itself up at once: {said}");
    assert_eq!(count(&mut connect(&pitr).await).await, 100, "exactly the rows of {target}");
    assert_private(&pitr);
    let shown = status(&stack, &pitr).await;
    assert!(shown.contains("BackedUp=True") && shown.contains("(1 kept)"), "{shown}");
    assert!(!shown.contains("FAILING") && !shown.contains("ArchivingFailed"), "{shown}");
    let (_, again) = local::up(&stack, &Secrets::default(), &pitr, &mut std::io::sink()).await.unwrap();
    assert_eq!(again.statements, 0, "local up over the restored directory converges nothing: {again:?}");
    down(&stack, &pitr).await;

    let said = restore(&stack, &latest, None).await.unwrap();
    assert!(said.contains("recovered to the latest archived transaction"), "{said}");
    let mut restored = connect(&latest).await;
    assert_eq!(count(&mut restored).await, 250);
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()").fetch_one(&mut restored).await.unwrap();
    assert!(!in_recovery, "promoted");
    let leftover: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_file_settings WHERE name = 'restore_command'")
        .fetch_one(&mut restored)
        .await
        .unwrap();
    assert_eq!(leftover, 0, "the source repository's restore_command is reset");
    down(&stack, &latest).await;

    // Bad input, refused before anything starts.
    let error = restore(&stack, &latest, None).await.unwrap_err();
    assert!(error.starts_with("--data-dir: ") && error.contains("already holds a database"), "{error}");
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let error = restore(&stack, &options(dir.path(), "future", &repo), Some(&future)).await.unwrap_err();
    assert!(error.starts_with("--target: ") && error.contains("in the future"), "{error}");
    assert!(!dir.path().join("future").exists(), "nothing created");

    // Retention 2: the third full expires the first, and the differential that depended on it.
    for _ in 0..2 {
        local::backup(&stack, &Secrets::default(), &source, BackupKind::Full, &mut std::io::sink()).await.unwrap();
    }
    let shown = status(&stack, &source).await;
    assert!(shown.contains("(2 kept)"), "{shown}");
    let early = (between - chrono::Duration::milliseconds(500)).to_rfc3339();
    let error = restore(&stack, &options(dir.path(), "expired", &repo), Some(&early)).await.unwrap_err();
    assert!(error.contains("is before the oldest backup"), "{error}");
    down(&stack, &source).await;
}

/// A server `name` in a scratch dir, up, backing up beside itself; stopped however the test ends.
async fn one_server(name: &str) -> (tempfile::TempDir, ValidatedStack, LocalOptions, StopAll) {
    let dir = scratch();
    let stack = stack(2);
    let source = options(dir.path(), name, &dir.path().join(format!("{name}.backup")));
    let stop = StopAll(vec![(stack.clone(), source.clone())]);
    local::up(&stack, &Secrets::default(), &source, &mut std::io::sink()).await.unwrap();
    (dir, stack, source, stop)
}

/// A program run as the server's owner (the `postgres` user when we are root), as in the pod.
fn as_owner(program: &str) -> std::process::Command {
    let root = std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if root {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        std::process::Command::new(program)
    }
}

/// `local down` archives the open WAL segment (the last writes) and stops the server where it
/// listens, whatever port it is given; and a server it cannot reach is stopped all the same.
#[tokio::test(flavor = "multi_thread")]
async fn down_archives_the_last_writes_and_always_stops() {
    let (dir, stack, source, _stop) = one_server("d").await;
    let port = source.port.unwrap();
    local::backup(&stack, &Secrets::default(), &source, BackupKind::Full, &mut std::io::sink()).await.unwrap();
    connect(&source).await.execute("CREATE TABLE t (i int); INSERT INTO t SELECT generate_series(1, 5)").await.unwrap();

    let elsewhere = LocalOptions {
        port: Some(TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()),
        ..source.clone()
    };
    let mut out = Vec::new();
    local::down(&stack, &elsewhere, false, &mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains(&format!("stopped the server on 127.0.0.1:{port}")) && !out.contains("WARNING"), "{out}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "the server is stopped");
    let restored = options(dir.path(), "d-restored", &dir.path().join("d.backup"));
    let _stop_restored = StopAll(vec![(stack.clone(), restored.clone())]);
    restore(&stack, &restored, None).await.unwrap();
    assert_eq!(count(&mut connect(&restored).await).await, 5, "the writes after the backup were archived by down");

    local::up(&stack, &Secrets::default(), &source, &mut std::io::sink()).await.unwrap();
    std::fs::write(source.data_dir.as_ref().unwrap().join("superuser-password"), "not-the-password").unwrap();
    let mut out = Vec::new();
    local::down(&stack, &source, false, &mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("WARNING: the last WAL segment was not archived"), "{out}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "an unreachable server is stopped too");
}

#[tokio::test(flavor = "multi_thread")]
async fn archiving_failure_shows_in_status_and_recovers() {
    let (dir, stack, source, _stop) = one_server("w").await;
    let repo = dir.path().join("w.backup");
    local::backup(&stack, &Secrets::default(), &source, BackupKind::Full, &mut std::io::sink()).await.unwrap();
    let mut db = connect(&source).await;
    db.execute("CREATE TABLE t (i int)").await.unwrap();

    let archive = repo.join("archive");
    std::fs::set_permissions(&archive, std::fs::Permissions::from_mode(0o000)).unwrap();
    db.execute("INSERT INTO t VALUES (1); SELECT pg_switch_wal()").await.unwrap();
    let mut failed: i64 = 0;
    for _ in 0..300 {
        failed = sqlx::query_scalar("SELECT failed_count FROM pg_stat_archiver").fetch_one(&mut db).await.unwrap();
        if failed > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(failed > 0, "archiving into an unwritable repository fails");
    let shown = status(&stack, &source).await;
    assert!(shown.contains("BackedUp=False (ArchivingFailed)"), "{shown}");
    assert!(shown.contains("FAILING since"), "{shown}");

    std::fs::set_permissions(&archive, std::fs::Permissions::from_mode(0o750)).unwrap();
    db.execute("INSERT INTO t VALUES (2)").await.unwrap();
    archive_now(&mut db).await;
    let shown = status(&stack, &source).await;
    assert!(shown.contains("BackedUp=True"), "{shown}");
    assert!(!shown.contains("FAILING"), "{shown}");
    down(&stack, &source).await;
}

/// moto's S3 behind TLS with a self-signed certificate (operator/tests/support/s3_server.py), on
/// a free port of 127.0.0.1; stopped when dropped.
struct S3Server {
    child: std::process::Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl S3Server {
    fn start(bucket: &str, key_id: &str, secret: &str) -> S3Server {
        use std::io::BufRead;
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let python = root.join(".cache/moto/bin/python");
        assert!(python.exists(), "{} is missing: `make deps` installs moto[server] there", python.display());
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut child = std::process::Command::new(python)
            .args(["-X", "faulthandler"])
            .env("LIBC_FATAL_STDERR_", "1")
            .arg(root.join("operator/tests/support/s3_server.py"))
            .args([&port.to_string(), bucket, key_id, secret])
            .stdout(std::process::Stdio::piped())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "the S3 server did not start: {}",
            std::fs::read_to_string(log.path()).unwrap()
        );
        S3Server { child, port, log }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test server's certificate is self-signed: `verifyTLS: false`.
fn s3_stack(port: u16) -> ValidatedStack {
    let text = format!(
        "kind: DataWarehouseStack\nmetadata: {{name: bks3}}\nspec:\n  backup:\n    repository:\n      s3: \
         {{bucket: wh-backups, endpoint: '127.0.0.1:{port}', region: us-east-1, uriStyle: path, \
         verifyTLS: false, path: /warehouses, credentialsSecretRef: {{name: s3}}}}\n"
    );
    validate(&load_manifest(&text).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_repository_backs_up_and_restores_and_keeps_its_keys_secret() {
    const KEY_ID: &str = "AKIAPGWAREHOUSETEST1";
    const SECRET: &str = "s3-secret-never-shown-7f3a9c";
    let s3 = S3Server::start("wh-backups", KEY_ID, SECRET);
    let dir = scratch();
    let secrets_dir = dir.path().join("secrets/s3");
    std::fs::create_dir_all(&secrets_dir).unwrap();
    std::fs::write(secrets_dir.join("access-key-id"), KEY_ID).unwrap();
    std::fs::write(secrets_dir.join("secret-access-key"), format!("{SECRET}\n")).unwrap();
    let stack = s3_stack(s3.port);
    let secrets =
        pgwarehouse::secrets::resolve(&stack, &pgwarehouse::secrets::SecretsDir(dir.path().join("secrets"))).unwrap();

    let source = options(dir.path(), "source", &dir.path().join("unused"));
    let restored = options(dir.path(), "restored", &dir.path().join("unused"));
    let _stop = StopAll(vec![(stack.clone(), source.clone()), (stack.clone(), restored.clone())]);
    let mut said = Vec::new();
    let up = local::up(&stack, &secrets, &source, &mut said).await;
    assert!(up.is_ok(), "{:?}\n{}", up.err(), std::fs::read_to_string(s3.log.path()).unwrap());
    assert!(String::from_utf8_lossy(&said).contains("archiving WAL to s3://wh-backups/warehouses"));
    let conf = source.data_dir.as_ref().unwrap().join("pgbackrest.conf");
    assert_eq!(std::fs::metadata(&conf).unwrap().permissions().mode() & 0o777, 0o600, "keys: owner only");
    let backed_up = local::backup(&stack, &secrets, &source, BackupKind::Full, &mut said).await;
    assert!(backed_up.is_ok(), "{backed_up:?}\n{}", std::fs::read_to_string(s3.log.path()).unwrap());
    let mut db = connect(&source).await;
    db.execute("CREATE TABLE t (i int); INSERT INTO t SELECT generate_series(1, 42)").await.unwrap();
    archive_now(&mut db).await;
    let shown = status(&stack, &source).await;
    assert!(
        shown.contains("BACKUPS to s3://wh-backups/warehouses (2 kept)") && shown.contains("BackedUp=True"),
        "{shown}"
    );
    down(&stack, &source).await;

    let mut out = Vec::new();
    local::restore(&stack, &secrets, &restored, None, &mut out).await.unwrap();
    assert_eq!(count(&mut connect(&restored).await).await, 42);
    assert!(!restored.data_dir.as_ref().unwrap().join("pgbackrest-restore.conf").exists(), "removed after use");
    down(&stack, &restored).await;
    let everything = [
        String::from_utf8_lossy(&said).to_string(),
        String::from_utf8_lossy(&out).to_string(),
        shown,
        std::fs::read_to_string(source.data_dir.as_ref().unwrap().join("log")).unwrap(),
        std::fs::read_to_string(restored.data_dir.as_ref().unwrap().join("log")).unwrap(),
    ]
    .join("\n");
    assert!(!everything.contains(SECRET) && !everything.contains(KEY_ID), "a key leaked:\n{everything}");
}

/// `local up` took a first full backup: the server stopped, its repository emptied (as a new
/// pod's volume repository is); returns the repository.
async fn stopped_with_an_empty_repository(
    dir: &Path,
    stack: &ValidatedStack,
    source: &LocalOptions,
) -> std::path::PathBuf {
    down(stack, source).await;
    let name = source.data_dir.as_ref().unwrap().file_name().unwrap().to_string_lossy().to_string();
    let repository = dir.join(format!("{name}.backup"));
    for entry in std::fs::read_dir(&repository).unwrap() {
        std::fs::remove_dir_all(entry.unwrap().path()).unwrap();
    }
    repository
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_takes_the_first_backup_at_once_and_records_it() {
    let (dir, stack, source, _stop) = one_server("w").await;
    let stack_dir = source.data_dir.clone().unwrap();
    // The pod's volume starts with an empty repository; start the server as the pod does,
    // without `local up`.
    let repository = stopped_with_an_empty_repository(dir.path(), &stack, &source).await;
    let cluster = pgwarehouse::local::cluster::Cluster { binaries: Binaries::find().unwrap(), dir: stack_dir.clone() };
    cluster.start().unwrap();
    assert_eq!(
        pgwarehouse::backup::record::read(&mut connect(&source).await, "bk").await.unwrap().repository.backups.len(),
        1,
        "what local up recorded"
    );
    let mut running = as_owner(env!("CARGO_BIN_EXE_pgwarehouse"))
        .args([
            "agent",
            "backup",
            "--stanza=bk",
            "--database=warehouse",
            "--full=0 3 * * 0",
            "--differential=0 3 * * 1-6",
        ])
        .arg(format!("--config={}", stack_dir.join("pgbackrest.conf").display()))
        .arg(format!("--socket-dir={}", stack_dir.display()))
        .arg(format!("--port={}", source.port.unwrap()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut db = connect(&source).await;
    let mut recorded = Vec::new();
    for _ in 0..600 {
        let state = pgwarehouse::backup::record::read(&mut db, "bk").await.unwrap();
        recorded = state.repository.backups.iter().map(|b| b.label.clone()).collect();
        if recorded.len() == 1
            && std::fs::read_dir(repository.join("backup/bk"))
                .is_ok_and(|d| d.flatten().any(|e| e.file_name().to_string_lossy() == recorded[0]))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // SIGTERM: runuser passes it on to the agent (a SIGKILL would stop runuser alone).
    let _ = std::process::Command::new("kill").arg(running.id().to_string()).status();
    let _ = running.wait();
    assert_eq!(recorded.len(), 1, "a repository without backups gets a full one at once, recorded in the database");
    assert!(
        repository.join("backup/bk").join(&recorded[0]).exists(),
        "the recorded backup is the agent's, in the repository"
    );
    let shown = status(&stack, &source).await;
    assert!(shown.contains("BackedUp=True") && shown.contains("last full          2"), "{shown}");
}

/// Backups that fail at once (here: the server runs without archiving, which pgBackRest refuses
/// to back up; its stanza and repository are fine) are retried after a wait that grows, not in
/// a busy loop: over 14 s, two tries.
#[tokio::test(flavor = "multi_thread")]
async fn agent_backs_off_when_backups_fail_at_once() {
    let (dir, stack, source, _stop) = one_server("f").await;
    let stack_dir = source.data_dir.clone().unwrap();
    stopped_with_an_empty_repository(dir.path(), &stack, &source).await;
    let binaries = Binaries::find().unwrap();
    let mut start = as_owner(binaries.bindir.join("pg_ctl").to_str().unwrap());
    start
        .arg("-D")
        .arg(binaries.in_server(&stack_dir.join("data")))
        .args(["-o", "-c archive_mode=off", "-w", "start"])
        .stdout(std::process::Stdio::null());
    assert!(start.status().unwrap().success());
    let conf = stack_dir.join("pgbackrest.conf");

    let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    let mut running = as_owner(env!("CARGO_BIN_EXE_pgwarehouse"))
        .args([
            "agent",
            "backup",
            "--stanza=bk",
            "--database=warehouse",
            "--full=0 3 * * 0",
            "--differential=0 3 * * 1-6",
        ])
        .arg(format!("--config={}", conf.display()))
        .arg(format!("--socket-dir={}", stack_dir.display()))
        .arg(format!("--port={}", source.port.unwrap()))
        .env("PGWAREHOUSE_LOG", "info")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(14)).await;
    let _ = std::process::Command::new("kill").arg(running.id().to_string()).status();
    let _ = running.wait();
    let said = std::fs::read_to_string(dir.path().join("agent.log")).unwrap();
    let tries = said.lines().filter(|l| l.contains("backup failed")).count();
    assert_eq!(tries, 2, "one try at once, one after 10 s:\n{said}");
    assert!(said.contains("retry_in_seconds=10") && said.contains("retry_in_seconds=20"), "{said}");
    assert!(said.contains("archive_mode"), "the failure is the one arranged: {said}");
}

/// The pod's layout for the restore step: a volume with PGDATA below it, the restore config
/// file naming the source repository, a socket directory.
struct PodVolume {
    volume: std::path::PathBuf,
    run: std::path::PathBuf,
    conf: std::path::PathBuf,
    binaries: pgwarehouse::local::cluster::Binaries,
}

impl PodVolume {
    fn new(dir: &Path, repo: &Path) -> PodVolume {
        let binaries = pgwarehouse::local::cluster::Binaries::find().unwrap();
        let volume = dir.join("volume");
        let run = dir.join("run");
        for d in [&volume, &run] {
            std::fs::create_dir_all(d).unwrap();
            binaries.give_to_postgres(d).unwrap();
        }
        let paths = pgwarehouse::backup::Paths {
            pgdata: volume.join("pgdata"),
            port: 5432,
            socket_dir: run.clone(),
            scratch: run.clone(),
            volume_repository: repo.to_path_buf(),
        };
        let repository = pgwarehouse::validate::Repository::Volume(Default::default());
        let conf = dir.join("pgbackrest-restore.conf");
        std::fs::write(&conf, pgwarehouse::backup::config::pgbackrest_conf("bk", &repository, None, &paths, None))
            .unwrap();
        PodVolume { volume, run, conf, binaries }
    }

    fn pgdata(&self) -> std::path::PathBuf {
        self.volume.join("pgdata")
    }

    /// `agent restore` as the init container runs it, with the stack's rendered settings.
    fn restore_command(&self, target: &str) -> std::process::Command {
        let mut command = as_owner(env!("CARGO_BIN_EXE_pgwarehouse"));
        command
            .args(["agent", "restore", "--stanza=bk", "--setting=max_worker_processes=48"])
            .arg(format!("--config={}", self.conf.display()))
            .arg(format!("--socket-dir={}", self.run.display()))
            .arg(format!("--pgdata={}", self.pgdata().display()))
            .arg(format!("--target={target}"))
            .env("POSTGRES_PASSWORD", "the-new-password");
        command
    }

    fn restore(&self, target: &str) -> std::process::Output {
        self.restore_command(target).output().unwrap()
    }

    /// Starts the restored directory as the pod's Postgres would, counts `t`, stops it.
    async fn rows(&self) -> i64 {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg_ctl = self.binaries.bindir.join("pg_ctl");
        let options = format!(
            "-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c archive_mode=off",
            self.run.display()
        );
        let log = self.run.join("restored.log");
        let mut start = as_owner(pg_ctl.to_str().unwrap());
        start.arg("-D").arg(self.pgdata()).arg("-l").arg(&log).args(["-o", &options, "-w", "start"]);
        assert!(start.stdout(std::process::Stdio::null()).status().unwrap().success());
        let url = format!("postgres://postgres:the-new-password@127.0.0.1:{port}/warehouse");
        let rows = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&mut PgConnection::connect(&url).await.unwrap())
            .await
            .unwrap();
        let mut stop = as_owner(pg_ctl.to_str().unwrap());
        stop.arg("-D").arg(self.pgdata()).args(["-m", "fast", "-w", "stop"]).stdout(std::process::Stdio::null());
        assert!(stop.status().unwrap().success());
        rows
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_restore_fills_an_empty_volume_once_and_refuses_a_foreign_one() {
    let (dir, stack, source, _stop) = one_server("src").await;
    let repo = dir.path().join("src.backup");
    let mut db = connect(&source).await;
    db.execute("CREATE TABLE t (i int); INSERT INTO t SELECT generate_series(1, 7)").await.unwrap();
    local::backup(&stack, &Secrets::default(), &source, BackupKind::Full, &mut std::io::sink()).await.unwrap();
    drop(db);
    down(&stack, &source).await;

    let pod = PodVolume::new(dir.path(), &repo);
    // The pod mounts the source repository read-only.
    assert!(std::process::Command::new("chmod").args(["-R", "a-w"]).arg(&repo).status().unwrap().success());
    let first = pod.restore("latest");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert!(pod.pgdata().join("PG_VERSION").exists());
    let auto = std::fs::read_to_string(pod.pgdata().join("postgresql.auto.conf")).unwrap();
    assert!(!auto.contains("restore_command"), "recovery settings reset:\n{auto}");

    // The pod restarted: nothing to do.
    let again = pod.restore("latest");
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to restore"));

    // The restored server answers with its rows and the new stack's password.
    assert_eq!(pod.rows().await, 7);

    // A volume holding something else is not restored over.
    let pgdata = pod.pgdata();
    std::fs::remove_dir_all(&pgdata).unwrap();
    std::fs::remove_file(pod.volume.join("restore.done")).unwrap();
    std::fs::create_dir_all(&pgdata).unwrap();
    std::fs::write(pgdata.join("precious"), "data").unwrap();
    pod.binaries.give_to_postgres(&pod.volume).unwrap();
    let refused = pod.restore("latest");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("spec.bootstrap.restore: "), "{refused:?}");
    assert_eq!(std::fs::read_to_string(pgdata.join("precious")).unwrap(), "data");
}

/// The source ran with more worker processes than the stack renders (WAL replay refuses to run
/// below the primary's), and the first restore step is killed mid-way: the next one clears what
/// it left, restores again, and the database has every row.
#[tokio::test(flavor = "multi_thread")]
async fn agent_restore_recovers_a_busier_source_and_is_redone_after_a_kill() {
    let (dir, stack, source, _stop) = one_server("busy").await;
    let repo = dir.path().join("busy.backup");
    let pgdata_of_source = source.data_dir.as_ref().unwrap().join("data");
    let pg_ctl = Binaries::find().unwrap().bindir.join("pg_ctl");
    let mut restart = as_owner(pg_ctl.to_str().unwrap());
    restart
        .arg("-D")
        .arg(Binaries::find().unwrap().in_server(&pgdata_of_source))
        .args(["-o", "-c max_worker_processes=64", "-w", "restart"])
        .stdout(std::process::Stdio::null());
    assert!(restart.status().unwrap().success());
    let mut db = connect(&source).await;
    let workers: String = sqlx::query_scalar("SHOW max_worker_processes").fetch_one(&mut db).await.unwrap();
    assert_eq!(workers, "64");
    db.execute(
        "CREATE TABLE t (i int, pad text); INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 100000) g",
    )
    .await
    .unwrap();
    // The source logs every statement: its postgresql.auto.conf comes along with the backup.
    db.execute("ALTER SYSTEM SET log_statement = 'all'").await.unwrap();
    local::backup(&stack, &Secrets::default(), &source, BackupKind::Full, &mut std::io::sink()).await.unwrap();
    db.execute("INSERT INTO t SELECT g, '' FROM generate_series(100001, 100010) g").await.unwrap();
    archive_now(&mut db).await;
    drop(db);
    down(&stack, &source).await;

    let pod = PodVolume::new(dir.path(), &repo);
    let mut first = pod.restore_command("latest");
    std::os::unix::process::CommandExt::process_group(&mut first, 0);
    let mut first = first.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let started = std::time::Instant::now();
    while !pod.pgdata().join("PG_VERSION").exists() && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(2));
    }
    let group = format!("-{}", first.id());
    assert!(std::process::Command::new("kill").args(["-KILL", "--", &group]).status().unwrap().success());
    let _ = first.wait();
    assert!(pod.volume.join("restore.in-progress").exists(), "killed while restoring");
    assert!(!pod.volume.join("restore.done").exists(), "killed before the restore completed");

    let second = pod.restore("latest");
    let said = String::from_utf8_lossy(&second.stdout).to_string();
    assert!(second.status.success(), "{said}{}", String::from_utf8_lossy(&second.stderr));
    assert!(said.contains("did not complete: clearing what it left and restoring again"), "{said}");
    assert!(pod.volume.join("restore.done").exists() && !pod.volume.join("restore.in-progress").exists());
    assert_eq!(pod.rows().await, 100_010, "every row, the ones only in archived WAL included");
    let log = std::fs::read_to_string(pod.volume.join("restore.log")).unwrap();
    assert!(!log.contains("the-new-password"), "the new password reached the restore log:\n{log}");
    assert!(!log.contains("ALTER ROLE"), "{log}");
}
