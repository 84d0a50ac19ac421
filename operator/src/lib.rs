//! pgwarehouse: a whole customer data warehouse on Postgres, declared as one resource.
//!
//! The data flows spec → [`template`] → [`validate`] → [`secrets`] → [`sql`] (observe → plan →
//! apply); the CLI in [`cli`] drives the same pipeline the controller does.

pub mod api;
pub mod backup;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod field_errors;
pub mod ha;
pub mod local;
pub mod render;
pub mod report;
pub mod secrets;
pub mod sql;
pub mod structure;
pub mod template;
pub mod validate;
