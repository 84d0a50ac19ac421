//! Execution: the scan's state lives in the query's memory (dropped with it, on success or
//! error); restriction values are evaluated when each scan or rescan reads its first row.

use std::ffi::{c_int, CStr, CString};

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{PgList, PgMemoryContexts, PgTupleDesc};

use crate::options::{catalog_options, user_mapping};
use crate::{raise, value, Column, ForeignSource, Op, Qual, Row, Table};

struct Pushed {
    column: String,
    op: Op,
    value: *mut pg_sys::ExprState,
    type_oid: pg_sys::Oid,
}

struct ScanState<S> {
    source: S,
    pushed: Vec<Pushed>,
    started: bool,
    /// Where [`Row::keep`] builds; reset when a scan starts.
    memory: pg_sys::MemoryContext,
}

#[pg_guard]
pub(crate) unsafe extern "C-unwind" fn begin<S: ForeignSource>(node: *mut pg_sys::ForeignScanState, _eflags: c_int) {
    unsafe {
        let plan = (*node).ss.ps.plan.cast::<pg_sys::ForeignScan>();
        let private: Vec<String> = PgList::<pg_sys::String>::from_pg((*plan).fdw_private)
            .iter_ptr()
            .map(|s| CStr::from_ptr((*s).sval).to_string_lossy().into_owned())
            .collect();
        let relation = (*node).ss.ss_currentRelation;
        let user = check_as_user(node, plan);
        let table = table((*relation).rd_id, relation, user, private.first().map_or("all", String::as_str));
        let source = S::open(&table).unwrap_or_else(|e| raise::<S>(e));

        let plan_values = PgList::<pg_sys::Node>::from_pg((*plan).fdw_exprs);
        let states = PgList::<pg_sys::ExprState>::from_pg(pg_sys::ExecInitExprList((*plan).fdw_exprs, node.cast()));
        let pushed = private
            .iter()
            .skip(1)
            .zip(plan_values.iter_ptr().zip(states.iter_ptr()))
            .map(|(restriction, (value, state))| {
                let (attnum, op) = restriction.split_once(' ').expect("plan restriction is \"attnum op\"");
                let attnum: usize = attnum.parse().expect("plan attnum is a number");
                let op = [Op::Eq, Op::Lt, Op::Le, Op::Gt, Op::Ge, Op::In]
                    .into_iter()
                    .find(|o| o.as_str() == op)
                    .expect("plan operator is one of ours");
                let column = PgTupleDesc::from_pg_unchecked((*relation).rd_att)
                    .get(attnum - 1)
                    .map(|a| a.name().to_string())
                    .unwrap_or_default();
                Pushed { column, op, value: state, type_oid: pg_sys::exprType(value) }
            })
            .collect();

        let query_memory = (*(*node).ss.ps.state).es_query_cxt;
        let memory = pg_sys::AllocSetContextCreateInternal(
            query_memory,
            c"foreign scan".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        );
        let state = ScanState { source, pushed, started: false, memory };
        (*node).fdw_state = PgMemoryContexts::For(query_memory).leak_and_drop_on_delete(state).cast();
    }
}

/// The role the scan reads as: a view's owner when the table is read through a view (the
/// planner's check-as user), else the current user; its mapping holds the credentials, as with
/// postgres_fdw.
unsafe fn check_as_user(node: *mut pg_sys::ForeignScanState, plan: *mut pg_sys::ForeignScan) -> pg_sys::Oid {
    unsafe {
        #[cfg(feature = "pg15")]
        let check_as = {
            let _ = plan;
            let range_table = PgList::<pg_sys::RangeTblEntry>::from_pg((*(*node).ss.ps.state).es_range_table);
            let index = (*(*node).ss.ps.plan.cast::<pg_sys::Scan>()).scanrelid as usize;
            range_table.get_ptr(index - 1).map_or(pg_sys::InvalidOid, |rte| (*rte).checkAsUser)
        };
        #[cfg(not(feature = "pg15"))]
        let check_as = {
            let _ = node;
            (*plan).checkAsUser
        };
        if check_as == pg_sys::InvalidOid {
            pg_sys::GetUserId()
        } else {
            check_as
        }
    }
}

unsafe fn table(relid: pg_sys::Oid, relation: pg_sys::Relation, user: pg_sys::Oid, wanted: &str) -> Table {
    unsafe {
        let foreign_table = pg_sys::GetForeignTable(relid);
        let server = pg_sys::GetForeignServer((*foreign_table).serverid);
        let wanted: Option<Vec<usize>> =
            (wanted != "all").then(|| wanted.split(',').filter_map(|n| n.parse().ok()).collect());
        let columns = PgTupleDesc::from_pg_unchecked((*relation).rd_att)
            .iter()
            .enumerate()
            .filter(|(_, a)| !a.is_dropped())
            .map(|(index, a)| Column {
                index,
                name: a.name().to_string(),
                type_oid: a.type_oid().value(),
                wanted: wanted.as_ref().is_none_or(|w| w.contains(&(index + 1))),
            })
            .collect();
        Table {
            name: CStr::from_ptr(pg_sys::get_rel_name(relid)).to_string_lossy().into_owned(),
            server_name: CStr::from_ptr((*server).servername).to_string_lossy().into_owned(),
            server: catalog_options((*server).options),
            mapping: user_mapping(user, (*server).serverid),
            options: catalog_options((*foreign_table).options),
            columns,
        }
    }
}

unsafe fn state<'a, S>(node: *mut pg_sys::ForeignScanState) -> Option<&'a mut ScanState<S>> {
    unsafe { (*node).fdw_state.cast::<ScanState<S>>().as_mut() }
}

#[pg_guard]
pub(crate) unsafe extern "C-unwind" fn iterate<S: ForeignSource>(
    node: *mut pg_sys::ForeignScanState,
) -> *mut pg_sys::TupleTableSlot {
    unsafe {
        let state = state::<S>(node).expect("BeginForeignScan ran");
        if !state.started {
            let econtext = (*node).ss.ps.ps_ExprContext;
            let quals: Vec<Qual> = state
                .pushed
                .iter()
                .map(|p| {
                    let mut null = false;
                    let evaluate = (*p.value).evalfunc.expect("an initialised expression");
                    // A pushed value can ERROR (a subquery of two rows, a statement timeout in an
                    // initplan): through pgrx's guard, that longjmp becomes a Rust unwind.
                    let datum = pg_sys::ffi::pg_guard_ffi_boundary(|| evaluate(p.value, econtext, &mut null));
                    let value = if null { value::Value::Null } else { value::read(datum, p.type_oid) };
                    Qual { column: p.column.clone(), op: p.op, value }
                })
                .collect();
            pg_sys::MemoryContextReset(state.memory);
            state.source.start(&quals).unwrap_or_else(|e| raise::<S>(e));
            state.started = true;
        }
        let slot = (*node).ss.ss_ScanTupleSlot;
        if let Some(clear) = (*(*slot).tts_ops).clear {
            pg_sys::ffi::pg_guard_ffi_boundary(|| clear(slot));
        }
        let natts = (*(*slot).tts_tupleDescriptor).natts as usize;
        let nulls = std::slice::from_raw_parts_mut((*slot).tts_isnull, natts);
        nulls.fill(true);
        let mut row =
            Row { values: std::slice::from_raw_parts_mut((*slot).tts_values, natts), nulls, scan_memory: state.memory };
        if state.source.next(&mut row).unwrap_or_else(|e| raise::<S>(e)) {
            // ExecStoreVirtualTuple's two assignments, without an FFI boundary per row.
            (*slot).tts_flags &= !(pg_sys::TTS_FLAG_EMPTY as u16);
            (*slot).tts_nvalid = natts as i16;
        }
        slot
    }
}

#[pg_guard]
pub(crate) unsafe extern "C-unwind" fn rescan<S: ForeignSource>(node: *mut pg_sys::ForeignScanState) {
    unsafe {
        if let Some(state) = state::<S>(node) {
            state.started = false;
        }
    }
}

#[pg_guard]
pub(crate) unsafe extern "C-unwind" fn end<S: ForeignSource>(node: *mut pg_sys::ForeignScanState) {
    unsafe {
        if let Some(state) = state::<S>(node) {
            state.source.end();
        }
    }
}

/// `Pushed Down: metric_name =, metric_time >=` — what the wrapper is handed.
#[pg_guard]
pub(crate) unsafe extern "C-unwind" fn explain<S: ForeignSource>(
    node: *mut pg_sys::ForeignScanState,
    es: *mut pg_sys::ExplainState,
) {
    unsafe {
        let Some(state) = state::<S>(node) else { return };
        let pushed: Vec<String> = state.pushed.iter().map(|p| format!("{} {}", p.column, p.op.as_str())).collect();
        let text = CString::new(if pushed.is_empty() { "none".to_string() } else { pushed.join(", ") })
            .expect("column names hold no NUL");
        pg_sys::ExplainPropertyText(c"Pushed Down".as_ptr(), text.as_ptr(), es);
    }
}
