//! Declarative refreshes in the database: their definitions and run log beside the ledger, and
//! one audited PL/pgSQL entry point, `pgwarehouse.refresh(name)`, that pg_cron (and `pgwarehouse
//! refresh`) calls. Every identifier it builds SQL from is quoted by `format('%I')`, every value
//! by `%L`; the refresh's query is the user's SQL, run as a subquery.
//!
//! Privileges: the entry point (the superuser's) touches only the ledger; the query and the
//! writes run in `pgwarehouse.refresh_apply`, SECURITY DEFINER as [`REFRESH_ROLE`], which owns
//! the targets and is granted exactly the sources the queries read. A trigger someone attaches
//! to a target therefore runs as that role, and that role cannot leave it (`SET ROLE` is refused
//! inside a SECURITY DEFINER function).
//!
//! - `replace`: `DELETE` then `INSERT … SELECT` in the caller's transaction, so a reader sees the
//!   old rows or the new ones, never an empty table.
//! - `append`: `INSERT … SELECT`.
//! - `upsert`: `INSERT … ON CONFLICT (key) DO UPDATE … WHERE (row) IS DISTINCT FROM (new row)`,
//!   so unchanged rows are not rewritten; with `deleteMissing`, the source is staged in a
//!   temporary table and target rows whose key it lacks are deleted.
//! - `incremental`: the query's rows filtered by `column > high-water mark` (a constant, so
//!   postgres_fdw pushes it to the remote); the mark advances, to the largest value written, only
//!   when the run commits. It is kept as text written and read under the function's own
//!   `DateStyle`/`IntervalStyle`/`extra_float_digits`, so no session setting can shift it.
//! - Upsert keys match as `NULLS NOT DISTINCT` (the unique index the plan makes says so too);
//!   columns of types without equality (json, xml, point) are compared through text.
//!
//! Two runs of one refresh never overlap: a run that finds the advisory lock taken records
//! `skipped`; the lock is taken before the definition and mark are read. A failing run rolls
//! back to before it started (a subtransaction), records its error and leaves the target as it
//! was. The log keeps each refresh's last 100 runs.

use crate::sql::quote::{Sql, literal};

/// Written as the function's comment; a different one means the function is replaced.
pub const API_VERSION: &str = "pgwarehouse refresh api 4";

/// The role every refresh runs as and that owns every refresh target: it cannot log in (on a
/// distributed stack only with a password no one but the coordinator's superuser can read, to
/// reach the workers as Citus requires) and is no superuser, so no trigger, default or function a run reaches can act as one.
pub const REFRESH_ROLE: &str = "pgwarehouse_refresh";

const DEFINITIONS: &str = "CREATE TABLE IF NOT EXISTS pgwarehouse.refreshes (\
    name text PRIMARY KEY, \
    target_schema text NOT NULL, target_table text NOT NULL, \
    query text NOT NULL, \
    mode text NOT NULL CHECK (mode IN ('replace', 'append', 'upsert')), \
    key text[] NOT NULL DEFAULT '{}', \
    incremental_column text, incremental_type regtype, \
    delete_missing boolean NOT NULL DEFAULT false, \
    columns jsonb NOT NULL, \
    timeout_ms bigint, \
    high_water text)";

const RUNS: &str = "CREATE TABLE IF NOT EXISTS pgwarehouse.refresh_runs (\
    id bigserial PRIMARY KEY, \
    name text NOT NULL, \
    started_at timestamptz NOT NULL, finished_at timestamptz NOT NULL, \
    state text NOT NULL CHECK (state IN ('succeeded', 'failed', 'skipped')), \
    inserted bigint NOT NULL DEFAULT 0, updated bigint NOT NULL DEFAULT 0, deleted bigint NOT NULL DEFAULT 0, \
    high_water text, error text)";

const RUNS_INDEX: &str = "CREATE INDEX IF NOT EXISTS refresh_runs_by_name ON pgwarehouse.refresh_runs (name, id DESC)";

/// The part of a run that touches the user's data: the query and the DML into the target, run
/// as [`REFRESH_ROLE`] (SECURITY DEFINER, owned by it), never as the superuser that calls it.
/// Deferred triggers are fired before it returns, so none is left to fire at commit, outside it.
const APPLY: &str = r#"CREATE OR REPLACE FUNCTION pgwarehouse.refresh_apply(
  target_schema text, target_table text, query text, mode text, key text[],
  incremental_column text, incremental_type regtype, delete_missing boolean, columns jsonb, mark text,
  OUT n_inserted bigint, OUT n_updated bigint, OUT n_deleted bigint, OUT written_high text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET extra_float_digits = 3
AS $apply$
DECLARE
  target text := format('%I.%I', target_schema, target_table);
  cols text;
  src text;
  keys text;
  old_row text;
  new_row text;
  s_keys text;
  t_keys text;
  t_keys_set text;
  on_citus boolean := false;
BEGIN
  n_inserted := 0; n_updated := 0; n_deleted := 0;
  SELECT string_agg(format('%I', c->>'name'), ', ' ORDER BY o) INTO cols
    FROM jsonb_array_elements(columns) WITH ORDINALITY AS x(c, o);
  src := format('SELECT %s FROM (%s) q', cols, query);
  IF incremental_column IS NOT NULL AND mark IS NOT NULL THEN
    src := src || format(' WHERE q.%I > %L::%s', incremental_column, mark, incremental_type);
  END IF;
  IF mode = 'replace' THEN
    EXECUTE format('DELETE FROM %s', target);
    GET DIAGNOSTICS n_deleted = ROW_COUNT;
    EXECUTE format('INSERT INTO %s (%s) %s', target, cols, src);
    GET DIAGNOSTICS n_inserted = ROW_COUNT;
  ELSIF mode = 'append' THEN
    IF incremental_column IS NULL THEN
      EXECUTE format('INSERT INTO %s (%s) %s', target, cols, src);
      GET DIAGNOSTICS n_inserted = ROW_COUNT;
    ELSE
      EXECUTE format('WITH written AS (INSERT INTO %s (%s) %s RETURNING %I AS mark) SELECT count(*), max(mark)::text FROM written',
                     target, cols, src, incremental_column)
        INTO n_inserted, written_high;
    END IF;
  ELSE
    SELECT string_agg(format('%I', k), ', '), string_agg(format('s.%I', k), ', '), string_agg(format('t.%I', k), ', '),
           string_agg(format('t.%I IS NOT NULL', k), ' AND ')
      INTO keys, s_keys, t_keys, t_keys_set FROM unnest(key) k;
    -- Old and new non-key values, compared through text where the type has no equality (json, xml, point).
    SELECT string_agg(format('t.%I%s', x.n, x.via), ', ' ORDER BY x.o), string_agg(format('EXCLUDED.%I%s', x.n, x.via), ', ' ORDER BY x.o)
      INTO old_row, new_row
      FROM (SELECT e.c->>'name' AS n, e.o,
                   CASE WHEN ty IS NULL OR EXISTS (SELECT FROM pg_operator op WHERE op.oprname = '=' AND op.oprleft = ty AND op.oprright = ty)
                        THEN '' ELSE '::text' END AS via
              FROM jsonb_array_elements(columns) WITH ORDINALITY AS e(c, o), LATERAL (SELECT to_regtype(e.c->>'type') AS ty) t
             WHERE NOT (e.c->>'name' = ANY (key))) x;
    IF delete_missing THEN
      EXECUTE format('CREATE TEMP TABLE pgwarehouse_refresh_source ON COMMIT DROP AS %s', src);
      src := format('SELECT %s FROM pg_temp.pgwarehouse_refresh_source', cols);
    END IF;
    EXECUTE format(
      'WITH written AS (INSERT INTO %s AS t (%s) %s ON CONFLICT (%s) %s RETURNING (t.xmax = 0) AS fresh, %s AS mark) '
      'SELECT count(*) FILTER (WHERE fresh), count(*) FILTER (WHERE NOT fresh), max(mark)::text FROM written',
      target, cols, src, keys,
      CASE WHEN old_row IS NULL THEN 'DO NOTHING' ELSE format('DO UPDATE SET %s WHERE (%s) IS DISTINCT FROM (%s)',
        (SELECT string_agg(format('%I = EXCLUDED.%I', c->>'name', c->>'name'), ', ')
           FROM jsonb_array_elements(columns) c WHERE NOT (c->>'name' = ANY (key))),
        old_row, new_row) END,
      CASE WHEN incremental_column IS NULL THEN 'NULL::text' ELSE format('t.%I', incremental_column) END)
      INTO n_inserted, n_updated, written_high;
    IF delete_missing AND to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
      EXECUTE 'SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid OPERATOR(pg_catalog.=) $1::regclass)'
        INTO on_citus USING target;
    END IF;
    IF delete_missing AND on_citus THEN
      -- A Citus table cannot be joined with a local one in a correlated subquery: the keys to
      -- delete are found first (the distribution column, part of every key, is never NULL).
      EXECUTE format('CREATE TEMP TABLE pgwarehouse_refresh_gone ON COMMIT DROP AS SELECT %s FROM %s t '
                     'EXCEPT SELECT %s FROM pg_temp.pgwarehouse_refresh_source s', t_keys, target, s_keys);
      EXECUTE format('DELETE FROM %s t WHERE (%s) IN (SELECT * FROM pg_temp.pgwarehouse_refresh_gone)', target, t_keys);
      GET DIAGNOSTICS n_deleted = ROW_COUNT;
      DROP TABLE pg_temp.pgwarehouse_refresh_gone;
      DROP TABLE pg_temp.pgwarehouse_refresh_source;
    ELSIF delete_missing THEN
      -- Keys match as the unique index matches them (NULLS NOT DISTINCT): the hashable equality
      -- decides for keys without NULLs, the NULL-safe comparison for the others.
      EXECUTE format('DELETE FROM %s t WHERE NOT EXISTS (SELECT FROM pg_temp.pgwarehouse_refresh_source s WHERE (%s) = (%s)) '
                     'AND (%s OR NOT EXISTS (SELECT FROM pg_temp.pgwarehouse_refresh_source s WHERE (%s) IS NOT DISTINCT FROM (%s)))',
        target, s_keys, t_keys, t_keys_set, s_keys, t_keys);
      GET DIAGNOSTICS n_deleted = ROW_COUNT;
      DROP TABLE pg_temp.pgwarehouse_refresh_source;
    END IF;
  END IF;
  SET CONSTRAINTS ALL IMMEDIATE;
END
$apply$"#;

/// The apply function's arguments, as `regprocedure` spells them.
const APPLY_SIGNATURE: &str =
    "pgwarehouse.refresh_apply(text, text, text, text, text[], text, regtype, boolean, jsonb, text)";

/// True while the apply function is what [`install`] made: SECURITY DEFINER, its settings pinned,
/// owned by [`REFRESH_ROLE`], which is no superuser and a member of no role. Its owner can alter
/// these, so the entry point checks before and after every call, and the plan restores them.
pub fn apply_intact() -> String {
    format!(
        "EXISTS (SELECT FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_roles o ON o.oid = p.proowner \
         WHERE p.oid OPERATOR(pg_catalog.=) pg_catalog.to_regprocedure({signature}) AND p.prosecdef \
         AND o.rolname OPERATOR(pg_catalog.=) {role} AND NOT o.rolsuper AND NOT o.rolbypassrls \
         AND p.proconfig OPERATOR(pg_catalog.=) {config} \
         AND NOT EXISTS (SELECT FROM pg_catalog.pg_auth_members m WHERE m.member OPERATOR(pg_catalog.=) o.oid))",
        signature = literal(APPLY_SIGNATURE),
        role = literal(REFRESH_ROLE),
        config = "ARRAY['search_path=pg_catalog, pg_temp', 'DateStyle=ISO, YMD', 'IntervalStyle=postgres', \
                  'extra_float_digits=3']::text[]",
    )
}

/// The entry point pg_cron and `pgwarehouse refresh` call, as the superuser: it takes the lock,
/// reads the definition and mark (the ledger, which only the superuser writes), has the apply
/// function do the rest as [`REFRESH_ROLE`], and records the run. Nothing the apply function ran
/// can change what runs here afterwards: the path is pinned again and the function re-checked.
static ENTRY_POINT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    const ENTRY: &str = r#"CREATE OR REPLACE FUNCTION pgwarehouse.refresh(refresh_name text)
RETURNS TABLE (state text, inserted bigint, updated bigint, deleted bigint, high_water text, error text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $refresh$
DECLARE
  r pgwarehouse.refreshes;
  started timestamptz := clock_timestamp();
  n_inserted bigint := 0;
  n_updated bigint := 0;
  n_deleted bigint := 0;
  written_high text;
  mark text;
  failure text;
BEGIN
  -- The lock first: a run that waited for another's commit reads the definition and mark after it.
  IF NOT pg_try_advisory_xact_lock(hashtext('pgwarehouse.refresh'), hashtext(refresh_name)) THEN
    SELECT d.high_water INTO mark FROM pgwarehouse.refreshes d WHERE d.name = refresh_name;
    INSERT INTO pgwarehouse.refresh_runs (name, started_at, finished_at, state, high_water)
      VALUES (refresh_name, started, clock_timestamp(), 'skipped', mark);
    RETURN QUERY SELECT 'skipped'::text, 0::bigint, 0::bigint, 0::bigint, mark, NULL::text;
    RETURN;
  END IF;
  SELECT * INTO r FROM pgwarehouse.refreshes d WHERE d.name = refresh_name;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'pgwarehouse: no refresh named %', refresh_name;
  END IF;
  mark := r.high_water;
  BEGIN
    IF NOT @INTACT@ THEN
      RAISE EXCEPTION 'pgwarehouse.refresh_apply is not the SECURITY DEFINER function owned by a plain pgwarehouse_refresh (altered?): apply the stack again to restore it';
    END IF;
    SELECT a.n_inserted, a.n_updated, a.n_deleted, a.written_high INTO n_inserted, n_updated, n_deleted, written_high
      FROM pgwarehouse.refresh_apply(r.target_schema, r.target_table, r.query, r.mode, r.key, r.incremental_column,
                                     r.incremental_type, r.delete_missing, r.columns, r.high_water) a;
    -- A plain SET inside the call outlives it: pin the path again before anything else runs here.
    SET LOCAL search_path = pg_catalog, pg_temp;
    IF NOT @INTACT@ THEN
      RAISE EXCEPTION 'pgwarehouse.refresh_apply was altered during the run: the run is undone';
    END IF;
    IF r.incremental_column IS NOT NULL AND written_high IS NOT NULL THEN
      mark := written_high;
      UPDATE pgwarehouse.refreshes d SET high_water = mark WHERE d.name = refresh_name;
    END IF;
  EXCEPTION WHEN query_canceled OR others THEN
    GET STACKED DIAGNOSTICS failure = MESSAGE_TEXT;
    n_inserted := 0; n_updated := 0; n_deleted := 0; mark := r.high_water;
  END;
  SET LOCAL search_path = pg_catalog, pg_temp;
  INSERT INTO pgwarehouse.refresh_runs (name, started_at, finished_at, state, inserted, updated, deleted, high_water, error)
    VALUES (refresh_name, started, clock_timestamp(), CASE WHEN failure IS NULL THEN 'succeeded' ELSE 'failed' END,
            n_inserted, n_updated, n_deleted, mark, failure);
  DELETE FROM pgwarehouse.refresh_runs old WHERE old.name = refresh_name AND old.id <= (
    SELECT k.id FROM pgwarehouse.refresh_runs k WHERE k.name = refresh_name ORDER BY k.id DESC OFFSET 100 LIMIT 1);
  RETURN QUERY SELECT CASE WHEN failure IS NULL THEN 'succeeded' ELSE 'failed' END, n_inserted, n_updated, n_deleted, mark, failure;
END
$refresh$"#;
    ENTRY.replace("@INTACT@", &apply_intact())
});

/// Creates (or, at a new [`API_VERSION`], replaces) the tables and the entry point.
/// The refresh role must exist before (see [`role`]).
pub fn install(database: &str) -> Vec<Sql> {
    vec![
        Sql::new(DEFINITIONS),
        Sql::new(RUNS),
        Sql::new(RUNS_INDEX),
        Sql::new(APPLY),
        Sql::new("ALTER FUNCTION ").push(APPLY_SIGNATURE).push(" OWNER TO ").ident(REFRESH_ROLE),
        Sql::new("REVOKE ALL ON FUNCTION ").push(APPLY_SIGNATURE).push(" FROM PUBLIC"),
        // deleteMissing stages the source in a temporary table.
        Sql::new("GRANT TEMPORARY ON DATABASE ").ident(database).push(" TO ").ident(REFRESH_ROLE),
        Sql::new(ENTRY_POINT.as_str()),
        Sql::new("REVOKE ALL ON FUNCTION pgwarehouse.refresh(text) FROM PUBLIC"),
        Sql::new("COMMENT ON FUNCTION pgwarehouse.refresh(text) IS ").literal(API_VERSION),
    ]
}

/// Creates the refresh role, or takes back any attribute someone gave it. A distributed stack's
/// keeps its LOGIN, which the nodes' converge gives it with a password (Citus reaches the
/// workers as the current user); anywhere else it cannot log in.
pub fn role(exists: bool, distributed: bool) -> Sql {
    let verb = if exists { "ALTER ROLE " } else { "CREATE ROLE " };
    let login = if distributed && exists { "" } else { " NOLOGIN" };
    Sql::new(verb)
        .ident(REFRESH_ROLE)
        .push(login)
        .push(" NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS")
}

/// What one run did, as `pgwarehouse refresh` prints it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunFigures {
    pub name: String,
    /// succeeded, failed or skipped (another run of it is in progress).
    pub state: String,
    pub inserted: i64,
    pub updated: i64,
    pub deleted: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub high_water: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no refresh named {name:?} in the stack (it has: {known})")]
    Unknown { name: String, known: String },
    #[error("refresh {name}: {error} (was the stack applied?)")]
    Database { name: String, error: String },
}

/// Runs the named refreshes of `stack` now (all of them when `names` is empty), each under its
/// timeout, one after another.
pub async fn run_now(
    conn: &mut sqlx::PgConnection,
    stack: &crate::validate::ValidatedStack,
    names: &[String],
) -> Result<Vec<RunFigures>, RunError> {
    let chosen: Vec<&crate::validate::ValidatedRefresh> = if names.is_empty() {
        stack.refreshes.iter().collect()
    } else {
        let known = || stack.refreshes.iter().map(|r| r.spec.name.as_str()).collect::<Vec<_>>().join(", ");
        names
            .iter()
            .map(|name| {
                stack
                    .refreshes
                    .iter()
                    .find(|r| &r.spec.name == name)
                    .ok_or_else(|| RunError::Unknown { name: name.clone(), known: known() })
            })
            .collect::<Result<_, _>>()?
    };
    let mut figures = Vec::new();
    for refresh in chosen {
        let name = refresh.spec.name.clone();
        let failed = |error: sqlx::Error| RunError::Database { name: name.clone(), error: error.to_string() };
        // The run's own transaction, under the refresh's timeout (SET LOCAL ends with it).
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(failed)?;
        let timeout = refresh.timeout_ms.unwrap_or(0).to_string();
        // Qualified: a plain SET by a trigger in an earlier run of this session outlives it.
        sqlx::query("SELECT pg_catalog.set_config('statement_timeout', $1, true)")
            .bind(&timeout)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        let started = std::time::Instant::now();
        let row: (String, i64, i64, i64, Option<String>, Option<String>) =
            sqlx::query_as("SELECT state, inserted, updated, deleted, high_water, error FROM pgwarehouse.refresh($1)")
                .bind(&name)
                .fetch_one(&mut *tx)
                .await
                .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        let duration_ms = started.elapsed().as_millis() as i64;
        let (state, inserted, updated, deleted, high_water, error) = row;
        figures.push(RunFigures { name, state, inserted, updated, deleted, high_water, error, duration_ms });
    }
    Ok(figures)
}

/// The figures as a table.
pub fn print_runs(runs: &[RunFigures], out: &mut dyn std::io::Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<24} {:<10} {:>9} {:>9} {:>9} {:>9}  HIGH-WATER / ERROR",
        "REFRESH", "STATE", "INSERTED", "UPDATED", "DELETED", "MS"
    )?;
    for r in runs {
        let detail = r.error.as_deref().or(r.high_water.as_deref()).unwrap_or("-");
        writeln!(
            out,
            "{:<24} {:<10} {:>9} {:>9} {:>9} {:>9}  {detail}",
            r.name, r.state, r.inserted, r.updated, r.deleted, r.duration_ms
        )?;
    }
    Ok(())
}
