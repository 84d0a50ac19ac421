//! The scan layer our foreign data wrappers share, written against Postgres's FDW API directly.
//!
//! A wrapper implements [`ForeignSource`]: which restrictions it can use ([`ForeignSource::pushable`]),
//! how it opens a table (columns checked by name and type), starts a scan with the restrictions'
//! values, and fills rows. This layer does the rest, with three guarantees the framework we
//! started from did not give:
//! - the plan holds only nodes, by value (`fdw_private` strings, `fdw_exprs` expressions), so a
//!   cached or generic plan re-executed any number of times is as good as a fresh one;
//! - a restriction is recognised whichever side its column is on (`1000 <= t` reaches the wrapper
//!   as `t >= 1000`), and its value may be any expression free of this table's columns and of
//!   volatile functions — constants, parameters, `now() - interval '1 hour'`, `to_timestamp($1)` —
//!   evaluated by the executor when each scan (and each rescan) starts;
//! - every restriction stays in the plan's own quals too, so Postgres re-checks every row and a
//!   wrapper may fetch a superset — but those the wrapper declares [`ForeignSource::exact`].

mod exec;
mod options;
mod plan;
mod reader;
mod value;

use std::collections::HashMap;
use std::fmt::Display;

use pgrx::pg_sys;
use pgrx::prelude::*;

pub use options::{validator_target, OptionNames, OptionTarget, UnknownOption};
pub use reader::{Reader, ReaderFailed};
pub use value::Value;

/// An operator a wrapper may be handed, its column always on the left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
    /// `column = ANY (array)`, `column IN (...)`.
    In,
}

impl Op {
    fn parse(operator: &str) -> Option<Op> {
        Some(match operator {
            "=" => Op::Eq,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::In => "IN",
        }
    }
}

/// One restriction with its value for this scan.
#[derive(Debug, Clone, PartialEq)]
pub struct Qual {
    pub column: String,
    pub op: Op,
    pub value: Value,
}

/// A column of the foreign table.
#[derive(Debug, Clone)]
pub struct Column {
    /// Its position in the row, for [`Row::set`].
    pub index: usize,
    pub name: String,
    pub type_oid: pg_sys::Oid,
    /// Whether the query reads it; the others are left NULL.
    pub wanted: bool,
}

/// What a wrapper sees of the table it scans.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub server_name: String,
    pub server: HashMap<String, String>,
    /// The current user's mapping (or PUBLIC's); empty without one.
    pub mapping: HashMap<String, String>,
    pub options: HashMap<String, String>,
    /// Every live (not dropped) column, in the table's order.
    pub columns: Vec<Column>,
}

pub trait ForeignSource: Sized + 'static {
    /// The wrapper's name, the prefix of every error it reports.
    const NAME: &'static str;
    type Error: Display;

    /// Whether `column op value` is a restriction the wrapper uses (plan time).
    fn pushable(column: &str, op: Op) -> bool;
    /// Whether every row the wrapper returns satisfies a pushed `column op value`, so Postgres
    /// need not re-check it.
    fn exact(_column: &str, _op: Op) -> bool {
        false
    }
    /// Checks the table's options and columns; no network (EXPLAIN opens too).
    fn open(table: &Table) -> Result<Self, Self::Error>;
    /// Called before the first row of each scan and rescan, with the restrictions' values.
    fn start(&mut self, quals: &[Qual]) -> Result<(), Self::Error>;
    /// Fills the next row; `false` when there is none.
    fn next(&mut self, row: &mut Row) -> Result<bool, Self::Error>;
    /// Releases what the scan holds; the value itself is dropped with the query's memory.
    fn end(&mut self) {}
}

/// The row being filled: every column starts NULL.
pub struct Row<'a> {
    values: &'a mut [pg_sys::Datum],
    nulls: &'a mut [bool],
    scan_memory: pg_sys::MemoryContext,
}

impl Row<'_> {
    pub fn set(&mut self, column: usize, value: Option<pg_sys::Datum>) {
        match value {
            Some(datum) => {
                self.values[column] = datum;
                self.nulls[column] = false;
            }
            None => self.nulls[column] = true,
        }
    }

    /// Builds a value that lives until the next (re)scan starts rather than only for this row,
    /// for a datum shared by many rows (a series' labels).
    pub fn keep<T>(&self, build: impl FnOnce() -> T) -> T {
        unsafe { pgrx::PgMemoryContexts::For(self.scan_memory).switch_to(|_| build()) }
    }
}

/// The handler's routine for wrapper `S`: scans only (the foreign tables are read-only).
pub fn routine<S: ForeignSource>() -> PgBox<pg_sys::FdwRoutine, pgrx::AllocatedByRust> {
    unsafe {
        let mut routine = PgBox::<pg_sys::FdwRoutine, pgrx::AllocatedByRust>::alloc_node(pg_sys::NodeTag::T_FdwRoutine);
        routine.GetForeignRelSize = Some(plan::rel_size);
        routine.GetForeignPaths = Some(plan::paths);
        routine.GetForeignPlan = Some(plan::plan::<S>);
        routine.ExplainForeignScan = Some(exec::explain::<S>);
        routine.BeginForeignScan = Some(exec::begin::<S>);
        routine.IterateForeignScan = Some(exec::iterate::<S>);
        routine.ReScanForeignScan = Some(exec::rescan::<S>);
        routine.EndForeignScan = Some(exec::end::<S>);
        routine
    }
}

/// Reports `error` as an ERROR of wrapper `S`.
pub fn raise<S: ForeignSource>(error: impl Display) -> ! {
    pgrx::ereport!(PgLogLevel::ERROR, PgSqlErrorCode::ERRCODE_FDW_ERROR, format!("{}: {error}", S::NAME));
    unreachable!("ereport(ERROR) does not return")
}

/// The name of a type, for error messages.
pub fn type_name(type_oid: pg_sys::Oid) -> String {
    unsafe { std::ffi::CStr::from_ptr(pg_sys::format_type_be(type_oid)).to_string_lossy().into_owned() }
}
