//! [`SyncStateStore`] on PostgreSQL, shared by every replica and run: what was
//! delivered (version, fingerprint, `userId`), claims between processes, the
//! high-water mark, dead letters and run history.
//!
//! A pool of connections (`deadpool-postgres` over `tokio-postgres`), TLS per
//! the URL's `sslmode` (see [`PostgresUrl`]). Every call is one statement — one
//! round trip once the connection has prepared it, and its own transaction — so a
//! webhook request, a `claim` and a `settle`, costs two. Pages of customers go
//! as arrays (`unnest`), never a statement per row. Claims expire by the
//! database's clock, which replicas on several hosts share. The schema is
//! created and migrated on first use under an advisory lock (see `schema`); one
//! run at a time holds the state through a session-level advisory lock (see
//! `runs`). A statement the server rolled back as a deadlock victim is run once
//! more.

mod customers;
mod failure;
mod letters;
mod privacy;
mod runs;
mod schema;
mod tls;
mod url;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{
    ClientWrapper, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime,
};
use segment_sync_domain::sync::{DeadLetter, RunCounts, RunRecord, RunStatus};
use segment_sync_ports::{
    CheckLine, Claimed, DeadLetterCursor, DeletionRecord, DeletionsSent, DeliveredRecord,
    DeliveredRow, Forgotten, RunLease, RunStart, SelfCheck, Settlement, StateError,
    StoredDeadLetter, Subject, SyncStateStore,
};
use time::OffsetDateTime;
use tokio::sync::watch;

pub use self::url::{PostgresUrl, PostgresUrlError, SslMode};

use self::failure::Failure;
use self::runs::{LeasePhase, Session};
use crate::state_values;

const HIGH_WATER_MARK_KEY: &str = "high_water_mark";
const RULES_FINGERPRINT_KEY: &str = "rules_fingerprint";

const READ_META: &str = "SELECT value FROM meta WHERE key = $1";
const WRITE_META: &str = "INSERT INTO meta (key, value) VALUES ($1, $2)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value";

/// Connections a store keeps at most (a run's lease takes one more, of its own).
const POOL_SIZE: usize = 16;

/// How long a call waits for a free connection before it fails.
const POOL_WAIT: Duration = Duration::from_secs(30);

/// How long the server may take to answer a new connection's start-up, beyond
/// the URL's `connect_timeout`.
const STARTUP_GRACE: Duration = Duration::from_secs(5);

/// Runs `$work` — a future over `$client`, a pooled connection — once more if
/// the server rolled it back as a deadlock victim, and translates its failure
/// into a [`StateError`] that says what was being done (`$doing`). Returns from
/// the enclosing function when no connection can be had.
macro_rules! on_a_connection {
    ($store:expr, $doing:expr, |$client:ident| $work:expr) => {{
        let doing: &'static str = $doing;
        let mut retried = false;
        loop {
            let pooled = $store.client(doing).await?;
            let $client: &ClientWrapper = &pooled;
            match $work.await {
                Err(failure) if failure.is_retryable() && !retried => {
                    tracing::debug!(doing, "the database rolled this statement back as a deadlock victim; running it again");
                    retried = true;
                }
                result => break result.map_err(|failure: Failure| failure.into_state_error(doing)),
            }
        }
    }};
}

/// The state store over one PostgreSQL database.
///
/// Cloning gives another handle on the same pool. Any number of stores, in one
/// process or on many hosts, may share one database; each sees the others'
/// commits, and claims and the run lease hold between all of them.
#[derive(Clone)]
pub struct PostgresStateStore {
    pool: Pool,
    url: Arc<PostgresUrl>,
    /// The phase of the last run lease this store gave out.
    lease: Arc<Mutex<Option<watch::Receiver<LeasePhase>>>>,
}

impl PostgresStateStore {
    /// Connects to the database at `url` (`postgres://` or `postgresql://`),
    /// creating the schema when missing and migrating an older one.
    ///
    /// Fails with [`StateError::Open`], naming the URL without its credentials,
    /// when the URL is invalid, the server cannot be reached or refuses the
    /// user, the database does not exist, TLS cannot be set up as `sslmode`
    /// asks, or the schema was written by a newer segment-sync.
    pub async fn connect(url: &str) -> Result<Self, StateError> {
        let url = PostgresUrl::parse(url).map_err(|error| StateError::Open {
            path: url::shown(url),
            reason: match error {
                PostgresUrlError::Invalid { reason, .. } => reason,
                other => other.to_string(),
            },
        })?;
        Self::connect_to(url).await
    }

    /// As [`connect`](Self::connect), with a URL parsed already.
    pub async fn connect_to(url: PostgresUrl) -> Result<Self, StateError> {
        let open_error = |reason: String| StateError::Open {
            path: url.to_string(),
            reason,
        };
        let tls = tls::connector(&url).map_err(open_error)?;
        let startup = url
            .config()
            .get_connect_timeout()
            .map_or(STARTUP_GRACE, |timeout| *timeout + STARTUP_GRACE);
        let manager = Manager::from_config(
            url.config().clone(),
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(startup))
            .build()
            .map_err(|e| open_error(format!("cannot set up the connection pool: {e}")))?;
        let mut client = pool
            .get()
            .await
            .map_err(|e| open_error(Failure::from(e).open_reason(&url)))?;
        schema::migrate(&mut client)
            .await
            .map_err(|f| open_error(f.open_reason(&url)))?;
        drop(client);
        Ok(Self {
            pool,
            url: Arc::new(url),
            lease: Arc::default(),
        })
    }

    /// The URL it connected to, shown without credentials.
    pub fn url(&self) -> &PostgresUrl {
        &self.url
    }

    /// Whether the database answers now: one trivial query on a pooled
    /// connection, for a readiness probe.
    pub async fn ping(&self) -> Result<(), StateError> {
        on_a_connection!(self, "pinging the state database", |client| ping(client))
    }

    async fn client(&self, doing: &'static str) -> Result<Object, StateError> {
        self.pool
            .get()
            .await
            .map_err(|e| Failure::from(e).into_state_error(doing))
    }

    async fn meta(
        &self,
        doing: &'static str,
        key: &'static str,
    ) -> Result<Option<String>, StateError> {
        on_a_connection!(self, doing, |client| read_meta(client, key))
    }

    async fn set_meta(
        &self,
        doing: &'static str,
        key: &'static str,
        value: &str,
    ) -> Result<(), StateError> {
        on_a_connection!(self, doing, |client| write_meta(client, key, value))
    }

    /// Waits until a lease this store gave out and that was dropped is
    /// unlocked, so that the next run finds it free.
    async fn last_lease_unlocked(&self) {
        let last = self
            .lease
            .lock()
            .map(|last| last.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone());
        if let Some(phase) = last {
            runs::unlocked(phase).await;
        }
    }

    fn remember_lease(&self, phase: watch::Receiver<LeasePhase>) {
        match self.lease.lock() {
            Ok(mut last) => *last = Some(phase),
            Err(poisoned) => *poisoned.into_inner() = Some(phase),
        }
    }
}

async fn read_meta(client: &ClientWrapper, key: &str) -> Result<Option<String>, Failure> {
    let statement = client.prepare_cached(READ_META).await?;
    let row = client.query_opt(&statement, &[&key]).await?;
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}

async fn write_meta(client: &ClientWrapper, key: &str, value: &str) -> Result<(), Failure> {
    let statement = client.prepare_cached(WRITE_META).await?;
    client.execute(&statement, &[&key, &value]).await?;
    Ok(())
}

async fn ping(client: &ClientWrapper) -> Result<(), Failure> {
    Ok(client.batch_execute("SELECT 1").await?)
}

impl fmt::Debug for PostgresStateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PostgresStateStore")
            .field("url", &self.url.without_credentials())
            .field("connections", &status.size)
            .field("max_connections", &status.max_size)
            .finish()
    }
}

#[async_trait]
impl SelfCheck for PostgresStateStore {
    /// One line: the database takes a write (rolled back at once); the detail
    /// names the server's version and whether the connection is encrypted.
    async fn self_check(&self) -> Vec<CheckLine> {
        let what = format!("state database {} writable", self.url);
        let doing = "checking the state is writable";
        let checked = async {
            let mut client = self.client(doing).await?;
            let written = async {
                let tx = client.transaction().await?;
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('writable_check', 'ok')
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    &[],
                )
                .await?;
                let row = tx
                    .query_one(
                        "SELECT current_setting('server_version'),
                                COALESCE((SELECT ssl FROM pg_stat_ssl
                                          WHERE pid = pg_backend_pid()), false)",
                        &[],
                    )
                    .await?;
                tx.rollback().await?;
                let version: String = row.try_get(0)?;
                let encrypted: bool = row.try_get(1)?;
                Ok::<_, Failure>((version, encrypted))
            };
            written.await.map_err(|f| f.into_state_error(doing))
        };
        vec![match checked.await {
            Ok((version, encrypted)) => CheckLine::pass(
                what,
                format!(
                    "PostgreSQL {version}, {}",
                    if encrypted {
                        "over TLS"
                    } else {
                        "not encrypted"
                    }
                ),
            ),
            Err(error) => CheckLine::fail(
                what,
                format!(
                    "{error}; check that the server is up and that the URL's user may \
                     write to its database"
                ),
            ),
        }]
    }
}

#[async_trait]
impl SyncStateStore for PostgresStateStore {
    async fn claim(
        &self,
        customer_ids: &[String],
        holder: &str,
        ttl: Duration,
    ) -> Result<Claimed, StateError> {
        if customer_ids.is_empty() {
            return Ok(Claimed::default());
        }
        on_a_connection!(self, "claiming customers", |client| customers::claim(
            client,
            customer_ids,
            holder,
            ttl
        ))
    }

    async fn settle<'a>(&self, settlement: Settlement<'a>) -> Result<(), StateError> {
        if customers::is_empty(&settlement) {
            return Ok(());
        }
        on_a_connection!(self, "recording deliveries", |client| customers::settle(
            client,
            &settlement
        ))
    }

    async fn delivered(
        &self,
        customer_ids: &[String],
    ) -> Result<HashMap<String, DeliveredRecord>, StateError> {
        if customer_ids.is_empty() {
            return Ok(HashMap::new());
        }
        on_a_connection!(self, "reading deliveries", |client| customers::delivered(
            client,
            customer_ids
        ))
    }

    async fn deliveries_after(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<DeliveredRow>, StateError> {
        on_a_connection!(self, "listing deliveries", |client| {
            customers::deliveries_after(client, after.as_deref(), limit)
        })
    }

    async fn high_water_mark(&self) -> Result<Option<OffsetDateTime>, StateError> {
        let doing = "reading the high-water mark";
        self.meta(doing, HIGH_WATER_MARK_KEY)
            .await?
            .map(|text| {
                state_values::parse_rfc3339(&text, "high-water mark")
                    .map_err(|reason| Failure::Invalid(reason).into_state_error(doing))
            })
            .transpose()
    }

    async fn set_high_water_mark(&self, at: OffsetDateTime) -> Result<(), StateError> {
        let doing = "moving the high-water mark";
        let text = state_values::rfc3339(at)
            .map_err(|reason| Failure::Invalid(reason).into_state_error(doing))?;
        self.set_meta(doing, HIGH_WATER_MARK_KEY, &text).await
    }

    async fn rules_fingerprint(&self) -> Result<Option<String>, StateError> {
        self.meta("reading the rules fingerprint", RULES_FINGERPRINT_KEY)
            .await
    }

    async fn set_rules_fingerprint(&self, fingerprint: String) -> Result<(), StateError> {
        self.set_meta(
            "recording the rules fingerprint",
            RULES_FINGERPRINT_KEY,
            &fingerprint,
        )
        .await
    }

    async fn add_dead_letters(&self, letters: &[DeadLetter]) -> Result<(), StateError> {
        if letters.is_empty() {
            return Ok(());
        }
        let settlement = Settlement {
            dead_letters: letters,
            ..Settlement::default()
        };
        on_a_connection!(self, "adding dead letters", |client| customers::settle(
            client,
            &settlement
        ))
    }

    async fn dead_letters_after(
        &self,
        after: Option<DeadLetterCursor>,
        limit: usize,
    ) -> Result<Vec<StoredDeadLetter>, StateError> {
        on_a_connection!(self, "listing dead letters", |client| letters::page(
            client, after, limit
        ))
    }

    async fn dead_letter_count(&self) -> Result<u64, StateError> {
        on_a_connection!(self, "counting dead letters", |client| letters::count(
            client
        ))
    }

    async fn purge_dead_letters(&self, before: OffsetDateTime) -> Result<u64, StateError> {
        let doing = "purging dead letters";
        let before = state_values::rfc3339(before)
            .map_err(|reason| Failure::Invalid(reason).into_state_error(doing))?;
        on_a_connection!(self, doing, |client| letters::purge(client, &before))
    }

    async fn remove_dead_letters(&self, customer_ids: &[String]) -> Result<(), StateError> {
        if customer_ids.is_empty() {
            return Ok(());
        }
        on_a_connection!(self, "removing dead letters", |client| letters::remove(
            client,
            customer_ids
        ))
    }

    async fn begin_run(&self, start: RunStart) -> Result<RunLease, StateError> {
        self.last_lease_unlocked().await;
        let doing = "taking the run lease";
        let client = self.client(doing).await?;
        let locked = runs::try_lock(&client)
            .await
            .map_err(|f| f.into_state_error(doing))?;
        if !locked {
            return Err(runs::holding(&client)
                .await
                .map_err(|f| f.into_state_error("reading the run that holds the state"))?);
        }
        // The lock belongs to this session: it leaves the pool with the lease.
        let client = Object::take(client);
        let begun = runs::begin(&client, &start).await;
        let (session, phase) = Session::held(client);
        self.remember_lease(phase);
        // A run that could not be recorded drops its session here, unlocking.
        let id = begun.map_err(|f| f.into_state_error("starting a run"))?;
        Ok(RunLease::new(id, session))
    }

    async fn finish_run(
        &self,
        id: i64,
        status: RunStatus,
        counts: RunCounts,
        error: Option<String>,
    ) -> Result<(), StateError> {
        on_a_connection!(self, "finishing a run", |client| runs::finish(
            client,
            id,
            status,
            counts,
            error.as_deref()
        ))
    }

    async fn runs(&self, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        on_a_connection!(self, "listing runs", |client| runs::list(client, limit))
    }

    async fn import_runs(&self, runs: &[RunRecord]) -> Result<(), StateError> {
        if runs.is_empty() {
            return Ok(());
        }
        on_a_connection!(self, "importing runs", |client| runs::import(client, runs))
    }

    async fn forget<'a>(
        &self,
        subjects: &[Subject],
        regulation_type: Option<&'a str>,
        at: OffsetDateTime,
    ) -> Result<Vec<Forgotten>, StateError> {
        let doing = "forgetting customers";
        let at = state_values::rfc3339(at)
            .map_err(|reason| Failure::Invalid(reason).into_state_error(doing))?;
        on_a_connection!(self, doing, |client| privacy::forget(
            client,
            subjects,
            regulation_type,
            &at
        ))
    }

    async fn queued_deletions(&self, limit: usize) -> Result<Vec<DeletionRecord>, StateError> {
        on_a_connection!(self, "reading queued deletions", |client| privacy::queued(
            client, limit
        ))
    }

    async fn deletions_sent<'a>(&self, sent: DeletionsSent<'a>) -> Result<(), StateError> {
        if sent.ids.is_empty() {
            return Ok(());
        }
        on_a_connection!(self, "recording deletions sent", |client| privacy::sent(
            client, &sent
        ))
    }

    async fn set_regulation_status(
        &self,
        regulation_id: &str,
        status: &str,
    ) -> Result<(), StateError> {
        on_a_connection!(self, "recording a regulation's status", |client| {
            privacy::set_status(client, regulation_id, status)
        })
    }

    async fn deletions_after(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DeletionRecord>, StateError> {
        on_a_connection!(self, "listing deletions", |client| privacy::after(
            client, after, limit
        ))
    }

    async fn regulated_since(&self, since: OffsetDateTime) -> Result<u64, StateError> {
        let doing = "counting regulated users";
        let since = state_values::rfc3339(since)
            .map_err(|reason| Failure::Invalid(reason).into_state_error(doing))?;
        on_a_connection!(self, doing, |client| privacy::regulated_since(
            client, &since
        ))
    }

    async fn import_deletions(&self, deletions: &[DeletionRecord]) -> Result<(), StateError> {
        if deletions.is_empty() {
            return Ok(());
        }
        on_a_connection!(self, "importing deletions", |client| privacy::import(
            client, deletions
        ))
    }
}
