//! Reading Clerk's Backend API for `clerk_fdw`, with no Postgres in sight: which requests one
//! scan makes ([`Object`] and [`Filter`]), the [`client`] that makes them (every page, 429s
//! honoured within a bounded number of retries and a bounded wait, every other failure an error
//! with Clerk's own message), and the [`fields`] a row's columns are read from.

pub mod client;
pub mod fields;

pub use client::{ClerkError, Client, Limits, DEFAULT_API_URL};
pub use fields::{Field, Kind};

/// What a foreign table reads, its `object` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    Users,
    Organizations,
    OrganizationMemberships,
}

impl Object {
    pub const NAMES: &'static str = "users, organizations, organization_memberships";

    pub fn parse(name: &str) -> Option<Object> {
        Some(match name {
            "users" => Object::Users,
            "organizations" => Object::Organizations,
            "organization_memberships" => Object::OrganizationMemberships,
            _ => return None,
        })
    }
}

/// Restrictions Clerk's API can apply for us; Postgres re-checks them on the rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// `user_id = ...` or `user_id IN (...)`.
    pub user_ids: Option<Vec<String>>,
    /// `organization_id = ...` or `organization_id IN (...)`.
    pub organization_ids: Option<Vec<String>>,
}
