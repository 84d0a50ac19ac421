//! A restriction's value, read out of its datum once per scan.

use std::ffi::CStr;

use pgrx::pg_sys;

/// Seconds between the Unix epoch and Postgres's (2000-01-01).
pub const POSTGRES_EPOCH: f64 = 946_684_800.0;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Number(f64),
    Text(String),
    /// A `timestamptz`, as Unix epoch seconds.
    Time(f64),
    List(Vec<Value>),
}

/// Whether a value of this type can be read into a [`Value`] (plan time).
pub(crate) fn readable(type_oid: pg_sys::Oid) -> bool {
    scalar_readable(type_oid) || {
        let element = unsafe { pg_sys::get_element_type(type_oid) };
        element != pg_sys::InvalidOid && scalar_readable(element)
    }
}

fn scalar_readable(type_oid: pg_sys::Oid) -> bool {
    [
        pg_sys::INT2OID,
        pg_sys::INT4OID,
        pg_sys::INT8OID,
        pg_sys::FLOAT4OID,
        pg_sys::FLOAT8OID,
        pg_sys::NUMERICOID,
        pg_sys::TIMESTAMPTZOID,
        pg_sys::TEXTOID,
        pg_sys::VARCHAROID,
        pg_sys::BPCHAROID,
        pg_sys::NAMEOID,
    ]
    .contains(&type_oid)
}

/// Reads `datum` of `type_oid` (one [`readable`] says yes to).
///
/// # Safety
/// `datum` is a valid, non-null value of `type_oid`.
pub(crate) unsafe fn read(datum: pg_sys::Datum, type_oid: pg_sys::Oid) -> Value {
    unsafe {
        if type_oid == pg_sys::TIMESTAMPTZOID {
            return Value::Time(match datum.value() as i64 {
                i64::MIN => f64::NEG_INFINITY,
                i64::MAX => f64::INFINITY,
                micros => micros as f64 / 1e6 + POSTGRES_EPOCH,
            });
        }
        let element = pg_sys::get_element_type(type_oid);
        if element != pg_sys::InvalidOid {
            return read_array(datum, element);
        }
        let text = output(datum, type_oid);
        match type_oid {
            t if t == pg_sys::INT2OID
                || t == pg_sys::INT4OID
                || t == pg_sys::INT8OID
                || t == pg_sys::FLOAT4OID
                || t == pg_sys::FLOAT8OID
                || t == pg_sys::NUMERICOID =>
            {
                text.parse().map(Value::Number).unwrap_or(Value::Null)
            }
            _ => Value::Text(text),
        }
    }
}

unsafe fn output(datum: pg_sys::Datum, type_oid: pg_sys::Oid) -> String {
    unsafe {
        let (mut function, mut varlena) = (pg_sys::InvalidOid, false);
        pg_sys::getTypeOutputInfo(type_oid, &mut function, &mut varlena);
        CStr::from_ptr(pg_sys::OidOutputFunctionCall(function, datum)).to_string_lossy().into_owned()
    }
}

unsafe fn read_array(datum: pg_sys::Datum, element: pg_sys::Oid) -> Value {
    unsafe {
        let array = pg_sys::pg_detoast_datum(datum.cast_mut_ptr()) as *mut pg_sys::ArrayType;
        let (mut len, mut by_value, mut align) = (0i16, false, 0 as std::ffi::c_char);
        pg_sys::get_typlenbyvalalign(element, &mut len, &mut by_value, &mut align);
        let (mut items, mut nulls, mut count) = (std::ptr::null_mut(), std::ptr::null_mut(), 0);
        pg_sys::deconstruct_array(array, element, len.into(), by_value, align, &mut items, &mut nulls, &mut count);
        let count = count as usize;
        let items = std::slice::from_raw_parts(items, count);
        let nulls = std::slice::from_raw_parts(nulls, count);
        Value::List(
            items
                .iter()
                .zip(nulls)
                .map(|(item, null)| if *null { Value::Null } else { read(*item, element) })
                .collect(),
        )
    }
}
