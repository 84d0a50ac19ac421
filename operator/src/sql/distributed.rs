//! Citus across nodes: the stack's extensions on every worker (pg_cron stays on the
//! coordinator), node-to-node passwords in `pg_dist_authinfo`, the workers registered with the
//! coordinator by the names it reaches them at, removed workers drained first (their shards
//! moved to the others) and only then removed, added workers given their share of the shards,
//! and `spec.tables` laid out (`create_distributed_table`, `create_reference_table`). Every step
//! reads the catalogs first: a second run with nothing changed issues no DDL.

use serde::Serialize;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::secrets::Secrets;
use crate::sql::quote::Sql;
use crate::sql::refresh::REFRESH_ROLE;
use crate::validate::ValidatedStack;

/// Shards of a table distributed without `shardCount` (Citus's own default).
pub const DEFAULT_SHARD_COUNT: u32 = 32;

/// A node as the coordinator reaches it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// A worker and a connection to its copy of the warehouse database.
pub struct Worker {
    pub node: Node,
    pub conn: PgConnection,
}

/// What a run did.
#[derive(Debug, Default, Serialize)]
pub struct NodesReport {
    pub statements: usize,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub laid_out: Vec<String>,
    /// `spec.tables` entries whose table does not exist yet.
    pub waiting: Vec<String>,
    /// `spec.tables` entries that cannot be laid out as written, with their field paths.
    pub problems: Vec<String>,
    /// New workers are being given their share of the shards (in the background).
    pub rebalance_started: bool,
    /// Workers no longer wanted whose drain waits for a running rebalance.
    pub draining_after_rebalance: Vec<String>,
}

/// Converges the nodes of `stack`: `coordinator` is the stack's own server as the workers reach
/// it; `password` the superuser's, which every node shares.
pub async fn converge(
    conn: &mut PgConnection,
    coordinator: &Node,
    workers: &mut [Worker],
    stack: &ValidatedStack,
    password: &str,
    secrets: &Secrets,
) -> Result<NodesReport, sqlx::Error> {
    let mut report = NodesReport::default();
    for worker in workers.iter_mut() {
        worker_extensions(&mut worker.conn, stack, &mut report).await?;
        authinfo(&mut worker.conn, None, password, &mut report).await?;
    }
    authinfo(conn, None, password, &mut report).await?;
    // A BI role's queries reach the workers as that role, with its password.
    for role in &stack.spec.roles {
        let secret = role.password_secret_ref.as_ref().map(|r| secrets.get(r)).filter(|p| !p.is_empty());
        if let Some(secret) = secret {
            authinfo(conn, Some(&role.name), secret, &mut report).await?;
        }
    }
    refresh_role_login(conn, workers, &mut report).await?;

    let registered: Vec<(String, i32, i32)> =
        sqlx::query_as("SELECT nodename::text, nodeport, groupid FROM pg_dist_node").fetch_all(&mut *conn).await?;
    if !registered.iter().any(|(_, _, group)| *group == 0) {
        let sql = Sql::new("SELECT citus_set_coordinator_host(")
            .param(&coordinator.host)
            .push(", ")
            .param(&coordinator.port.to_string())
            .push("::int)");
        run(conn, &sql, &mut report).await?;
    }
    let wanted = |host: &str, port: i32| workers.iter().any(|w| w.node.host == host && i32::from(w.node.port) == port);
    let removed: Vec<(String, i32)> = registered
        .iter()
        .filter(|(host, port, group)| *group != 0 && !wanted(host, *port))
        .map(|(host, port, _)| (host.clone(), *port))
        .collect();
    let rebalancing = !removed.is_empty() && rebalance_running(conn).await?;
    for (host, port) in removed.iter().filter(|_| !rebalancing) {
        // Its shards move to the other workers first: no shard, no row is lost with it.
        let port = port.to_string();
        let drain = Sql::new("SELECT citus_drain_node(")
            .param(host)
            .push(", ")
            .param(&port)
            .push("::int, shard_transfer_mode => 'block_writes')");
        run(conn, &drain, &mut report).await?;
        let remove = Sql::new("SELECT citus_remove_node(").param(host).push(", ").param(&port).push("::int)");
        run(conn, &remove, &mut report).await?;
        report.removed.push(format!("{host}:{port}"));
    }
    if rebalancing {
        // A drain moves shards too: it waits for the rebalance rather than fight it for locks.
        report.draining_after_rebalance = removed.iter().map(|(host, port)| format!("{host}:{port}")).collect();
    }
    for worker in workers.iter() {
        let known = registered.iter().any(|(h, p, _)| *h == worker.node.host && *p == i32::from(worker.node.port));
        if !known {
            let add = Sql::new("SELECT citus_add_node(")
                .param(&worker.node.host)
                .push(", ")
                .param(&worker.node.port.to_string())
                .push("::int)");
            run(conn, &add, &mut report).await?;
            report.added.push(worker.node.to_string());
        }
    }
    lay_out_tables(conn, stack, &mut report).await?;
    let had_workers = registered.iter().any(|(_, _, group)| *group != 0);
    if had_workers && !report.added.is_empty() {
        // The new workers take their share of the existing shards, moved by Citus's background
        // jobs; `citus_rebalance_status()` follows them.
        let sql = Sql::new("SELECT citus_rebalance_start(shard_transfer_mode => 'block_writes')");
        run(conn, &sql, &mut report).await?;
        report.rebalance_started = true;
    }
    Ok(report)
}

/// Whether a shard rebalance is scheduled or moving shards.
async fn rebalance_running(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT FROM citus_rebalance_status() WHERE state IN ('scheduled', 'running', 'cancelling', 'failing'))",
    )
    .fetch_one(conn)
    .await
}

/// Waits until the rebalance a converge started has moved every shard (or failed: an error).
pub async fn wait_for_rebalance(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::raw_sql("SELECT citus_rebalance_wait()").execute(conn).await?;
    Ok(())
}

/// The stack's extensions on a worker, citus first; pg_cron only on the coordinator.
async fn worker_extensions(
    conn: &mut PgConnection,
    stack: &ValidatedStack,
    report: &mut NodesReport,
) -> Result<(), sqlx::Error> {
    let installed: Vec<String> =
        sqlx::query_scalar("SELECT extname::text FROM pg_extension").fetch_all(&mut *conn).await?;
    let citus_first = stack
        .extensions
        .iter()
        .filter(|e| e.name == "citus")
        .chain(stack.extensions.iter().filter(|e| e.name != "citus"));
    for extension in citus_first.filter(|e| e.name != "pg_cron" && !installed.contains(&e.name)) {
        if let Some(schema) = &extension.schema {
            run(conn, &Sql::new("CREATE SCHEMA IF NOT EXISTS ").ident(schema), report).await?;
        }
        let mut create = Sql::new("CREATE EXTENSION IF NOT EXISTS ").ident(&extension.name);
        if let Some(schema) = &extension.schema {
            create = create.push(" SCHEMA ").ident(schema);
        }
        run(conn, &create, report).await?;
    }
    Ok(())
}

/// The password `role` (the current user when none) connects to the other nodes with; written
/// only when it differs.
async fn authinfo(
    conn: &mut PgConnection,
    role: Option<&str>,
    password: &str,
    report: &mut NodesReport,
) -> Result<(), sqlx::Error> {
    let info = format!("password={}", conninfo_value(password));
    let current: Option<String> = sqlx::query_scalar(
        "SELECT authinfo FROM pg_dist_authinfo WHERE nodeid = 0 AND rolename = COALESCE($1, current_user)",
    )
    .bind(role)
    .fetch_optional(&mut *conn)
    .await?;
    if current.as_deref() != Some(info.as_str()) {
        let sql = Sql::new("INSERT INTO pg_dist_authinfo (nodeid, rolename, authinfo) VALUES (0, ");
        let sql = match role {
            Some(name) => sql.literal(name),
            None => sql.push("current_user"),
        };
        let sql = sql
            .push(", ")
            .secret(&info)
            .push(") ON CONFLICT (rolename, nodeid) DO UPDATE SET authinfo = EXCLUDED.authinfo");
        run(conn, &sql, report).await?;
    }
    Ok(())
}

/// The refresh role on every node, able to log in with a password that only the coordinator's
/// `pg_dist_authinfo` holds (readable by superusers only): refreshes write into distributed
/// tables as that role, and Citus reaches the workers as the current user. A new password is
/// made only when a node lacks the role's login or the coordinator lacks its password.
async fn refresh_role_login(
    conn: &mut PgConnection,
    workers: &mut [Worker],
    report: &mut NodesReport,
) -> Result<(), sqlx::Error> {
    const LOGIN: &str = "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1";
    let Some(coordinator_login) =
        sqlx::query_scalar::<_, bool>(LOGIN).bind(REFRESH_ROLE).fetch_optional(&mut *conn).await?
    else {
        return Ok(());
    };
    let recorded: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT FROM pg_dist_authinfo WHERE nodeid = 0 AND rolename = $1 AND authinfo LIKE 'password=%')",
    )
    .bind(REFRESH_ROLE)
    .fetch_one(&mut *conn)
    .await?;
    let mut workers_login = true;
    for worker in workers.iter_mut() {
        let login: Option<bool> = sqlx::query_scalar(LOGIN).bind(REFRESH_ROLE).fetch_optional(&mut worker.conn).await?;
        workers_login &= login == Some(true);
    }
    if coordinator_login && recorded && workers_login {
        return Ok(());
    }
    let secret = crate::secrets::random_password().map_err(sqlx::Error::Io)?;
    let login = |exists: bool| {
        Sql::new(if exists { "ALTER ROLE " } else { "CREATE ROLE " })
            .ident(REFRESH_ROLE)
            .push(" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS PASSWORD ")
            .secret(&secret)
    };
    for worker in workers.iter_mut() {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)")
            .bind(REFRESH_ROLE)
            .fetch_one(&mut worker.conn)
            .await?;
        run_on_this_node(&mut worker.conn, &login(exists), report).await?;
        authinfo(&mut worker.conn, Some(REFRESH_ROLE), &secret, report).await?;
    }
    run_on_this_node(conn, &login(true), report).await?;
    authinfo(conn, Some(REFRESH_ROLE), &secret, report).await
}

/// A role statement for this node alone: each node gets it directly, so Citus must not copy it.
async fn run_on_this_node(conn: &mut PgConnection, sql: &Sql, report: &mut NodesReport) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::raw_sql("SET LOCAL citus.enable_ddl_propagation = off").execute(&mut *tx).await?;
    run(&mut tx, sql, report).await?;
    tx.commit().await
}

/// A libpq connection-string value, quoted.
fn conninfo_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `spec.tables`, for the tables that exist and are not laid out yet.
async fn lay_out_tables(
    conn: &mut PgConnection,
    stack: &ValidatedStack,
    report: &mut NodesReport,
) -> Result<(), sqlx::Error> {
    let shard_count = stack.spec.distributed.as_ref().and_then(|d| d.shard_count).unwrap_or(DEFAULT_SHARD_COUNT);
    for (i, layout) in stack.spec.tables.iter().enumerate() {
        let name = qualified_name(&layout.table);
        let (exists, laid_out): (bool, bool) = sqlx::query_as(
            "SELECT to_regclass($1) IS NOT NULL, EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = to_regclass($1))",
        )
        .bind(&name)
        .fetch_one(&mut *conn)
        .await?;
        if !exists {
            report.waiting.push(name);
            continue;
        }
        if laid_out {
            continue;
        }
        if let Some(d) = &layout.distribute {
            let has_column: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2 \
                 AND attnum > 0 AND NOT attisdropped)",
            )
            .bind(&name)
            .bind(&d.column)
            .fetch_one(&mut *conn)
            .await?;
            if !has_column {
                report
                    .problems
                    .push(format!("spec.tables[{i}].distribute.column: {name} has no column {:?}", d.column));
                continue;
            }
        }
        // A table that already holds rows keeps taking writes while its rows move to the shards.
        let online =
            layout.distribute.is_some() && holds_rows(conn, &layout.table).await? && can_move_online(conn).await?;
        let create =
            if online { "SELECT create_distributed_table_concurrently(" } else { "SELECT create_distributed_table(" };
        let sql = match &layout.distribute {
            Some(d) => Sql::new(create)
                .param(&name)
                .push("::regclass, ")
                .param(&d.column)
                .push(", colocate_with => ")
                .param(d.colocate_with.as_deref().map(qualified_name).as_deref().unwrap_or("default"))
                .push(", shard_count => ")
                .param(&shard_count.to_string())
                .push("::int)"),
            None => Sql::new("SELECT create_reference_table(").param(&name).push("::regclass)"),
        };
        run(conn, &sql, report).await?;
        report.laid_out.push(name);
    }
    Ok(())
}

/// Whether `table` (`schema.table`, `public.` when unqualified) has a row.
async fn holds_rows(conn: &mut PgConnection, table: &str) -> Result<bool, sqlx::Error> {
    let (schema, name) = table.split_once('.').unwrap_or(("public", table));
    let sql = Sql::new("SELECT EXISTS (SELECT FROM ").qualified(schema, name).push(")");
    sqlx::query_scalar(AssertSqlSafe(sql.expose().0)).fetch_one(conn).await
}

/// Whether rows can move to shards online: a worker to move them to, and Citus's decoder
/// allowed (Postgres versions before `output_plugin_libraries` allow every library).
async fn can_move_online(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT FROM pg_dist_node WHERE groupid <> 0 AND isactive) \
         AND COALESCE('citus' = ANY (string_to_array(replace(current_setting('output_plugin_libraries', true), ' ', ''), ',')), true)",
    )
    .fetch_one(conn)
    .await
}

/// `schema.table`, `public.` when unqualified; `default`/`none` as they are.
fn qualified_name(name: &str) -> String {
    match name {
        "default" | "none" => name.to_string(),
        _ => {
            let (schema, table) = name.split_once('.').unwrap_or(("public", name));
            crate::sql::quote::qualified(schema, table)
        }
    }
}

/// One statement, outside any transaction block (draining and rebalancing refuse one); one with
/// a secret in a transaction whose statement the server logs neither as text nor on error.
async fn run(conn: &mut PgConnection, sql: &Sql, report: &mut NodesReport) -> Result<(), sqlx::Error> {
    let (text, params) = sql.expose();
    let mut query = sqlx::query(AssertSqlSafe(text));
    for param in params {
        query = query.bind(param.to_string());
    }
    if sql.secrets().next().is_some() {
        let mut tx = conn.begin().await?;
        sqlx::raw_sql("SET LOCAL log_min_error_statement = panic; SET LOCAL log_statement = none")
            .execute(&mut *tx)
            .await?;
        query.execute(&mut *tx).await?;
        tx.commit().await?;
    } else {
        query.execute(&mut *conn).await?;
    }
    report.statements += 1;
    Ok(())
}
