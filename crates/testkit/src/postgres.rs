//! A fresh database on the test PostgreSQL server for each test, dropped
//! afterwards — also when the test panics.
//!
//! The server is `SEGMENT_SYNC_TEST_DATABASE_URL`
//! (`postgres://postgres@127.0.0.1:5432/postgres` when unset); its user must be
//! allowed to create databases, and it is reached without TLS. A test that uses
//! it fails, saying so, when no server answers: tests never skip themselves.
//! (`cargo xtask ci` leaves out the tests whose name contains `postgres` when
//! no server answers, unless `SEGMENT_SYNC_REQUIRE_POSTGRES=1`.)
//!
//! ```no_run
//! # async fn example() {
//! use segment_sync_testkit::postgres::TestDatabase;
//!
//! let database = TestDatabase::create().await;
//! // connect the store under test to database.url() …
//! drop(database); // the database is dropped with it
//! # }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_postgres::NoTls;

/// The variable that names the test server (a database on it that the user can
/// connect to; each test makes its own beside it).
pub const DATABASE_URL_VARIABLE: &str = "SEGMENT_SYNC_TEST_DATABASE_URL";

/// The test server when [`DATABASE_URL_VARIABLE`] is unset: the one the
/// project's machines run, with trust authentication.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The test server's URL: [`DATABASE_URL_VARIABLE`], or the default.
pub fn server_url() -> String {
    std::env::var(DATABASE_URL_VARIABLE)
        .ok()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned())
}

/// A database of its own for one test, on the test server; dropping it drops the
/// database (closing every session still on it).
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    server_url: String,
}

impl TestDatabase {
    /// Creates a database of a new name on the test server.
    ///
    /// # Panics
    ///
    /// When the server does not answer or refuses to create it, saying how to
    /// point the tests at one.
    pub async fn create() -> Self {
        Self::create_with("").await
    }

    /// As [`create`](Self::create), with `options` for `CREATE DATABASE` (its
    /// locale, say: `TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'`).
    ///
    /// # Panics
    ///
    /// As [`create`](Self::create).
    pub async fn create_with(options: &str) -> Self {
        Self::try_create_with(options)
            .await
            .unwrap_or_else(|why| panic!("{why}"))
    }

    /// As [`create`](Self::create), or why there is none (no server answers, or
    /// it refused), for a caller that goes on without one (the bench).
    pub async fn try_create() -> Result<Self, String> {
        Self::try_create_with("").await
    }

    async fn try_create_with(options: &str) -> Result<Self, String> {
        let server_url = server_url();
        let name = fresh_name();
        let admin = connect(&server_url).await.map_err(|e| {
            format!(
                "this test needs a PostgreSQL server: none answers at {} ({e}); start one \
                 or set {DATABASE_URL_VARIABLE} (cargo xtask ci leaves these tests out when \
                 none answers, unless SEGMENT_SYNC_REQUIRE_POSTGRES=1)",
                server_url_shown(&server_url)
            )
        })?;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\" {options}"))
            .await
            .map_err(|e| format!("cannot create the test database {name}: {e:?}"))?;
        Ok(Self {
            url: with_database(&server_url, &name),
            name,
            server_url,
        })
    }

    /// The database's URL, with the server's credentials and parameters.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL with `parameters` (`sslmode=disable`, …) added to its query.
    pub fn url_with(&self, parameters: &str) -> String {
        let joint = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{joint}{parameters}", self.url)
    }

    /// The URL with `password` as the user's password (the server's user, or
    /// `postgres`), for tests of what is shown of a URL.
    pub fn url_with_password(&self, password: &str) -> String {
        let (user, _) = self.credentials_and_location();
        self.url_as(&user, Some(password))
    }

    /// The URL as another user, with a password or none.
    pub fn url_as(&self, user: &str, password: Option<&str>) -> String {
        let (_, location) = self.credentials_and_location();
        let scheme = self.url.split_once("://").map_or("postgres", |(s, _)| s);
        match password {
            Some(password) => format!("{scheme}://{user}:{password}@{location}"),
            None => format!("{scheme}://{user}@{location}"),
        }
    }

    /// The server's user (`postgres` when the URL names none), and the URL after
    /// its credentials.
    fn credentials_and_location(&self) -> (String, &str) {
        let rest = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, r)| r);
        match rest.split_once('@') {
            Some((credentials, location)) => {
                let user = credentials.split(':').next().unwrap_or("postgres");
                (user.to_owned(), location)
            }
            None => ("postgres".to_owned(), rest),
        }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A session on the database, for a test that reads or changes its tables
    /// behind the store's back.
    ///
    /// # Panics
    ///
    /// When it cannot connect.
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test database {}: {e}", self.name))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop may run inside the test's runtime, which cannot be blocked on: a
        // thread of its own, with a runtime of its own, drops the database.
        let server_url = self.server_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let admin = connect(&server_url).await.map_err(|e| e.to_string())?;
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await
                    .map_err(|e| format!("{e:?}"))
            })
        })
        .join();
        // Never panic here: it may run while a failed test unwinds.
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("the test database {} was not dropped: {e}", self.name),
            Err(_) => eprintln!("the test database {} was not dropped", self.name),
        }
    }
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        // Ends when the client is dropped, or the server closes the session.
        let _ = connection.await;
    });
    Ok(client)
}

/// A name no other test, in this process or another, has at the same time.
fn fresh_name() -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "segment_sync_test_{}_{}_{nanos}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `url` naming the database `name` instead of its own.
fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (location, query) = match rest.split_once('?') {
        Some((location, query)) => (location, Some(query)),
        None => (rest, None),
    };
    // The path starts at the first `/` after the credentials.
    let host_start = location.rfind('@').map_or(0, |at| at + 1);
    let server = match location[host_start..].find('/') {
        Some(slash) => &location[..host_start + slash],
        None => location,
    };
    let mut named = format!("{scheme}://{server}/{name}");
    if let Some(query) = query {
        named.push('?');
        named.push_str(query);
    }
    named
}

/// The server's URL without a password, for a message.
fn server_url_shown(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let location = rest.rsplit_once('@').map_or(rest, |(_, location)| location);
            format!("{scheme}://{location}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_replaces_the_servers_and_keeps_the_rest() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgresql://u:p@db/main?sslmode=disable", "t2"),
            "postgresql://u:p@db/t2?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u@db:6543", "t3"),
            "postgres://u@db:6543/t3"
        );
    }

    #[test]
    fn names_are_fresh_and_need_no_quoting() {
        let (a, b) = (fresh_name(), fresh_name());
        assert_ne!(a, b);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
    }

    #[test]
    fn the_url_can_name_another_user_and_a_password() {
        let database = TestDatabase {
            name: "t".to_owned(),
            url: "postgres://admin:pw@db:5432/t?sslmode=disable".to_owned(),
            server_url: String::new(),
        };
        assert_eq!(
            database.url_with_password("s3cret"),
            "postgres://admin:s3cret@db:5432/t?sslmode=disable"
        );
        assert_eq!(
            database.url_as("nobody", None),
            "postgres://nobody@db:5432/t?sslmode=disable"
        );
        assert_eq!(
            database.url_with("connect_timeout=3"),
            "postgres://admin:pw@db:5432/t?sslmode=disable&connect_timeout=3"
        );
        // Not a real database: nothing to drop.
        std::mem::forget(database);
    }

    #[test]
    fn the_server_is_shown_without_its_password() {
        assert_eq!(
            server_url_shown("postgres://u:secret@db:5432/x"),
            "postgres://db:5432/x"
        );
    }
}
