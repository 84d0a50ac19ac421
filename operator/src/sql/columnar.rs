//! Columnar history: partitions of a pg_partman set that ended more than `columnarAfter` ago are
//! rewritten into citus_columnar's `columnar` access method (compressed, read column by column),
//! by `pgwarehouse.columnar_convert()`, which the job `pgwarehouse-columnar` calls a quarter hour
//! after pg_partman's hourly maintenance made and dropped partitions. What to convert is kept beside the ledger, in
//! `pgwarehouse.columnar`, which only the superuser writes.
//!
//! A partition is converted only once its upper bound lies `columnarAfter` in the past: the one
//! that takes today's rows (and those made ahead) stays heap. Columnar takes INSERTs (late rows
//! still land) but refuses UPDATE and DELETE. Never the default partition, never a partition
//! that is itself partitioned; converting is one `ALTER TABLE ... SET ACCESS METHOD columnar`
//! per partition, so its indexes and grants stay.

use crate::sql::quote::Sql;

/// Written as the function's comment; a different one means the function is replaced.
pub const API_VERSION: &str = "pgwarehouse columnar api 1";

const CONFIG: &str = "CREATE TABLE IF NOT EXISTS pgwarehouse.columnar (\
    parent text PRIMARY KEY, \
    epoch text NOT NULL CHECK (epoch IN ('none', 'seconds', 'milliseconds')), \
    after text NOT NULL)";

const CONVERT: &str = r#"CREATE OR REPLACE FUNCTION pgwarehouse.columnar_convert()
RETURNS SETOF text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $convert$
DECLARE
  c pgwarehouse.columnar;
  child record;
  upper_text text;
  ends timestamptz;
BEGIN
  FOR c IN SELECT * FROM pgwarehouse.columnar ORDER BY parent LOOP
    CONTINUE WHEN to_regclass(c.parent) IS NULL;
    FOR child IN
      SELECT k.oid::regclass AS rel, pg_get_expr(k.relpartbound, k.oid) AS bound
        FROM pg_inherits i JOIN pg_class k ON k.oid = i.inhrelid JOIN pg_am a ON a.oid = k.relam
       WHERE i.inhparent = to_regclass(c.parent) AND k.relkind = 'r' AND a.amname = 'heap'
       ORDER BY k.oid
    LOOP
      -- FOR VALUES FROM (...) TO ('2026-01-02 00:00:00+00') or TO ('1767312000'); DEFAULT has none.
      upper_text := substring(child.bound FROM $re$ TO \('?([^')]*)'?\)$$re$);
      CONTINUE WHEN upper_text IS NULL OR upper_text = 'MAXVALUE';
      ends := CASE c.epoch
        WHEN 'seconds' THEN to_timestamp(upper_text::numeric)
        WHEN 'milliseconds' THEN to_timestamp(upper_text::numeric / 1000)
        ELSE upper_text::timestamptz END;
      CONTINUE WHEN ends > now() - c.after::interval;
      EXECUTE format('ALTER TABLE %s SET ACCESS METHOD columnar', child.rel);
      RETURN NEXT child.rel::text;
    END LOOP;
  END LOOP;
END
$convert$"#;

/// Creates (or, at a new [`API_VERSION`], replaces) the table and the function.
pub fn install() -> Vec<Sql> {
    vec![
        Sql::new(CONFIG),
        Sql::new(CONVERT),
        Sql::new("REVOKE ALL ON FUNCTION pgwarehouse.columnar_convert() FROM PUBLIC"),
        Sql::new("COMMENT ON FUNCTION pgwarehouse.columnar_convert() IS ").literal(API_VERSION),
    ]
}

/// What the job `pgwarehouse-columnar` runs.
pub const CONVERT_CALL: &str = "SELECT count(*) FROM pgwarehouse.columnar_convert()";
