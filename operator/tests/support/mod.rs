//! A private PostgreSQL for tests: `initdb` into a temp dir, a free loopback port, pg_cron
//! preloaded for the `warehouse` database, a `controlplane` database with sample rows, torn down
//! on drop. Binaries come from `PGW_PG_BINDIR` (default: PostgreSQL 15 from Debian); with
//! `PGW_PG_CHROOT` they run inside that root (the PostgreSQL 17 generation). Missing binaries
//! fail the test loudly: the suite never skips its database.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use sqlx::{Connection, Executor, PgConnection};

pub const PASSWORD: &str = "test-superuser-pw";
pub const WAREHOUSE: &str = "warehouse";
/// The control-plane role the sources log in as.
pub const CP_READER_PASSWORD: &str = "cp-reader-pw";

pub struct PgServer {
    root: Option<PathBuf>,
    bindir: PathBuf,
    /// Host path of the temp dir (inside the root when chrooted).
    host_dir: tempfile::TempDir,
    /// The same dir as the server sees it.
    server_dir: PathBuf,
    pub port: u16,
}

fn bindir() -> PathBuf {
    if let Ok(dir) = std::env::var("PGW_PG_BINDIR") {
        return PathBuf::from(dir);
    }
    PathBuf::from("/usr/lib/postgresql/15/bin")
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl PgServer {
    /// Starts a fresh server; panics with what to install when the binaries are missing.
    pub async fn start() -> PgServer {
        let root = std::env::var_os("PGW_PG_CHROOT").map(PathBuf::from);
        let bindir = bindir();
        let host_bin = match &root {
            Some(r) => r.join(bindir.strip_prefix("/").unwrap()),
            None => bindir.clone(),
        };
        assert!(
            host_bin.join("initdb").exists() && host_bin.join("pg_ctl").exists(),
            "PostgreSQL binaries not found in {} (PGW_PG_BINDIR/PGW_PG_CHROOT): run `make deps` \
             (apt-get install postgresql-15 postgresql-15-cron postgresql-15-partman)",
            host_bin.display()
        );
        let parent = match &root {
            Some(r) => r.join("tmp"),
            None => std::env::temp_dir(),
        };
        let host_dir = tempfile::Builder::new().prefix("pgw-test-").tempdir_in(parent).unwrap();
        let server_dir = match &root {
            Some(r) => Path::new("/").join(host_dir.path().strip_prefix(r).unwrap()),
            None => host_dir.path().to_path_buf(),
        };
        let mut server = PgServer { root, bindir, host_dir, server_dir, port: 0 };
        server.init();
        for attempt in 0..3 {
            server.port = free_port();
            server.configure();
            if server.pg_ctl(&["start", "-w", "-t", "60", "-l", &server.server_path("log")]) {
                break;
            }
            assert!(attempt < 2, "PostgreSQL did not start: {}", server.log());
        }
        let mut admin = server.connect("postgres").await;
        for db in [WAREHOUSE, "controlplane"] {
            admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).await.unwrap();
        }
        let mut cp = server.connect("controlplane").await;
        cp.execute(CONTROL_PLANE_SAMPLE).await.unwrap();
        server
    }

    fn server_path(&self, name: &str) -> String {
        self.server_dir.join(name).display().to_string()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.host_dir.path().join("log")).unwrap_or_default()
    }

    /// Runs a PostgreSQL program as the `postgres` user when we are root (initdb refuses root).
    fn run(&self, program: &str, args: &[&str]) -> bool {
        let exe = self.bindir.join(program).display().to_string();
        let mut cmd = match (&self.root, is_root()) {
            (Some(root), _) => {
                let mut c = Command::new("chroot");
                c.arg("--userspec=postgres:postgres").arg(root).arg(&exe);
                c
            }
            (None, true) => {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(&exe);
                c
            }
            (None, false) => Command::new(&exe),
        };
        let out = cmd.args(args).env("LC_ALL", "C.UTF-8").output().unwrap();
        if !out.status.success() {
            eprintln!(
                "{program} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out.status.success()
    }

    fn pg_ctl(&self, args: &[&str]) -> bool {
        let data = self.server_path("data");
        let mut all = vec!["-D", data.as_str()];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all)
    }

    fn init(&self) {
        std::fs::write(self.host_dir.path().join("pwfile"), PASSWORD).unwrap();
        if is_root() {
            // The root's `postgres` user may have another uid than the host's.
            let mut chown = match &self.root {
                Some(root) => {
                    let mut c = Command::new("chroot");
                    c.arg(root).arg("chown");
                    c
                }
                None => Command::new("chown"),
            };
            let ok = chown.args(["-R", "postgres:postgres"]).arg(&self.server_dir).status().unwrap();
            assert!(ok.success(), "chown to the postgres user failed");
        }
        let data = self.server_path("data");
        let pwfile = format!("--pwfile={}", self.server_path("pwfile"));
        let ok = self.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                &pwfile,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
        );
        assert!(ok, "initdb failed");
    }

    fn configure(&self) {
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             shared_preload_libraries = 'pg_cron,pg_stat_statements'\ncron.database_name = '{WAREHOUSE}'\n\
             cron.use_background_workers = on\nmax_worker_processes = 32\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n",
            self.port,
            self.server_dir.display()
        );
        std::fs::write(self.host_dir.path().join("data/postgresql.auto.conf"), conf).unwrap();
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres:{PASSWORD}@127.0.0.1:{}/{database}", self.port)
    }

    pub async fn connect(&self, database: &str) -> PgConnection {
        PgConnection::connect(&self.url(database)).await.unwrap()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
    }
}

const CONTROL_PLANE_SAMPLE: &str = r#"
CREATE TABLE organizations (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE instances (
  id bigint PRIMARY KEY, organization_id bigint NOT NULL REFERENCES organizations,
  name text NOT NULL, cpu int NOT NULL, memory_gb int NOT NULL, storage_gb int NOT NULL,
  environment text NOT NULL, state text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE queue_archive (msg_id bigint PRIMARY KEY, enqueued_at timestamptz NOT NULL, message jsonb NOT NULL);
INSERT INTO organizations VALUES (1, 'acme'), (2, 'globex'), (3, 'initech');
INSERT INTO instances (id, organization_id, name, cpu, memory_gb, storage_gb, environment, state) VALUES
  (1, 1, 'acme-prod', 4, 16, 100, 'prod', 'Up'), (2, 1, 'acme-dev', 1, 2, 10, 'dev', 'Up'),
  (3, 2, 'globex-prod', 8, 32, 500, 'prod', 'Up'), (4, 3, 'initech-test', 1, 4, 20, 'test', 'Stopped');
CREATE ROLE cp_reader LOGIN PASSWORD 'cp-reader-pw';
GRANT SELECT ON ALL TABLES IN SCHEMA public TO cp_reader;
INSERT INTO queue_archive VALUES (1, now(), '{"event": "created", "instance": 1}'), (2, now(), '{"event": "created", "instance": 3}');
"#;

/// A server plus a secrets dir, and the pipeline the CLI runs, for a stack written as YAML.
pub struct Fixture {
    pub server: PgServer,
    pub secrets_dir: tempfile::TempDir,
}

impl Fixture {
    pub async fn start() -> Fixture {
        let fixture = Fixture { server: PgServer::start().await, secrets_dir: tempfile::tempdir().unwrap() };
        fixture.set_secret("cp", "password", CP_READER_PASSWORD);
        fixture.set_secret("analyst", "password", "analyst-pw");
        fixture
    }

    pub fn set_secret(&self, name: &str, key: &str, value: &str) {
        let dir = self.secrets_dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(key), format!("{value}\n")).unwrap();
    }

    /// The manifest around `spec` (YAML, indented as a spec's body), with `PORT` replaced.
    pub fn manifest(&self, spec: &str) -> String {
        let spec = spec.replace("PORT", &self.server.port.to_string());
        let body: String = spec.lines().map(|l| format!("  {l}\n")).collect();
        format!(
            "apiVersion: pgwarehouse.dev/v1alpha1\nkind: DataWarehouseStack\nmetadata: {{name: test}}\nspec:\n{body}"
        )
    }

    pub fn load(&self, spec: &str) -> (pgwarehouse::validate::ValidatedStack, pgwarehouse::secrets::Secrets) {
        let stack = pgwarehouse::template::load_manifest(&self.manifest(spec)).unwrap();
        let stack = pgwarehouse::validate::validate(&stack).unwrap_or_else(|e| panic!("invalid test stack: {e}"));
        let secrets =
            pgwarehouse::secrets::resolve(&stack, &pgwarehouse::secrets::SecretsDir(self.secrets_dir.path().into()))
                .unwrap();
        (stack, secrets)
    }

    pub async fn plan(&self, spec: &str) -> pgwarehouse::sql::plan::Plan {
        let (stack, secrets) = self.load(spec);
        let mut conn = self.server.connect(WAREHOUSE).await;
        let observed = pgwarehouse::sql::observe::observe(&mut conn, &stack).await.unwrap();
        pgwarehouse::sql::plan::plan(&stack, &observed, &secrets).unwrap()
    }

    pub async fn apply(&self, spec: &str) -> pgwarehouse::sql::apply::ApplyReport {
        let (stack, secrets) = self.load(spec);
        let mut conn = self.server.connect(WAREHOUSE).await;
        pgwarehouse::sql::converge(&mut conn, &stack, &secrets).await.unwrap().1
    }

    /// Applies and fails the test on any failed item.
    pub async fn apply_ok(&self, spec: &str) -> pgwarehouse::sql::apply::ApplyReport {
        let report = self.apply(spec).await;
        let failed: Vec<_> = report.failed().collect();
        assert!(failed.is_empty(), "items failed: {failed:#?}");
        report
    }

    pub async fn warehouse(&self) -> PgConnection {
        self.server.connect(WAREHOUSE).await
    }
}

/// The plan's statements as reviewable text.
pub fn statements(plan: &pgwarehouse::sql::plan::Plan) -> Vec<String> {
    plan.changes().map(|(_, c)| c.sql.to_string()).collect()
}
