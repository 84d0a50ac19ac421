use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("PGWAREHOUSE_LOG").unwrap_or_else(|_| EnvFilter::new("error")))
        .with_writer(std::io::stderr)
        .init();
    pgwarehouse::cli::run(pgwarehouse::cli::Cli::parse()).await
}
