//! `pgwarehouse local`: the embedded default — a private Postgres from the host's binaries,
//! configured as the StatefulSet would be, converged by the same engine.

pub mod cluster;
