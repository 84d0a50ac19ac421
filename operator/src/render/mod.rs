//! Pure renderers of what runs the stack's Postgres.

pub mod config;
