//! The `pgwarehouse` command line: the engine from a terminal or a CI pipeline.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use sqlx::{Connection, PgConnection};

use crate::local::{self, LocalOptions};
use crate::secrets::{self, NoSecrets, SecretSource, Secrets, SecretsDir};
use crate::sql::apply::{ApplyReport, ItemState};
use crate::sql::plan::Plan;
use crate::validate::{self, ValidatedStack};
use crate::{crd, sql, template};

#[derive(Parser, Debug)]
#[command(name = "pgwarehouse", version, about = "A whole data warehouse on Postgres, declared as one resource")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check a DataWarehouseStack manifest; prints every error with its field path.
    Validate {
        #[command(flatten)]
        input: Input,
    },
    /// Show the statements `apply` would run against a database (secrets redacted).
    Plan {
        #[command(flatten)]
        input: Input,
        #[command(flatten)]
        database: Database,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Converge a database to the manifest; exits non-zero when any item failed.
    Apply {
        #[command(flatten)]
        input: Input,
        #[command(flatten)]
        database: Database,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Print the CustomResourceDefinition YAML.
    Crd,
    /// Run the stack on this machine: a private Postgres from the host's binaries, no cluster.
    Local {
        #[command(subcommand)]
        command: LocalCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum LocalCommand {
    /// Start the local server (initializing it once), converge the stack, print its status.
    Up {
        #[command(flatten)]
        input: Input,
        #[command(flatten)]
        place: Place,
        /// Port on 127.0.0.1 (default: the last one used, else 5433).
        #[arg(long)]
        port: Option<u16>,
        /// Create database DB once and run the SQL in FILE in it (a demo's source data).
        #[arg(long, value_name = "DB=FILE", value_parser = parse_seed)]
        seed: Vec<(String, PathBuf)>,
    },
    /// Print the local warehouse's sources, jobs, partitions and connection strings.
    Status {
        #[command(flatten)]
        input: Input,
        #[command(flatten)]
        place: Place,
    },
    /// Stop the local server; data stays unless --purge.
    Down {
        #[command(flatten)]
        input: Input,
        #[command(flatten)]
        place: Place,
        /// Delete the data directory too.
        #[arg(long)]
        purge: bool,
    },
}

#[derive(clap::Args, Debug)]
pub struct Place {
    /// Where the local server keeps its data (default: .pgwarehouse/<stack name>).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

fn parse_seed(text: &str) -> Result<(String, PathBuf), String> {
    let (db, file) = text.split_once('=').ok_or("write DB=FILE")?;
    Ok((db.to_string(), PathBuf::from(file)))
}

#[derive(clap::Args, Debug)]
pub struct Input {
    /// The DataWarehouseStack manifest, as one would `kubectl apply` it.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Resolve `secretKeyRef {name, key}` from the file DIR/name/key.
    #[arg(long, value_name = "DIR")]
    pub secrets_dir: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct Database {
    /// The warehouse database (its server must preload pg_cron with cron.database_name set to it).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

/// A failure of the command itself, printed on one line (or one line per field error).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Load(#[from] template::LoadError),
    #[error("{0}")]
    Invalid(#[from] validate::ValidationErrors),
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error(transparent)]
    Engine(#[from] sql::EngineError),
    #[error("{0} item(s) failed")]
    ItemsFailed(usize),
    #[error(transparent)]
    Local(#[from] local::LocalError),
}

pub async fn run(cli: Cli) -> ExitCode {
    match execute(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", error.to_string().replace('\n', "\nerror: "));
            ExitCode::FAILURE
        }
    }
}

async fn execute(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Validate { input } => {
            let (stack, _) = load(&input)?;
            println!("{}: valid", display_name(&stack, &input.file));
            Ok(())
        }
        Command::Plan { input, database, output } => {
            let (stack, secrets) = load(&input)?;
            let mut conn = connect(&database).await?;
            let observed = sql::observe::observe(&mut conn, &stack).await.map_err(sql::EngineError::Observe)?;
            let plan = sql::plan::plan(&stack, &observed, &secrets).map_err(sql::EngineError::from)?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&plan.view()).expect("plans serialize")),
                Output::Text => print_plan(&plan),
            }
            Ok(())
        }
        Command::Apply { input, database, output } => {
            let (stack, secrets) = load(&input)?;
            let mut conn = connect(&database).await?;
            let (_, report) = sql::converge(&mut conn, &stack, &secrets).await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&report).expect("reports serialize")),
                Output::Text => print_report(&report),
            }
            match report.failed().count() {
                0 => Ok(()),
                n => Err(CliError::ItemsFailed(n)),
            }
        }
        Command::Crd => {
            print!("{}", crd::crd_yaml());
            Ok(())
        }
        Command::Local { command } => run_local(command).await,
    }
}

async fn run_local(command: LocalCommand) -> Result<(), CliError> {
    let mut out = std::io::stdout();
    match command {
        LocalCommand::Up { input, place, port, seed } => {
            let (stack, secrets) = load(&input)?;
            let options = LocalOptions { data_dir: place.data_dir, port, seeds: seed };
            let (local, report) = local::up(&stack, &secrets, &options, &mut out).await?;
            local::status(&stack, &LocalOptions { port: Some(local.port), ..options }, &mut out).await?;
            match report.failed().count() {
                0 => Ok(()),
                n => Err(CliError::ItemsFailed(n)),
            }
        }
        LocalCommand::Status { input, place } => {
            let stack = load_stack(&input.file)?;
            Ok(local::status(&stack, &LocalOptions { data_dir: place.data_dir, ..LocalOptions::default() }, &mut out)
                .await?)
        }
        LocalCommand::Down { input, place, purge } => {
            let stack = load_stack(&input.file)?;
            Ok(local::down(
                &stack,
                &LocalOptions { data_dir: place.data_dir, ..LocalOptions::default() },
                purge,
                &mut out,
            )?)
        }
    }
}

/// Manifest → template → validation.
fn load_stack(file: &Path) -> Result<ValidatedStack, CliError> {
    let text = std::fs::read_to_string(file).map_err(|source| CliError::Read { path: file.to_path_buf(), source })?;
    Ok(validate::validate(&template::load_manifest(&text)?)?)
}

/// Manifest → template → validation → secrets: everything that happens before any SQL.
pub fn load(input: &Input) -> Result<(ValidatedStack, Secrets), CliError> {
    let stack = load_stack(&input.file)?;
    let source: Box<dyn SecretSource> = match &input.secrets_dir {
        Some(dir) => Box::new(SecretsDir(dir.clone())),
        None => Box::new(NoSecrets),
    };
    let secrets = secrets::resolve(&stack, source.as_ref())?;
    Ok((stack, secrets))
}

async fn connect(database: &Database) -> Result<PgConnection, CliError> {
    PgConnection::connect(&database.database_url).await.map_err(|e| CliError::Connect(e.to_string()))
}

fn display_name(stack: &ValidatedStack, file: &Path) -> String {
    if stack.name.is_empty() { file.display().to_string() } else { stack.name.clone() }
}

fn print_plan(plan: &Plan) {
    let view = plan.view();
    let mut current = None;
    for change in &view.changes {
        if current != Some(&change.item) {
            println!("\n# {}", change.item);
            current = Some(&change.item);
        }
        println!("{};", change.sql);
    }
    for blocked in &view.blocked {
        println!("\n# {}\n-- cannot converge: {}", blocked.item, blocked.error);
    }
    match (view.changes.len(), view.blocked.len()) {
        (0, 0) => println!("No changes: the database matches the stack."),
        (n, 0) => println!("\nPlan: {n} statement(s)."),
        (n, b) => println!("\nPlan: {n} statement(s); {b} item(s) cannot converge."),
    }
}

fn print_report(report: &ApplyReport) {
    let units: Vec<_> = report.items.iter().collect();
    let width = units.iter().map(|i| format!("{:?}/{}", i.item, i.name).len()).max().unwrap_or(0);
    for item in units {
        let label = format!("{}/{}", format!("{:?}", item.item).to_lowercase(), item.name);
        let state = match item.state {
            ItemState::Converged => "converged".to_string(),
            ItemState::Changed => format!("changed ({} statement(s))", item.statements),
            ItemState::Failed => format!("FAILED: {}", item.message.as_deref().unwrap_or("")),
        };
        println!("{label:width$}  {state}");
    }
    println!(
        "{} item(s): {} changed, {} failed; {} statement(s), {} round trip(s).",
        report.items.len(),
        report.items.iter().filter(|i| i.state == ItemState::Changed).count(),
        report.failed().count(),
        report.statements,
        report.round_trips
    );
}
