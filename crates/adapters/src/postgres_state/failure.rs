//! Turning the client library's and the pool's errors into the port's, saying
//! what was being done; and, when opening, why the database cannot be used.

use deadpool_postgres::PoolError;
use segment_sync_ports::StateError;
use tokio_postgres::error::SqlState;

use super::url::PostgresUrl;

/// Why work on the database failed, before it is told as a [`StateError`].
#[derive(Debug)]
pub(super) enum Failure {
    Postgres(tokio_postgres::Error),
    Pool(PoolError),
    /// The database holds something this code did not write, or a value it
    /// cannot store.
    Invalid(String),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Postgres(error)
    }
}

impl From<PoolError> for Failure {
    fn from(error: PoolError) -> Self {
        match error {
            PoolError::Backend(error) => Self::Postgres(error),
            other => Self::Pool(other),
        }
    }
}

impl From<String> for Failure {
    fn from(reason: String) -> Self {
        Self::Invalid(reason)
    }
}

impl Failure {
    pub(super) fn into_state_error(self, doing: &str) -> StateError {
        StateError::Storage(format!("{doing}: {}", self.reason()))
    }

    fn reason(&self) -> String {
        match self {
            Self::Postgres(e) => chain(e),
            Self::Pool(e) => pool_reason(e),
            Self::Invalid(reason) => reason.clone(),
        }
    }

    /// Whether running the statement again may succeed: the server chose it as
    /// the victim of a deadlock or a serialization conflict, and rolled it back.
    pub(super) fn is_retryable(&self) -> bool {
        let Self::Postgres(e) = self else {
            return false;
        };
        e.code().is_some_and(|code| {
            *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE
        })
    }

    /// The reason for a [`StateError::Open`] of `url`: unreachable, refused,
    /// missing, or the error as the server told it.
    pub(super) fn open_reason(&self, url: &PostgresUrl) -> String {
        let address = url.first_address();
        match self {
            Self::Postgres(e) => describe_connect_error(e, url),
            Self::Pool(PoolError::Timeout(_)) => format!("the server at {address} did not answer in time: check that it is running and reachable, or raise connect_timeout in the URL"),
            other => other.reason(),
        }
    }
}

/// An error with its causes, as one line: the client library's own message
/// names only the kind of error (`error connecting to server`).
pub(super) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    if let Some(db) = error
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::as_db_error)
    {
        let mut text = format!("{}: {}", db.severity(), db.message());
        if let Some(detail) = db.detail() {
            // A detail may run to several lines (a deadlock's does); an error is one.
            let detail: Vec<&str> = detail.lines().map(str::trim).collect();
            text.push_str(&format!(" ({})", detail.join(" ")));
        }
        return text;
    }
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn pool_reason(error: &PoolError) -> String {
    match error {
        PoolError::Backend(e) => chain(e),
        PoolError::Timeout(_) => {
            "no connection to the database within the pool's time limit".to_owned()
        }
        PoolError::Closed => "the store is closed".to_owned(),
        other => other.to_string(),
    }
}

/// Why connecting failed, and what to do (each message on one line, as
/// docs/troubleshooting.md quotes it).
fn describe_connect_error(error: &tokio_postgres::Error, url: &PostgresUrl) -> String {
    let text = chain(error);
    let user = url.user().unwrap_or("(the system user)");
    let address = url.first_address();
    let mode = url.ssl_mode().as_str();
    let Some(code) = error.code() else {
        if text.starts_with("error performing TLS handshake") {
            return format!("{text}: the URL asks for sslmode={mode}; check that the server has TLS on, and that its certificate is signed by a root in webpki's list or in sslrootcert for verify-ca and verify-full");
        }
        if text.starts_with("error connecting to server") || text.starts_with("timeout") {
            return format!("cannot reach the server at {address} ({text}): check that it is running and the host and port are right");
        }
        return text;
    };
    if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    {
        return format!("authentication failed for user \"{user}\" ({text}): check the user and password in the URL, and the server's pg_hba.conf");
    }
    if *code == SqlState::INVALID_CATALOG_NAME {
        let database = url.database().unwrap_or(user);
        return format!("database \"{database}\" does not exist: create it (CREATE DATABASE \"{database}\") or name an existing one in the URL");
    }
    if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        return format!("user \"{user}\" may not create the state's tables ({text}): grant it CREATE on the database's schema, or create them once as the database's owner");
    }
    if *code == SqlState::DUPLICATE_TABLE {
        return format!("the database already has tables segment-sync did not create ({text}): give segment-sync a database of its own");
    }
    text
}
