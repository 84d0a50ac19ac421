//! Options as the catalog holds them: a server's, the current user's mapping, a table's, and
//! what a validator is being asked about.

use std::collections::HashMap;
use std::ffi::CStr;

use pgrx::pg_sys;

/// Where a validator's options are being set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionTarget {
    Wrapper,
    Server,
    UserMapping,
    Table,
    Column,
}

pub fn validator_target(catalog: Option<pg_sys::Oid>) -> OptionTarget {
    match catalog {
        Some(c) if c == pg_sys::ForeignServerRelationId => OptionTarget::Server,
        Some(c) if c == pg_sys::UserMappingRelationId => OptionTarget::UserMapping,
        Some(c) if c == pg_sys::ForeignTableRelationId => OptionTarget::Table,
        Some(c) if c == pg_sys::AttributeRelationId => OptionTarget::Column,
        _ => OptionTarget::Wrapper,
    }
}

/// The options a wrapper takes, where.
pub struct OptionNames {
    pub server: &'static [&'static str],
    pub user_mapping: &'static [&'static str],
    pub table: &'static [&'static str],
}

/// An option set where the wrapper does not take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownOption {
    pub option: String,
    pub on: &'static str,
    pub valid: String,
}

impl std::fmt::Display for UnknownOption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} is not an option of a {} (valid: {})", self.option, self.on, self.valid)
    }
}

impl std::error::Error for UnknownOption {}

impl OptionNames {
    /// A validator's options (`key=value` texts) as a map, each one known where it is set;
    /// `None` where the wrapper takes none to check (on itself, on columns).
    pub fn check(
        &self,
        options: &[Option<String>],
        target: OptionTarget,
    ) -> Result<Option<HashMap<String, String>>, UnknownOption> {
        let (on, valid) = match target {
            OptionTarget::Server => ("server", self.server),
            OptionTarget::UserMapping => ("user mapping", self.user_mapping),
            OptionTarget::Table => ("foreign table", self.table),
            OptionTarget::Wrapper | OptionTarget::Column => return Ok(None),
        };
        let options: HashMap<String, String> = options
            .iter()
            .flatten()
            .map(|o| match o.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (o.clone(), String::new()),
            })
            .collect();
        match options.keys().find(|k| !valid.contains(&k.as_str())) {
            Some(option) => Err(UnknownOption { option: option.clone(), on, valid: valid.join(", ") }),
            None => Ok(Some(options)),
        }
    }
}

/// A catalog options list (`DefElem`s) as a map.
///
/// # Safety
/// `options` is a valid `List` of `DefElem`, or NIL.
pub(crate) unsafe fn catalog_options(options: *mut pg_sys::List) -> HashMap<String, String> {
    unsafe {
        pgrx::PgList::<pg_sys::DefElem>::from_pg(options)
            .iter_ptr()
            .map(|def| {
                let name = CStr::from_ptr((*def).defname).to_string_lossy().into_owned();
                let value = CStr::from_ptr(pg_sys::defGetString(def)).to_string_lossy().into_owned();
                (name, value)
            })
            .collect()
    }
}

/// The options of `user`'s mapping for `server` (or the PUBLIC one); none when there is no
/// mapping, since a wrapper may be used without credentials.
///
/// # Safety
/// Runs inside a Postgres backend, in a transaction.
pub(crate) unsafe fn user_mapping(user: pg_sys::Oid, server: pg_sys::Oid) -> HashMap<String, String> {
    unsafe {
        let exists = |role: pg_sys::Oid| {
            let tuple = pg_sys::SearchSysCache2(
                pg_sys::SysCacheIdentifier::USERMAPPINGUSERSERVER as _,
                pg_sys::Datum::from(role),
                pg_sys::Datum::from(server),
            );
            let found = !tuple.is_null();
            if found {
                pg_sys::ReleaseSysCache(tuple);
            }
            found
        };
        if !exists(user) && !exists(pg_sys::InvalidOid) {
            return HashMap::new();
        }
        catalog_options((*pg_sys::GetUserMapping(user, server)).options)
    }
}
