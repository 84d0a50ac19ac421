use std::process::ExitCode;

use clap::Parser;
use pgwarehouse::cli::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The controller reports its work; the one-shot commands only their failures.
    let default_level = if matches!(cli.command, Command::Run(_)) { "info" } else { "error" };
    let filter = EnvFilter::try_from_env("PGWAREHOUSE_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }
    pgwarehouse::cli::run(cli).await
}
