//! A private PostgreSQL for tests: `initdb` into a temp dir, a free loopback port, configured
//! with the settings the operator renders (pg_cron preloaded for `warehouse`), a `controlplane`
//! database with sample rows, torn down on drop. The cluster is run by
//! `pgwarehouse::local::cluster`, exactly as `local up` runs it: binaries from `PGW_PG_BINDIR`,
//! inside `PGW_PG_CHROOT` when set (the PostgreSQL 17 generation). Missing binaries fail the test
//! loudly: the suite never skips its database.
#![allow(dead_code)]

use std::net::TcpListener;

use pgwarehouse::local::cluster::{Binaries, Cluster};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

pub const PASSWORD: &str = "test-superuser-pw";
pub const WAREHOUSE: &str = "warehouse";
/// The control-plane role the sources log in as.
pub const CP_READER_PASSWORD: &str = "cp-reader-pw";

pub struct PgServer {
    cluster: Cluster,
    _dir: tempfile::TempDir,
    pub port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The settings the operator renders for a `datawarehouse` stack, on a private port.
fn settings(cluster: &Cluster, port: u16) -> std::collections::BTreeMap<String, String> {
    let manifest = "kind: DataWarehouseStack\nmetadata: {name: test}\nspec: {template: datawarehouse}\n";
    let stack = pgwarehouse::validate::validate(&pgwarehouse::template::load_manifest(manifest).unwrap()).unwrap();
    let mut settings = pgwarehouse::render::config::settings(&stack);
    let socket_dir = cluster.binaries.in_server(&cluster.dir).display().to_string();
    for (key, value) in [
        ("listen_addresses", "127.0.0.1".to_string()),
        ("port", port.to_string()),
        ("unix_socket_directories", socket_dir),
        ("fsync", "off".into()),
        ("synchronous_commit", "off".into()),
        ("full_page_writes", "off".into()),
    ] {
        settings.insert(key.to_string(), value);
    }
    settings
}

impl PgServer {
    /// Starts a fresh server; panics with what to install when the binaries are missing.
    pub async fn start() -> PgServer {
        let binaries = Binaries::find().unwrap_or_else(|e| panic!("{e}"));
        let parent = binaries.on_host(std::path::Path::new("/tmp"));
        let dir = tempfile::Builder::new().prefix("pgw-test-").tempdir_in(parent).unwrap();
        let cluster = Cluster { binaries, dir: dir.path().to_path_buf() };
        cluster.init(PASSWORD).unwrap_or_else(|e| panic!("{e}"));
        let mut port = 0;
        for attempt in 0..3 {
            port = free_port();
            cluster.configure(&settings(&cluster, port)).unwrap();
            match cluster.start() {
                Ok(()) => break,
                Err(e) => assert!(attempt < 2, "PostgreSQL did not start: {e}"),
            }
        }
        let server = PgServer { cluster, _dir: dir, port };
        let mut admin = server.connect("postgres").await;
        for db in [WAREHOUSE, "controlplane"] {
            admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).await.unwrap();
        }
        let mut cp = server.connect("controlplane").await;
        cp.execute(CONTROL_PLANE_SAMPLE).await.unwrap();
        server
    }

    pub fn log(&self) -> String {
        self.cluster.log()
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
        let _ = self.cluster.stop();
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

/// The one value `sql` returns; panics with the statement on error.
pub async fn scalar<T>(conn: &mut PgConnection, sql: &str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    sqlx::query_scalar(AssertSqlSafe(sql.to_string())).fetch_one(conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Runs `sql`; panics with the statement on error.
pub async fn exec(conn: &mut PgConnection, sql: &str) {
    conn.execute(AssertSqlSafe(sql.to_string())).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The plan's statements as reviewable text.
pub fn statements(plan: &pgwarehouse::sql::plan::Plan) -> Vec<String> {
    plan.changes().map(|(_, c)| c.sql.to_string()).collect()
}
