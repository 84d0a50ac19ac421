//! Planning: one path, and a plan whose `fdw_private` holds strings and whose `fdw_exprs` holds
//! the values of the restrictions the wrapper can use — nothing that points into memory of ours.
//!
//! `fdw_private` is `[wanted columns, "attnum op"...]`: the first string lists the attribute
//! numbers the query reads (`all` for a whole-row reference), each next one a pushed restriction
//! whose value is the `fdw_exprs` entry at the same position.

use std::ffi::{CStr, CString};
use std::ptr::null_mut;

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{is_a, PgList};

use crate::{value, ForeignSource, Op};

/// Without statistics, the planner's guess at a scan's rows.
const ESTIMATED_ROWS: f64 = 1000.0;

#[pg_guard]
pub(crate) unsafe extern "C-unwind" fn rel_size(
    _root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    _table: pg_sys::Oid,
) {
    unsafe { (*baserel).rows = ESTIMATED_ROWS }
}

#[pg_guard]
pub(crate) unsafe extern "C-unwind" fn paths(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    _table: pg_sys::Oid,
) {
    unsafe {
        let rows = (*baserel).rows;
        let (startup, total) = (10.0, 10.0 + rows);
        let outer = (*baserel).lateral_relids;
        #[cfg(not(feature = "pg17"))]
        let path = pg_sys::create_foreignscan_path(
            root,
            baserel,
            null_mut(),
            rows,
            startup,
            total,
            null_mut(),
            outer,
            null_mut(),
            null_mut(),
        );
        #[cfg(feature = "pg17")]
        let path = pg_sys::create_foreignscan_path(
            root,
            baserel,
            null_mut(),
            rows,
            startup,
            total,
            null_mut(),
            outer,
            null_mut(),
            null_mut(),
            null_mut(),
        );
        pg_sys::add_path(baserel, path.cast());
    }
}

#[pg_guard]
pub(crate) unsafe extern "C-unwind" fn plan<S: ForeignSource>(
    _root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    table: pg_sys::Oid,
    _best_path: *mut pg_sys::ForeignPath,
    tlist: *mut pg_sys::List,
    scan_clauses: *mut pg_sys::List,
    outer_plan: *mut pg_sys::Plan,
) -> *mut pg_sys::ForeignScan {
    unsafe {
        let scan_relid = (*baserel).relid;
        let mut private = PgList::<pg_sys::Node>::new();
        private.push(node_string(&wanted_columns(baserel)));
        let mut values = PgList::<pg_sys::Node>::new();
        // What Postgres checks on the rows: every restriction but those the wrapper satisfies exactly.
        let mut quals = PgList::<pg_sys::Node>::new();
        for rinfo in PgList::<pg_sys::RestrictInfo>::from_pg(scan_clauses).iter_ptr() {
            if (*rinfo).pseudoconstant {
                continue;
            }
            let clause: *mut pg_sys::Node = (*rinfo).clause.cast();
            let mut exact = false;
            if let Some((attnum, op, value)) = restriction(clause, scan_relid) {
                let column = CStr::from_ptr(pg_sys::get_attname(table, attnum, false)).to_string_lossy();
                if S::pushable(&column, op) {
                    private.push(node_string(&format!("{attnum} {}", op.as_str())));
                    values.push(value);
                    exact = S::exact(&column, op);
                }
            }
            if !exact {
                quals.push(clause);
            }
        }
        let quals = quals.into_pg();
        pg_sys::make_foreignscan(
            tlist,
            quals,
            scan_relid,
            values.into_pg(),
            private.into_pg(),
            null_mut(),
            null_mut(),
            outer_plan,
        )
    }
}

unsafe fn node_string(text: &str) -> *mut pg_sys::Node {
    let text = CString::new(text).expect("plan strings hold no NUL");
    unsafe { pg_sys::makeString(pg_sys::pstrdup(text.as_ptr())).cast() }
}

/// The attribute numbers the query reads: its output and every restriction's columns.
unsafe fn wanted_columns(baserel: *mut pg_sys::RelOptInfo) -> String {
    unsafe {
        let relid = (*baserel).relid;
        let mut attrs: *mut pg_sys::Bitmapset = null_mut();
        pg_sys::pull_varattnos((*(*baserel).reltarget).exprs.cast(), relid, &mut attrs);
        for rinfo in PgList::<pg_sys::RestrictInfo>::from_pg((*baserel).baserestrictinfo).iter_ptr() {
            pg_sys::pull_varattnos((*rinfo).clause.cast(), relid, &mut attrs);
        }
        let mut wanted = Vec::new();
        let mut member = pg_sys::bms_next_member(attrs, -1);
        while member >= 0 {
            let attnum = member + pg_sys::FirstLowInvalidHeapAttributeNumber;
            if attnum == 0 {
                return "all".into();
            }
            if attnum > 0 {
                wanted.push(attnum.to_string());
            }
            member = pg_sys::bms_next_member(attrs, member);
        }
        wanted.join(",")
    }
}

/// `column op value` or `value op column` (commuted), or `column = ANY (array)`, where `value`
/// is free of this table's columns, of volatile functions and of subplans, and of a type
/// [`value::read`] understands.
unsafe fn restriction(clause: *mut pg_sys::Node, scan_relid: pg_sys::Index) -> Option<(i16, Op, *mut pg_sys::Node)> {
    unsafe {
        if is_a(clause, pg_sys::NodeTag::T_OpExpr) {
            let expr = clause.cast::<pg_sys::OpExpr>();
            let args = PgList::<pg_sys::Node>::from_pg((*expr).args);
            if args.len() != 2 {
                return None;
            }
            let (left, right) = (args.get_ptr(0)?, args.get_ptr(1)?);
            let (attnum, value, opno) = match (column_of(left, scan_relid), column_of(right, scan_relid)) {
                (Some(attnum), None) => (attnum, right, (*expr).opno),
                (None, Some(attnum)) => (attnum, left, pg_sys::get_commutator((*expr).opno)),
                _ => return None,
            };
            let op = Op::parse(&operator_name(opno)?)?;
            return usable_value(value).then_some((attnum, op, value));
        }
        if is_a(clause, pg_sys::NodeTag::T_ScalarArrayOpExpr) {
            let expr = clause.cast::<pg_sys::ScalarArrayOpExpr>();
            let args = PgList::<pg_sys::Node>::from_pg((*expr).args);
            if !(*expr).useOr || args.len() != 2 || operator_name((*expr).opno)? != "=" {
                return None;
            }
            let attnum = column_of(args.get_ptr(0)?, scan_relid)?;
            let value = args.get_ptr(1)?;
            return usable_value(value).then_some((attnum, Op::In, value));
        }
        None
    }
}

unsafe fn operator_name(opno: pg_sys::Oid) -> Option<String> {
    unsafe {
        if opno == pg_sys::InvalidOid {
            return None;
        }
        let name = pg_sys::get_opname(opno);
        (!name.is_null()).then(|| CStr::from_ptr(name).to_string_lossy().into_owned())
    }
}

/// The attribute number when `node` is (a binary-compatible relabel of) a column of this scan.
unsafe fn column_of(mut node: *mut pg_sys::Node, scan_relid: pg_sys::Index) -> Option<i16> {
    unsafe {
        while is_a(node, pg_sys::NodeTag::T_RelabelType) {
            node = (*node.cast::<pg_sys::RelabelType>()).arg.cast();
        }
        if !is_a(node, pg_sys::NodeTag::T_Var) {
            return None;
        }
        let var = node.cast::<pg_sys::Var>();
        let ours = (*var).varno == scan_relid as i32 && (*var).varlevelsup == 0 && (*var).varattno > 0;
        ours.then_some((*var).varattno)
    }
}

unsafe fn usable_value(value: *mut pg_sys::Node) -> bool {
    unsafe {
        !pg_sys::contain_var_clause(value)
            && !pg_sys::contain_volatile_functions(value)
            && !pg_sys::contain_subplans(value)
            && value::readable(pg_sys::exprType(value))
    }
}
