//! The recording side of a run: outcomes awaited in the order messages were sent,
//! counted, and recorded by the service in chunks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use segment_sync_ports::StateError;
use tokio::sync::mpsc;

use super::counts::is_fatal;
use super::LiveCounts;
use crate::service::{InFlight, Settled, SyncService};

/// Outcomes are recorded in transactions of about this many.
const RECORD_CHUNK: usize = 512;

/// Awaits outcomes in order and records them, a chunk whenever it is full or no
/// further outcome is ready. A refused write key raises `fatal`.
pub(super) async fn record_outcomes(
    mut sent_rx: mpsc::Receiver<InFlight>,
    service: SyncService,
    holder: String,
    live: Arc<LiveCounts>,
    fatal: Arc<AtomicBool>,
) -> Result<(), StateError> {
    let mut settled: Vec<Settled> = Vec::with_capacity(RECORD_CHUNK);
    loop {
        let next = match sent_rx.try_recv() {
            Ok(in_flight) => Some(in_flight),
            Err(mpsc::error::TryRecvError::Empty) => {
                write(&service, &holder, &mut settled).await?;
                sent_rx.recv().await
            }
            Err(mpsc::error::TryRecvError::Disconnected) => None,
        };
        let Some(in_flight) = next else { break };
        let one = in_flight.settle().await;
        live.outcome(one.customer_id(), one.outcome());
        if is_fatal(one.outcome()) {
            // The whole run is void; a rerun with the right key sends it.
            fatal.store(true, Ordering::SeqCst);
        }
        settled.push(one);
        if settled.len() >= RECORD_CHUNK {
            write(&service, &holder, &mut settled).await?;
        }
    }
    write(&service, &holder, &mut settled).await
}

async fn write(
    service: &SyncService,
    holder: &str,
    settled: &mut Vec<Settled>,
) -> Result<(), StateError> {
    if settled.is_empty() {
        return Ok(());
    }
    service.record(settled, holder).await?;
    settled.clear();
    Ok(())
}
