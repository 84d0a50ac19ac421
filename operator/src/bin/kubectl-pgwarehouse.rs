//! The same program as `pgwarehouse`, named so that kubectl finds it as a plugin:
//! `kubectl pgwarehouse status NAME -n NAMESPACE`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    pgwarehouse::cli::main().await
}
