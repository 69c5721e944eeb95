//! The composition root: adapters built from [`Settings`](crate::settings::Settings)
//! and handed out as ports. Adding an adapter touches this file in one place: the
//! `match` that builds the port it implements.

use std::sync::Arc;
use std::time::Duration;

use segment_sync_adapters::commercetools::HttpCustomerSource;
use segment_sync_adapters::file_source::FileCustomerSource;
use segment_sync_adapters::postgres_state::PostgresStateStore;
use segment_sync_adapters::segment::{HttpSegmentClient, SegmentConfig};
use segment_sync_adapters::segment_public_api::SegmentPublicApi;
use segment_sync_adapters::sqlite_state::SqliteStateStore;
use segment_sync_ports::{
    CustomerSource, RegulationClient, SegmentClient, SelfCheck, StateError, SyncStateStore,
};

use crate::output::Extent;
use crate::privacy::{Deletions, Regulator};
use crate::settings::{DeletionSettings, SourceSettings, StateLocation};
use crate::Failure;

/// How long `serve`'s Segment client waits to fill a batch before sending it: each
/// request waits for its own message, so a short interval keeps latency low while
/// concurrent requests still share batches.
pub const SERVE_FLUSH_INTERVAL: Duration = Duration::from_millis(5);

/// A port, and the same adapter as `check` sees it.
pub struct Wired<P: ?Sized> {
    /// The adapter as the port.
    pub port: Arc<P>,
    /// The adapter describing whether it works here.
    pub check: Arc<dyn SelfCheck>,
}

/// `Wired` over one adapter: the same value as the port and as its self-check.
macro_rules! wired {
    ($adapter:expr $(,)?) => {{
        let adapter = Arc::new($adapter);
        Wired {
            check: Arc::clone(&adapter) as Arc<dyn SelfCheck>,
            port: adapter,
        }
    }};
}

/// The customer source the settings choose.
pub fn source(settings: &SourceSettings) -> Result<Wired<dyn CustomerSource>, Failure> {
    source_and_extent(settings).map(|(wired, _)| wired)
}

/// The customer source the settings choose, and how far a walk of it has gone:
/// the bytes read of an export file against its size; unknown for the API (its
/// total comes from the run history) and for stdin.
pub fn source_and_extent(
    settings: &SourceSettings,
) -> Result<(Wired<dyn CustomerSource>, Extent), Failure> {
    Ok(match settings {
        SourceSettings::Api(config) => (
            wired!(HttpCustomerSource::new(config.as_ref().clone())
                .map_err(|e| Failure::Usage(e.to_string()))?,),
            Extent::Unknown,
        ),
        SourceSettings::File(path) => {
            let file = FileCustomerSource::from_path(path);
            let extent = match file.stored_size() {
                Some(total) => Extent::Bytes {
                    read: file.bytes_read(),
                    total,
                },
                None => Extent::Unknown,
            };
            (wired!(file), extent)
        }
        SourceSettings::Stdin => (wired!(FileCustomerSource::stdin()), Extent::Unknown),
    })
}

/// The state store at `location`: a SQLite file created when missing, or a
/// PostgreSQL database whose schema is created or migrated on first use.
pub async fn state(location: &StateLocation) -> Result<Wired<dyn SyncStateStore>, Failure> {
    let opened = |e: StateError| Failure::Usage(e.to_string());
    Ok(match location {
        StateLocation::Sqlite(path) => wired!(SqliteStateStore::open(path).map_err(opened)?),
        StateLocation::Postgres(url) => {
            wired!(PostgresStateStore::connect_to(url.as_ref().clone())
                .await
                .map_err(opened)?)
        }
    })
}

/// The state store at `location` for a command that only reads it: one that does
/// not exist yet is an error rather than a new, empty database.
pub async fn existing_state(
    location: &StateLocation,
) -> Result<Wired<dyn SyncStateStore>, Failure> {
    match location {
        StateLocation::Sqlite(path) if !path.exists() => Err(Failure::Usage(format!(
            "no state database at {}: run `segment-sync sync` first, or point --state or SEGMENT_SYNC_STATE at the right file",
            path.display()
        ))),
        _ => state(location).await,
    }
}

/// The Segment client for these settings.
pub fn segment(config: &SegmentConfig) -> Result<Wired<dyn SegmentClient>, Failure> {
    Ok(wired!(
        HttpSegmentClient::new(config.clone()).map_err(|e| Failure::Usage(e.to_string()))?,
    ))
}

/// The Public API client that creates regulations, when deletion is on (`None`
/// while `SEGMENT_DELETION` is off). No request is made.
pub fn regulations(
    deletion: Option<&DeletionSettings>,
) -> Result<Option<Wired<dyn RegulationClient>>, Failure> {
    let Some(deletion) = deletion else {
        return Ok(None);
    };
    Ok(Some(wired!(
        SegmentPublicApi::new(deletion.public_api()).map_err(|e| Failure::Usage(e.to_string()))?
    )))
}

/// Customer deletions over `state`: regulated in Segment when `SEGMENT_DELETION`
/// is on. Says once, at start-up, which it is.
pub fn deletions(
    state: Arc<dyn SyncStateStore>,
    deletion: Option<&DeletionSettings>,
) -> Result<Arc<Deletions>, Failure> {
    let regulator = regulations(deletion)?.map(|client| Regulator {
        client: client.port,
        kind: deletion.expect("a client only when deletion is on").kind,
    });
    match &regulator {
        Some(regulator) => tracing::info!(
            regulation_type = %regulator.kind,
            "SEGMENT_DELETION is on: a customer deleted in commercetools is erased here and regulated in Segment"
        ),
        None => tracing::info!(
            "SEGMENT_DELETION is off: a customer deleted in commercetools keeps its Segment profile"
        ),
    }
    Ok(Arc::new(Deletions::new(state, regulator)))
}
