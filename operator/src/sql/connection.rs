//! How the engine opens connections. sqlx logs every statement it runs (DEBUG) and, past one
//! second, every slow one with its full text (WARN, which passes the controller's default level);
//! a unit that sets a password is such a statement, so a busy database would write the password
//! to the operator's log. Both are off for every connection the engine opens, and the engine
//! logs its slow units itself, redacted ([`crate::sql::apply`]).

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};

/// Connects with sqlx's statement logging off.
pub async fn connect(options: PgConnectOptions) -> Result<PgConnection, sqlx::Error> {
    options.disable_statement_logging().connect().await
}

/// Connects to a `postgres://` URL with sqlx's statement logging off.
pub async fn connect_url(url: &str) -> Result<PgConnection, sqlx::Error> {
    connect(PgConnectOptions::from_str(url)?).await
}
