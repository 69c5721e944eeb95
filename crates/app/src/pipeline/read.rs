//! The reading side of a run: pages read ahead on their own task, decided by the
//! service, and what must be sent handed to Segment.

use std::sync::atomic::{AtomicBool, Ordering};

use segment_sync_ports::{CustomerPages, CustomerQuery, CustomerSource, Page, SourceError};
use tokio::sync::{mpsc, watch};

use super::{Abort, LiveCounts};
use crate::service::{Decision, InFlight, SyncService};

/// Pages read ahead of the one being processed, besides the one the reader holds.
const PAGES_AHEAD: usize = 1;

#[allow(clippy::too_many_arguments)]
pub(super) async fn read_and_send(
    source: &dyn CustomerSource,
    service: &SyncService,
    query: CustomerQuery,
    resend_unchanged: bool,
    live: &LiveCounts,
    fatal: &AtomicBool,
    sent_tx: &mpsc::Sender<InFlight>,
    interrupt: &mut watch::Receiver<bool>,
) -> Result<(), Abort> {
    let mut pages = read_ahead(source.customers(query).await?);
    loop {
        if fatal.load(Ordering::SeqCst) {
            return Err(Abort::InvalidWriteKey);
        }
        let page = tokio::select! {
            page = pages.recv() => match page {
                Some(page) => page?,
                None => None,
            },
            () = interrupted(interrupt) => return Err(Abort::Interrupted),
        };
        let Some(page) = page else { break };
        live.read(page.records.len() as u64);

        let mut messages = Vec::new();
        for decision in service.decide(page.records, resend_unchanged).await? {
            match decision {
                Decision::Send(message) => messages.push(message),
                Decision::Unchanged { .. } => live.unchanged(),
                Decision::Skipped { .. } => live.skipped(),
                Decision::Rejected { .. } => live.rejected(1),
            }
        }
        let mut messages = messages.into_iter();
        while let Some(message) = messages.next() {
            // Only the wait for room in Segment's queue is given up on an
            // interrupt: once a message is queued its outcome is recorded.
            let submitted = tokio::select! {
                submitted = service.submit(message) => submitted.map_err(Abort::from),
                () = interrupted(interrupt) => Err(Abort::Interrupted),
            };
            let in_flight = match submitted {
                Ok(in_flight) => in_flight,
                Err(abort) => {
                    // Never handed over: read again by the next run.
                    live.unread(1 + messages.len() as u64);
                    return Err(abort);
                }
            };
            if sent_tx.send(in_flight).await.is_err() {
                // The recorder stopped on a state error; it reports it.
                live.unread(messages.len() as u64);
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Reads pages on a task of their own, so that parsing the next page overlaps
/// with transforming and sending this one. The walk stops after an error, at the
/// end, or when the receiver is dropped.
fn read_ahead(
    mut pages: Box<dyn CustomerPages>,
) -> mpsc::Receiver<Result<Option<Page>, SourceError>> {
    let (page_tx, page_rx) = mpsc::channel(PAGES_AHEAD);
    tokio::spawn(async move {
        loop {
            let page = pages.next_page().await;
            let last = !matches!(page, Ok(Some(_)));
            if page_tx.send(page).await.is_err() || last {
                break;
            }
        }
    });
    page_rx
}

/// Resolves once the interrupt flag is up; never when its sender is gone.
async fn interrupted(interrupt: &mut watch::Receiver<bool>) {
    if interrupt.wait_for(|up| *up).await.is_err() {
        std::future::pending::<()>().await;
    }
}
