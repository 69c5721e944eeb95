//! The reading side of a run: pages read ahead on their own task, decided by the
//! service, and what must be sent handed to Segment. Customers another process is
//! sending right now are kept aside and tried again once the walk is over.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use segment_sync_domain::Identify;
use segment_sync_ports::{CustomerPages, CustomerQuery, CustomerSource, Page, SourceError};
use tokio::sync::{mpsc, watch};

use super::{Abort, LiveCounts};
use crate::service::{Decision, InFlight, SyncService};

/// Pages read ahead of the one being processed, besides the one the reader holds.
const PAGES_AHEAD: usize = 1;

/// How long a run waits, in all, for customers another process holds.
const BUSY_PATIENCE: Duration = Duration::from_secs(30);

/// What the reading side shares with the run.
pub(super) struct Feed<'a> {
    pub(super) service: &'a SyncService,
    pub(super) holder: &'a str,
    pub(super) live: &'a LiveCounts,
    pub(super) fatal: &'a AtomicBool,
    pub(super) sent_tx: &'a mpsc::Sender<InFlight>,
}

impl Feed<'_> {
    /// Counts the decisions and sends what must be sent; returns the customers
    /// another process holds. An interrupt gives up only the wait for room in
    /// Segment's queue: once a message is queued its outcome is recorded.
    pub(super) async fn send_decided(
        &self,
        decisions: Vec<Decision>,
        interrupt: &mut watch::Receiver<bool>,
    ) -> Result<Vec<Identify>, Abort> {
        let mut messages = Vec::new();
        let mut busy = Vec::new();
        for decision in decisions {
            match decision {
                Decision::Send(message) => messages.push(message),
                Decision::Unchanged { .. } | Decision::Stale { .. } => self.live.unchanged(),
                Decision::Busy(message) => busy.push(message),
                Decision::Skipped {
                    customer_id,
                    reason,
                } => self.live.skipped(&customer_id, &reason),
                Decision::Rejected {
                    customer_id,
                    reason,
                    ..
                } => {
                    self.live.rejected(&customer_id, &reason);
                }
                Decision::Refused { customer_id } => {
                    self.live
                        .rejected(&customer_id, &"Segment refused this content before");
                }
            }
        }
        let mut messages = messages.into_iter();
        while let Some(message) = messages.next() {
            let submitted = tokio::select! {
                submitted = self.service.submit(message.clone()) => submitted.map_err(Abort::from),
                () = interrupted(interrupt) => Err(Abort::Interrupted),
            };
            let in_flight = match submitted {
                Ok(in_flight) => in_flight,
                Err(abort) => {
                    // Never handed over: released, and read again by the next run.
                    let mut left: Vec<Identify> = vec![message];
                    left.extend(messages);
                    left.extend(busy);
                    self.live.unread(left.len() as u64);
                    self.service.release(&left, self.holder).await?;
                    return Err(abort);
                }
            };
            if self.sent_tx.send(in_flight).await.is_err() {
                // The recorder stopped on a state error; it reports it.
                self.live.unread(messages.len() as u64);
                return Ok(Vec::new());
            }
        }
        Ok(busy)
    }
}

pub(super) async fn read_and_send(
    source: &dyn CustomerSource,
    feed: &Feed<'_>,
    query: CustomerQuery,
    resend_unchanged: bool,
    seen: &mut Option<super::gone::Seen>,
    interrupt: &mut watch::Receiver<bool>,
) -> Result<(), Abort> {
    let mut pages = read_ahead(source.customers(query).await?);
    let mut busy = Vec::new();
    loop {
        if feed.fatal.load(Ordering::SeqCst) {
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
        feed.live.read(page.records.len() as u64);
        if let Some(seen) = seen {
            seen.note(&page.records);
        }
        let decisions = feed
            .service
            .decide(page.records, resend_unchanged, feed.holder)
            .await?;
        busy.extend(feed.send_decided(decisions, interrupt).await?);
    }
    send_busy(feed, busy, interrupt).await
}

/// Tries the customers other processes held again, waiting longer between rounds,
/// for at most [`BUSY_PATIENCE`]; those still held count as failed (a dead letter
/// each) so that the high-water mark stays and the next run reads them.
pub(super) async fn send_busy(
    feed: &Feed<'_>,
    mut busy: Vec<Identify>,
    interrupt: &mut watch::Receiver<bool>,
) -> Result<(), Abort> {
    let give_up = tokio::time::Instant::now() + BUSY_PATIENCE;
    let mut wait = Duration::from_millis(100);
    while !busy.is_empty() && tokio::time::Instant::now() < give_up {
        tracing::info!(
            customers = busy.len(),
            "customers another process is sending; trying them again"
        );
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = interrupted(interrupt) => return Err(Abort::Interrupted),
        }
        wait = (wait * 2).min(Duration::from_secs(5));
        let decisions = feed.service.decide_replay(busy, feed.holder).await?;
        busy = feed.send_decided(decisions, interrupt).await?;
    }
    if !busy.is_empty() {
        for message in &busy {
            feed.live.busy(message.customer_id());
        }
        feed.service.give_up_busy(&busy).await?;
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
pub(super) async fn interrupted(interrupt: &mut watch::Receiver<bool>) {
    if interrupt.wait_for(|up| *up).await.is_err() {
        std::future::pending::<()>().await;
    }
}
