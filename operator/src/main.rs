use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    pgwarehouse::cli::main().await
}
