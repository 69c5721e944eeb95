//! Forgetting customers: erased from the state at once and, with
//! `SEGMENT_DELETION` on, their `userId`s regulated in Segment through the Public
//! API from a queue kept in the state, so that nothing is lost between the two.
//!
//! [`Deletions`] is the one place that decides it: the webhook's
//! `CustomerDeleted`, `segment-sync forget` and a `sync --full` that finds
//! customers gone all go through it.

use std::sync::Arc;
use std::time::Duration;

use segment_sync_ports::{
    DeletionRecord, DeletionsSent, Forgotten, RegulationClient, RegulationError, RegulationType,
    StateError, Subject, SyncStateStore, MAX_SUBJECTS_PER_REGULATION,
    MONTHLY_REGULATED_USERS_LIMIT,
};
use time::OffsetDateTime;
use tokio::sync::{watch, Notify};

/// How long the queue must stay quiet before queued deletions are sent: a burst
/// becomes one request of up to 5,000 ids, sent a moment after it ends.
pub const GATHER: Duration = Duration::from_secs(2);
/// The longest a queued deletion waits for a burst to end.
pub const MAX_GATHER: Duration = Duration::from_secs(20);
/// How long the regulator waits before trying again when Segment was unavailable.
const RETRY_AFTER_UNAVAILABLE: Duration = Duration::from_secs(30);
/// The status recorded for a regulation Segment accepted, until `deletions
/// --refresh` reads the real one.
pub const REQUESTED: &str = "REQUESTED";

/// Segment's regulations, and the type a deletion creates.
#[derive(Clone)]
pub struct Regulator {
    /// The Public API.
    pub client: Arc<dyn RegulationClient>,
    /// What `SEGMENT_DELETION` chose.
    pub kind: RegulationType,
}

/// Erases customers from the state and regulates them in Segment.
pub struct Deletions {
    state: Arc<dyn SyncStateStore>,
    regulator: Option<Regulator>,
    queued: Notify,
}

/// What one [`Deletions::send_queued`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Regulations Segment accepted, by id.
    pub regulations: Vec<String>,
    /// `userId`s in them.
    pub users: u64,
    /// `userId`s in requests Segment refused as wrong (kept with the reason).
    pub refused: u64,
    /// `userId`s left queued because this month's allowance is used up.
    pub over_limit: u64,
}

/// Why queued deletions could not be sent; they stay queued.
#[derive(Debug, thiserror::Error)]
pub enum DeletionError {
    /// The state failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// Segment refused the token, or could not be reached after retries.
    #[error(transparent)]
    Regulation(#[from] RegulationError),
}

impl Deletions {
    /// Forgets in `state`; regulates in Segment when `regulator` is given.
    pub fn new(state: Arc<dyn SyncStateStore>, regulator: Option<Regulator>) -> Self {
        Self {
            state,
            regulator,
            queued: Notify::new(),
        }
    }

    /// Whether deletions reach Segment (`SEGMENT_DELETION` is not `off`).
    pub fn regulates(&self) -> bool {
        self.regulator.is_some()
    }

    /// Erases each subject from the state and, when deletions reach Segment,
    /// queues its `userId`s there durably (in the same transaction). One answer
    /// per subject.
    pub async fn forget(&self, subjects: &[Subject]) -> Result<Vec<Forgotten>, StateError> {
        let kind = self.regulator.as_ref().map(|r| r.kind.as_api_str());
        let answers = self
            .state
            .forget(subjects, kind, OffsetDateTime::now_utc())
            .await?;
        if answers.iter().any(|answer| answer.queued > 0) {
            self.queued.notify_one();
        }
        Ok(answers)
    }

    /// Sends every queued deletion to Segment, up to 5,000 `userId`s a request,
    /// within this calendar month's allowance; a request Segment refuses as wrong
    /// is recorded with its reason and not tried again. Stops at the first
    /// unavailable Public API or refused token, leaving the rest queued.
    pub async fn send_queued(&self) -> Result<Sent, DeletionError> {
        let mut sent = Sent::default();
        let Some(regulator) = &self.regulator else {
            return Ok(sent);
        };
        loop {
            let now = OffsetDateTime::now_utc();
            let used = self.state.regulated_since(month_start(now)).await?;
            let room = MONTHLY_REGULATED_USERS_LIMIT.saturating_sub(used);
            let limit = usize::try_from(room)
                .unwrap_or(usize::MAX)
                .min(MAX_SUBJECTS_PER_REGULATION);
            let queued = self.state.queued_deletions(limit.max(1)).await?;
            let Some(first) = queued.first() else {
                return Ok(sent);
            };
            if room == 0 {
                sent.over_limit = self.count_queued().await?;
                tracing::warn!(
                    queued = sent.over_limit,
                    limit = MONTHLY_REGULATED_USERS_LIMIT,
                    "Segment's monthly allowance of regulated users is used up; the deletions stay queued until next month"
                );
                return Ok(sent);
            }
            // One type per request; a queue from before a change of
            // SEGMENT_DELETION is sent with the type it was queued with.
            let kind =
                RegulationType::from_api_str(&first.regulation_type).unwrap_or(regulator.kind);
            let batch: Vec<&DeletionRecord> = queued
                .iter()
                .filter(|d| d.regulation_type == first.regulation_type)
                .collect();
            let ids: Vec<i64> = batch.iter().map(|d| d.id).collect();
            let subjects: Vec<String> = batch.iter().map(|d| d.subject.clone()).collect();
            let (regulation_id, status) = match regulator.client.regulate(kind, &subjects).await {
                Ok(id) => (Some(id), REQUESTED.to_owned()),
                Err(RegulationError::Refused { status, message }) => {
                    (None, format!("refused (HTTP {status}): {message}"))
                }
                Err(error) => return Err(error.into()),
            };
            let refused = regulation_id.is_none();
            self.state
                .deletions_sent(DeletionsSent {
                    ids: &ids,
                    regulation_id: regulation_id.as_deref(),
                    status: &status,
                    at: OffsetDateTime::now_utc(),
                })
                .await?;
            match regulation_id {
                Some(id) => {
                    tracing::info!(regulation_id = %id, users = ids.len(), regulation_type = %kind, "Segment accepted a regulation");
                    sent.users += ids.len() as u64;
                    sent.regulations.push(id);
                }
                None => {
                    tracing::error!(users = ids.len(), %status, "Segment refused a regulation request");
                    sent.refused += ids.len() as u64;
                }
            }
            // A refusal may come of the setup (a wrong URL path) rather than of
            // these users: the rest of the queue waits for the next try.
            if refused {
                return Ok(sent);
            }
        }
    }

    async fn count_queued(&self) -> Result<u64, StateError> {
        Ok(self.state.queued_deletions(usize::MAX).await?.len() as u64)
    }

    /// Sends queued deletions in the background until `stop` turns true, then
    /// once more: once the queue was quiet for [`GATHER`] (so that a burst goes
    /// in one request; at most [`MAX_GATHER`] after the first), and at start for
    /// what an earlier process left queued. A refused
    /// token stops it, loudly; an unavailable Public API is tried again later.
    pub async fn regulate_in_background(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        if !self.regulates() {
            return;
        }
        let mut pending = true;
        'running: loop {
            if !pending {
                tokio::select! {
                    () = self.queued.notified() => {}
                    _ = stop.wait_for(|stopped| *stopped) => break,
                }
            }
            let give_up = tokio::time::Instant::now() + MAX_GATHER;
            loop {
                tokio::select! {
                    () = self.queued.notified() => {}
                    () = tokio::time::sleep(GATHER) => break,
                    () = tokio::time::sleep_until(give_up) => break,
                    _ = stop.wait_for(|stopped| *stopped) => break 'running,
                }
            }
            pending = false;
            match self.send_queued().await {
                Ok(sent) if sent.over_limit > 0 => {
                    // Nothing more goes this month: try again when the next begins.
                    let now = OffsetDateTime::now_utc();
                    let wait = (next_month_start(now) - now).unsigned_abs();
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        _ = stop.wait_for(|stopped| *stopped) => break 'running,
                    }
                    pending = true;
                }
                Ok(_) => {}
                Err(DeletionError::Regulation(error @ RegulationError::Unauthorized { .. })) => {
                    tracing::error!(%error, "deletions stay queued until segment-sync runs with a token Segment accepts");
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "queued deletions not sent; trying again later");
                    tokio::select! {
                        () = tokio::time::sleep(RETRY_AFTER_UNAVAILABLE) => {}
                        _ = stop.wait_for(|stopped| *stopped) => break 'running,
                    }
                    pending = true;
                }
            }
        }
        if let Err(error) = self.send_queued().await {
            tracing::warn!(%error, "queued deletions not sent at shutdown; the next start sends them");
        }
    }
}

/// What a sync does for deletions once its walk is over: the customers it found
/// `gone` are erased and regulated (with `SEGMENT_DELETION` on; else only
/// reported), and what is queued is sent.
pub async fn after_sync(
    deletions: &Deletions,
    gone: Option<&[String]>,
) -> Result<(), DeletionError> {
    let gone = gone.unwrap_or_default();
    if !gone.is_empty() && deletions.regulates() {
        for ids in gone.chunks(500) {
            let subjects: Vec<Subject> = ids.iter().cloned().map(Subject::CustomerId).collect();
            deletions.forget(&subjects).await?;
        }
        tracing::info!(
            gone = gone.len(),
            "customers gone from commercetools: erased here, their deletion in Segment queued"
        );
    } else if !gone.is_empty() {
        tracing::warn!(gone = gone.len(), "customers in the state no longer exist in commercetools; SEGMENT_DELETION is off, so their Segment profiles are left as they are");
    }
    match deletions.send_queued().await {
        Ok(_) => Ok(()),
        Err(error @ DeletionError::Regulation(RegulationError::Unauthorized { .. })) => Err(error),
        Err(error) => {
            tracing::warn!(%error, "queued deletions not sent; the next run sends them");
            Ok(())
        }
    }
}

/// The first instant of `now`'s calendar month, UTC: Segment counts regulated
/// users per calendar month.
pub fn month_start(now: OffsetDateTime) -> OffsetDateTime {
    let now = now.to_offset(time::UtcOffset::UTC);
    now.replace_day(1)
        .expect("every month has a first day")
        .replace_time(time::Time::MIDNIGHT)
}

/// The first instant of the calendar month after `now`'s, UTC.
pub fn next_month_start(now: OffsetDateTime) -> OffsetDateTime {
    let start = month_start(now);
    let (year, month) = match start.month() {
        time::Month::December => (start.year() + 1, time::Month::January),
        month => (start.year(), month.next()),
    };
    start
        .replace_year(year)
        .and_then(|at| at.replace_month(month))
        .expect("the first of a month exists in every year")
}

/// Whom a `forget` argument names: an email (it has an `@`) is a Segment
/// `userId`; anything else a commercetools customer id.
pub fn subject(argument: &str) -> Subject {
    let argument = argument.trim();
    if argument.contains('@') {
        Subject::UserId(argument.to_owned())
    } else {
        Subject::CustomerId(argument.to_owned())
    }
}

mod commands;

pub use self::commands::{deletions, forget};

#[cfg(test)]
mod tests;
