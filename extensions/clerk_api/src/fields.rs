//! Which column of which object reads what from Clerk's JSON, and which Postgres types it may be.

use serde_json::Value;

use crate::Object;

/// The kind of value a column holds, deciding the column types it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// Clerk's epoch milliseconds: `bigint` as they are, or `timestamptz`.
    Time,
    Integer,
    Boolean,
    /// Any JSON (`jsonb`), or for a list of strings also `text` (comma-separated).
    Json,
}

/// Where a column's value is in an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// A member, or a member of a member.
    Path(&'static [&'static str]),
    /// The user's primary email address (the first one without a primary).
    PrimaryEmail,
    /// The user's phone numbers, as a list of strings.
    PhoneNumbers,
    /// The whole object (`attrs`).
    Whole,
}

/// The columns an object can fill, by name.
pub fn columns(object: Object) -> &'static [(&'static str, Field, Kind)] {
    use Field::*;
    use Kind::*;
    match object {
        Object::Users => &[
            ("user_id", Path(&["id"]), Text),
            ("first_name", Path(&["first_name"]), Text),
            ("last_name", Path(&["last_name"]), Text),
            ("email", PrimaryEmail, Text),
            ("gender", Path(&["gender"]), Text),
            ("username", Path(&["username"]), Text),
            ("external_id", Path(&["external_id"]), Text),
            ("image_url", Path(&["image_url"]), Text),
            ("banned", Path(&["banned"]), Boolean),
            ("created_at", Path(&["created_at"]), Time),
            ("updated_at", Path(&["updated_at"]), Time),
            ("last_sign_in_at", Path(&["last_sign_in_at"]), Time),
            ("last_active_at", Path(&["last_active_at"]), Time),
            ("phone_numbers", PhoneNumbers, Json),
            ("attrs", Whole, Json),
        ],
        Object::Organizations => &[
            ("organization_id", Path(&["id"]), Text),
            ("name", Path(&["name"]), Text),
            ("slug", Path(&["slug"]), Text),
            ("members_count", Path(&["members_count"]), Integer),
            ("max_allowed_memberships", Path(&["max_allowed_memberships"]), Integer),
            ("created_by", Path(&["created_by"]), Text),
            ("created_at", Path(&["created_at"]), Time),
            ("updated_at", Path(&["updated_at"]), Time),
            ("attrs", Whole, Json),
        ],
        Object::OrganizationMemberships => &[
            ("membership_id", Path(&["id"]), Text),
            ("user_id", Path(&["public_user_data", "user_id"]), Text),
            ("organization_id", Path(&["organization", "id"]), Text),
            ("organization_name", Path(&["organization", "name"]), Text),
            ("identifier", Path(&["public_user_data", "identifier"]), Text),
            ("role", Path(&["role"]), Text),
            ("created_at", Path(&["created_at"]), Time),
            ("updated_at", Path(&["updated_at"]), Time),
            ("attrs", Whole, Json),
        ],
    }
}

/// The value of `field` in `object`; `Null` when Clerk leaves it out.
pub fn read<'a>(field: Field, object: &'a Value) -> std::borrow::Cow<'a, Value> {
    use std::borrow::Cow;
    match field {
        Field::Path(path) => Cow::Borrowed(path.iter().try_fold(object, |v, key| v.get(key)).unwrap_or(&Value::Null)),
        Field::Whole => Cow::Borrowed(object),
        Field::PrimaryEmail => {
            let addresses = object.get("email_addresses").and_then(Value::as_array);
            let primary = object.get("primary_email_address_id");
            let chosen = addresses.and_then(|list| {
                list.iter().find(|a| primary.is_some_and(|p| a.get("id") == Some(p))).or_else(|| list.first())
            });
            Cow::Borrowed(chosen.and_then(|a| a.get("email_address")).unwrap_or(&Value::Null))
        }
        Field::PhoneNumbers => Cow::Owned(match object.get("phone_numbers").and_then(Value::as_array) {
            Some(list) => Value::Array(list.iter().filter_map(|p| p.get("phone_number").cloned()).collect()),
            None => Value::Null,
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn column(object: Object, name: &str) -> Field {
        columns(object).iter().find(|(n, ..)| *n == name).unwrap().1
    }

    #[test]
    fn a_user_reads_its_primary_email_phone_numbers_and_members() {
        let user = json!({
            "id": "user_1", "first_name": "Ada", "created_at": 1700000000123_i64,
            "primary_email_address_id": "idn_2",
            "email_addresses": [{"id": "idn_1", "email_address": "old@x.io"}, {"id": "idn_2", "email_address": "ada@x.io"}],
            "phone_numbers": [{"id": "p1", "phone_number": "+15550001"}, {"id": "p2", "phone_number": "+15550002"}]
        });
        assert_eq!(*read(column(Object::Users, "email"), &user), json!("ada@x.io"));
        assert_eq!(*read(column(Object::Users, "phone_numbers"), &user), json!(["+15550001", "+15550002"]));
        assert_eq!(*read(column(Object::Users, "created_at"), &user), json!(1700000000123_i64));
        assert_eq!(*read(column(Object::Users, "last_name"), &user), Value::Null);
        let no_primary = json!({"email_addresses": [{"id": "a", "email_address": "first@x.io"}]});
        assert_eq!(*read(column(Object::Users, "email"), &no_primary), json!("first@x.io"));
    }

    #[test]
    fn a_membership_reads_its_user_and_organization_ids() {
        let membership = json!({"id": "orgmem_1", "role": "org:admin",
            "organization": {"id": "org_1", "name": "Acme"}, "public_user_data": {"user_id": "user_1"}});
        let object = Object::OrganizationMemberships;
        assert_eq!(*read(column(object, "user_id"), &membership), json!("user_1"));
        assert_eq!(*read(column(object, "organization_id"), &membership), json!("org_1"));
        assert_eq!(*read(column(object, "attrs"), &membership), membership);
    }

    #[test]
    fn every_object_has_the_seed_columns() {
        let seed: [(Object, &[&str]); 3] = [
            (
                Object::Users,
                &[
                    "user_id",
                    "first_name",
                    "last_name",
                    "email",
                    "gender",
                    "created_at",
                    "updated_at",
                    "last_sign_in_at",
                    "phone_numbers",
                    "username",
                ],
            ),
            (Object::Organizations, &["organization_id", "name", "slug", "created_at", "updated_at"]),
            (Object::OrganizationMemberships, &["user_id", "organization_id", "role", "created_at"]),
        ];
        for (object, names) in seed {
            for name in names.iter().chain(&["attrs"]) {
                assert!(columns(object).iter().any(|(n, ..)| n == name), "{object:?} {name}");
            }
        }
    }
}
