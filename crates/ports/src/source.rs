use std::fmt;

use async_trait::async_trait;
use segment_sync_domain::Customer;
use time::OffsetDateTime;

/// Which customers to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomerQuery {
    /// Every customer.
    All,
    /// Customers whose `lastModifiedAt` is at or after this instant.
    ChangedSince(OffsetDateTime),
}

impl fmt::Display for CustomerQuery {
    /// `all`, or `changed since 2024-05-01T10:00:00Z`, as logs show it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::ChangedSince(since) => {
                let at = since
                    .to_offset(time::UtcOffset::UTC)
                    .format(&time::format_description::well_known::Rfc3339)
                    .map_err(|_| fmt::Error)?;
                write!(f, "changed since {at}")
            }
        }
    }
}

/// What a source can do, so that the application decides from the source itself
/// rather than from how it was configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceCapabilities {
    /// It is the shop's live data: an incremental run asks it for the changes since
    /// the high-water mark, and a complete walk may move that mark. An export is a
    /// snapshot that may be older than the last run: read whole, it never moves it.
    pub tracks_changes: bool,
    /// [`CustomerSource::customer_by_id`] answers, as the webhook needs.
    pub by_id: bool,
}

/// One record as the source read it: a customer, or why it could not be read.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceRecord {
    /// A customer.
    Customer(Box<Customer>),
    /// A record that is not a valid customer; the rest of the source goes on.
    Malformed {
        /// Where it was, naming the input when there are several:
        /// `customers.ndjson line 12`, `page 2 index 4`. A record without an id
        /// is keyed by it.
        position: String,
        /// The customer's id, when the record has a readable one.
        customer_id: Option<String>,
        /// What is wrong with it.
        reason: String,
    },
}

/// A page of records, in source order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    /// The records.
    pub records: Vec<SourceRecord>,
}

/// Why a source could not be read. Fatal errors end a run with exit code 3.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The client credentials were refused.
    #[error("commercetools credentials rejected")]
    CredentialsRejected,
    /// The API client lacks a scope.
    #[error("commercetools API client lacks the scope {scope}")]
    MissingScope {
        /// The scope needed, e.g. `view_customers:my-project`.
        scope: String,
    },
    /// Worth trying again later: network errors and retryable statuses after the
    /// attempts ran out.
    #[error("commercetools unavailable: {0}")]
    Unavailable(String),
    /// An answer that makes no sense (unexpected status, unreadable body).
    #[error("unexpected answer from commercetools: {0}")]
    Protocol(String),
    /// A file or stream could not be read.
    #[error("cannot read {path}: {reason}")]
    Io {
        /// What was being read.
        path: String,
        /// The system's reason.
        reason: String,
    },
}

impl SourceError {
    /// True for errors that no retry fixes: credentials and scope.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::CredentialsRejected | Self::MissingScope { .. })
    }
}

/// A walk over a source's records, one page at a time.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait CustomerPages: Send {
    /// The next page, or `None` once the walk is over.
    async fn next_page(&mut self) -> Result<Option<Page>, SourceError>;
}

/// Where customers come from: the commercetools API or an export.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait CustomerSource: Send + Sync {
    /// What this source can do.
    fn capabilities(&self) -> SourceCapabilities;

    /// Starts a walk over the customers the query selects.
    async fn customers(&self, query: CustomerQuery) -> Result<Box<dyn CustomerPages>, SourceError>;

    /// One customer by id; `None` when it does not exist.
    async fn customer_by_id(&self, id: &str) -> Result<Option<Customer>, SourceError>;
}
