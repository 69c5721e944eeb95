//! The per-customer rule, in one place for every way in.
//!
//! A record becomes an identify message, or is skipped or rejected. Before
//! anything is sent the customer is claimed in the state, so that no two
//! processes (webhook replicas, a sync) send one customer at the same time, and
//! its last delivery is read: a message older (by version) than what Segment has
//! is stale and never sent; one whose content Segment already has is unchanged
//! (its newer version is remembered, and any older failed attempt at that
//! customer is dropped, so a replay can never overwrite it); the rest is sent,
//! and its outcome recorded: a delivery (never replacing a newer one, and
//! clearing the customer's older dead letters) or a dead letter. The claim ends
//! with the record.
//!
//! `sync`, `dead-letters replay` and the webhook all go through [`SyncService`]; it
//! is the only caller of the state and Segment ports for this rule. The sync
//! engine only streams pages through it and counts, and the webhook handler only
//! decodes a body, calls [`SyncService::deliver`] and maps the result to a status.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use segment_sync_domain::identify::{IdentifyRules, NotSent, SkipReason};
use segment_sync_domain::sync::{DeadLetter, DeadLetterKind};
use segment_sync_domain::{Customer, DeliveryError, Fingerprint, Identify, Outcome};
use segment_sync_ports::{
    DeadLetterCursor, Delivered, DeliveredRecord, PendingOutcome, SegmentClient, SegmentError,
    Settlement, SourceRecord, StateError, StoredDeadLetter, SyncStateStore,
};
use time::OffsetDateTime;

/// How long a webhook request's claim on a customer lasts if its process dies
/// before releasing it: about its request timeout.
const DELIVER_CLAIM: Duration = Duration::from_secs(15);
/// How long a run's claims last if it dies before releasing them: long enough for
/// a message to wait out Segment's retries.
const RUN_CLAIM: Duration = Duration::from_secs(15 * 60);
/// How long one customer handled on its own waits for another process to finish
/// with it before giving up (the sender then delivers it again).
const BUSY_PATIENCE: Duration = Duration::from_secs(5);

/// What becomes of one record before the state is asked anything.
#[derive(Debug)]
pub enum Classified {
    /// A message to send, unless Segment already has it.
    Message(Identify),
    /// Not sent on purpose.
    Skipped {
        /// The customer's id.
        customer_id: String,
        /// Why.
        reason: SkipReason,
    },
    /// Cannot be sent as it is.
    Rejected {
        /// Why, as the contract names it.
        error: DeliveryError,
        /// Its dead letter, whose reason may say more (where a record was malformed).
        letter: DeadLetter,
    },
}

/// Transforms one record under `rules`: a message, a skip, or a dead letter. Pure:
/// the dry run uses it without any state.
pub fn classify(record: SourceRecord, rules: &IdentifyRules) -> Classified {
    match record {
        SourceRecord::Customer(customer) => match rules.identify(&customer) {
            Ok(message) => Classified::Message(message),
            Err(NotSent::Skipped(reason)) => Classified::Skipped {
                customer_id: customer.id,
                reason,
            },
            Err(NotSent::Rejected(error)) => Classified::Rejected {
                letter: DeadLetter {
                    version: Some(customer.version),
                    ..dead_letter(&customer.id, DeadLetterKind::Rejected, &error, None)
                },
                error,
            },
        },
        SourceRecord::Malformed {
            position,
            customer_id,
            reason,
        } => Classified::Rejected {
            letter: DeadLetter {
                reason: format!("Invalid payload at {position}: {reason}"),
                ..dead_letter(
                    customer_id.as_deref().unwrap_or(&position),
                    DeadLetterKind::Rejected,
                    &DeliveryError::InvalidPayload,
                    None,
                )
            },
            error: DeliveryError::InvalidPayload,
        },
    }
}

/// What the rule decided for one record before anything was sent.
#[derive(Debug)]
pub enum Decision {
    /// To be sent: Segment does not have this content. The customer is claimed
    /// until its outcome is recorded.
    Send(Identify),
    /// Segment already has this exact content.
    Unchanged {
        /// The customer's id.
        customer_id: String,
    },
    /// Older than the version Segment has: never sent.
    Stale {
        /// The customer's id.
        customer_id: String,
    },
    /// Another process is sending this customer right now.
    Busy(Identify),
    /// Segment refused this exact content before; it is in the dead letters and
    /// is not sent again.
    Refused {
        /// The customer's id.
        customer_id: String,
    },
    /// Not sent on purpose.
    Skipped {
        /// The customer's id.
        customer_id: String,
        /// Why.
        reason: SkipReason,
    },
    /// Can never be sent as it is; its dead letter is recorded.
    Rejected {
        /// The customer's id, or the record's position when it has none.
        customer_id: String,
        /// Why, as the contract names it.
        error: DeliveryError,
        /// Why, in full, as its dead letter says it (a malformed record's
        /// position and fault).
        reason: String,
    },
}

/// A message handed to Segment, with what recording its outcome needs. The message
/// itself is shared with the client, not copied.
pub struct InFlight {
    sent: Sent,
    outcome: PendingOutcome,
}

/// What is remembered of a message sent, to record its outcome.
#[derive(Debug, Clone)]
struct Sent {
    customer_id: String,
    version: i64,
    user_id: String,
    fingerprint: Fingerprint,
    payload: Arc<str>,
}

impl InFlight {
    /// Waits for Segment's answer about this message.
    pub async fn settle(self) -> Settled {
        Settled {
            outcome: self.outcome.await,
            sent: self.sent,
        }
    }
}

/// A message whose outcome is known, ready to be recorded.
#[derive(Debug, Clone)]
pub struct Settled {
    sent: Sent,
    outcome: Outcome,
}

impl Settled {
    /// The customer it was about.
    pub fn customer_id(&self) -> &str {
        &self.sent.customer_id
    }

    /// What Segment did with it.
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    fn dead_letter(&self, kind: DeadLetterKind, error: &DeliveryError) -> DeadLetter {
        DeadLetter {
            fingerprint: Some(self.sent.fingerprint.to_hex()),
            version: Some(self.sent.version),
            ..dead_letter(
                &self.sent.customer_id,
                kind,
                error,
                Some(self.sent.payload.to_string()),
            )
        }
    }
}

/// A page of failed dead letters, ready to be decided again.
#[derive(Debug, Default)]
pub struct Replay {
    /// Their messages, oldest first.
    pub messages: Vec<Identify>,
    /// Letters whose payload can no longer be sent; each is now a rejected dead letter.
    pub unusable: u64,
    /// How many dead letters the page held (of any kind).
    pub read: usize,
    /// Where the next page starts; `None` once the list is read.
    pub next: Option<DeadLetterCursor>,
}

/// A customer handled on its own, as the webhook asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Segment acknowledged it and the delivery is recorded.
    Delivered {
        /// The message's id, for the log.
        message_id: String,
    },
    /// Segment already has this content.
    Unchanged,
    /// Segment has a newer version of this customer: nothing sent.
    Stale,
    /// Not sent on purpose.
    Skipped(SkipReason),
    /// Can never be delivered as it is; it is in the dead letters.
    Rejected(DeliveryError),
    /// Segment refused this exact content before (it is in the dead letters); not
    /// sent again.
    Refused,
    /// Not delivered now; it is in the dead letters, and the sender should try again.
    Failed(DeliveryError),
}

/// Why a customer could not be handled: the answer is "try again later".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The Segment client refused the message.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// Another process kept the customer for longer than this one would wait.
    #[error("another process is delivering this customer")]
    Busy,
    /// Segment did not answer before the deadline; the message may still be
    /// delivered, and a redelivery records it (Segment drops the repeated messageId).
    #[error("Segment did not answer in time")]
    TimedOut,
}

/// Who claims customers: this process, and a number per run or request.
#[derive(Debug)]
struct Holders {
    process: String,
    next: AtomicU64,
}

impl Holders {
    fn new() -> Self {
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.trim().is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        Self {
            process: format!("pid {} on {host}", std::process::id()),
            next: AtomicU64::new(1),
        }
    }

    fn next(&self) -> String {
        format!(
            "{} #{}",
            self.process,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// The per-customer use case over the state and Segment ports.
#[derive(Clone)]
pub struct SyncService {
    segment: Arc<dyn SegmentClient>,
    state: Arc<dyn SyncStateStore>,
    rules: IdentifyRules,
    holders: Arc<Holders>,
}

impl SyncService {
    /// The rule over these ports, building messages by `rules`.
    pub fn new(
        segment: Arc<dyn SegmentClient>,
        state: Arc<dyn SyncStateStore>,
        rules: IdentifyRules,
    ) -> Self {
        Self {
            segment,
            state,
            rules,
            holders: Arc::new(Holders::new()),
        }
    }

    /// How messages are built.
    pub fn rules(&self) -> &IdentifyRules {
        &self.rules
    }

    /// Who this process is, as runs and claims name it: `pid 12 on host-a`.
    pub fn process(&self) -> &str {
        &self.holders.process
    }

    /// Decides a page of records for `holder`, with one claim-and-lookup in the
    /// state and one record of what needs no sending (rejected records' dead
    /// letters; unchanged customers' versions, which drops their older dead
    /// letters). With `resend_unchanged`, nothing is unchanged. Decisions come in
    /// the records' order; `Send` ones stay claimed until [`SyncService::record`].
    pub async fn decide(
        &self,
        records: Vec<SourceRecord>,
        resend_unchanged: bool,
        holder: &str,
    ) -> Result<Vec<Decision>, StateError> {
        let classified = records
            .into_iter()
            .map(|record| classify(record, &self.rules))
            .collect();
        self.decide_classified(classified, resend_unchanged, holder, RUN_CLAIM)
            .await
    }

    async fn decide_classified(
        &self,
        classified: Vec<Classified>,
        resend_unchanged: bool,
        holder: &str,
        claim_for: Duration,
    ) -> Result<Vec<Decision>, StateError> {
        let ids: Vec<String> = classified
            .iter()
            .filter_map(|c| match c {
                Classified::Message(message) => Some(message.customer_id().to_owned()),
                _ => None,
            })
            .collect();
        let claimed = if ids.is_empty() {
            Default::default()
        } else {
            self.state.claim(&ids, holder, claim_for).await?
        };
        let busy: std::collections::HashSet<&String> = claimed.busy.iter().collect();
        let mut decisions = Vec::with_capacity(classified.len());
        let mut letters = Vec::new();
        let mut settled_now = Vec::new();
        for one in classified {
            decisions.push(match one {
                Classified::Message(message)
                    if busy.contains(&message.customer_id().to_owned()) =>
                {
                    Decision::Busy(message)
                }
                Classified::Message(message) => {
                    let held = claimed.delivered.get(message.customer_id());
                    let refused = claimed.rejected.get(message.customer_id());
                    match judge(&message, held, refused, resend_unchanged) {
                        Judged::Send => Decision::Send(message),
                        Judged::Refused => {
                            count_rejected_unsent();
                            let customer_id = message.customer_id().to_owned();
                            settled_now.push((message, false));
                            Decision::Refused { customer_id }
                        }
                        Judged::Stale => {
                            let customer_id = message.customer_id().to_owned();
                            settled_now.push((message, false));
                            Decision::Stale { customer_id }
                        }
                        Judged::Unchanged => {
                            let customer_id = message.customer_id().to_owned();
                            settled_now.push((message, true));
                            Decision::Unchanged { customer_id }
                        }
                    }
                }
                Classified::Skipped {
                    customer_id,
                    reason,
                } => Decision::Skipped {
                    customer_id,
                    reason,
                },
                Classified::Rejected { error, letter } => {
                    count_rejected_unsent();
                    let customer_id = letter.customer_id.clone();
                    let reason = letter.reason.clone();
                    letters.push(letter);
                    Decision::Rejected {
                        customer_id,
                        error,
                        reason,
                    }
                }
            });
        }
        // Unchanged customers: Segment has them as they are now, so their version
        // is remembered and an older failed attempt at them must not be replayed.
        let users: Vec<String> = settled_now
            .iter()
            .map(|(message, _)| message.user_id().as_ref().to_owned())
            .collect();
        let delivered: Vec<Delivered<'_>> = settled_now
            .iter()
            .zip(&users)
            .filter(|((_, unchanged), _)| *unchanged)
            .map(|((message, _), user_id)| Delivered {
                customer_id: message.customer_id(),
                version: message.version(),
                fingerprint: message.fingerprint(),
                user_id,
            })
            .collect();
        let release: Vec<String> = settled_now
            .iter()
            .map(|(message, _)| message.customer_id().to_owned())
            .collect();
        if !(release.is_empty() && letters.is_empty()) {
            self.state
                .settle(Settlement {
                    delivered: &delivered,
                    dead_letters: &letters,
                    release: &release,
                    holder,
                })
                .await?;
        }
        Ok(decisions)
    }

    /// Hands a message to Segment; waits while its queue is full.
    pub async fn submit(&self, message: Identify) -> Result<InFlight, SegmentError> {
        let sent = Sent {
            customer_id: message.customer_id().to_owned(),
            version: message.version(),
            user_id: message.user_id().as_ref().to_owned(),
            fingerprint: message.fingerprint(),
            payload: message.shared_json(),
        };
        let outcome = self.segment.identify(message).await?;
        Ok(InFlight { sent, outcome })
    }

    /// Records outcomes in one go and ends `holder`'s claims on them: deliveries
    /// (never replacing a newer one; clearing those customers' older dead
    /// letters), and a dead letter with its payload for every message refused or
    /// not delivered. A refused write key voids the message: no dead letter, the
    /// next run with the right key sends it.
    pub async fn record(&self, settled: &[Settled], holder: &str) -> Result<(), StateError> {
        let mut delivered = Vec::new();
        let mut letters = Vec::new();
        for one in settled {
            match &one.outcome {
                Outcome::Delivered => delivered.push(Delivered {
                    customer_id: &one.sent.customer_id,
                    version: one.sent.version,
                    fingerprint: one.sent.fingerprint,
                    user_id: &one.sent.user_id,
                }),
                Outcome::Failed(DeliveryError::Unauthorized) => {}
                Outcome::Rejected(error) => {
                    letters.push(one.dead_letter(DeadLetterKind::Rejected, error));
                }
                Outcome::Failed(error) => {
                    letters.push(one.dead_letter(DeadLetterKind::Failed, error));
                }
            }
        }
        let release: Vec<String> = settled.iter().map(|s| s.sent.customer_id.clone()).collect();
        self.state
            .settle(Settlement {
                delivered: &delivered,
                dead_letters: &letters,
                release: &release,
                holder,
            })
            .await
    }

    /// Ends `holder`'s claims on customers it decided to send but never handed
    /// over (an interrupt): the next run reads them again.
    pub async fn release(&self, messages: &[Identify], holder: &str) -> Result<(), StateError> {
        let release: Vec<String> = messages
            .iter()
            .map(|m| m.customer_id().to_owned())
            .collect();
        self.state
            .settle(Settlement {
                release: &release,
                holder,
                ..Settlement::default()
            })
            .await
    }

    /// Records customers that stayed busy for longer than a run would wait as
    /// failed dead letters (nothing was sent): a later run or a replay sends them
    /// if they are still the newest.
    pub async fn give_up_busy(&self, messages: &[Identify]) -> Result<(), StateError> {
        let letters: Vec<DeadLetter> = messages
            .iter()
            .map(|message| DeadLetter {
                fingerprint: Some(message.fingerprint().to_hex()),
                version: Some(message.version()),
                ..dead_letter(
                    message.customer_id(),
                    DeadLetterKind::Failed,
                    &DeliveryError::Busy,
                    Some(message.json().to_owned()),
                )
            })
            .collect();
        self.state.add_dead_letters(&letters).await
    }

    /// The messages of the failed dead letters among at most `limit` after
    /// `after`, to decide and send again. Rejected letters stay for a sync to
    /// resend once the customer's data is fixed; a failed letter whose payload
    /// can no longer be sent becomes a rejected one.
    pub async fn replayable(
        &self,
        after: Option<DeadLetterCursor>,
        limit: usize,
    ) -> Result<Replay, StateError> {
        let page = self.state.dead_letters_after(after, limit).await?;
        let mut replay = Replay {
            read: page.len(),
            next: page.last().map(|stored| stored.cursor),
            ..Replay::default()
        };
        let mut unusable = Vec::new();
        for StoredDeadLetter { letter, .. } in page {
            let (DeadLetterKind::Failed, Some(payload)) = (&letter.kind, letter.payload) else {
                continue;
            };
            // A letter from before versions were kept is as old as can be.
            let version = letter.version.unwrap_or(0);
            match Identify::from_json(&letter.customer_id, version, payload) {
                Ok(message) => replay.messages.push(message),
                Err(NotSent::Rejected(error)) => unusable.push(dead_letter(
                    &letter.customer_id,
                    DeadLetterKind::Rejected,
                    &error,
                    None,
                )),
                Err(NotSent::Skipped(_)) => {}
            }
        }
        replay.unusable = unusable.len() as u64;
        if !unusable.is_empty() {
            self.state.add_dead_letters(&unusable).await?;
        }
        Ok(replay)
    }

    /// Decides replayed messages for `holder` as a sync decides records: a letter
    /// older than what Segment has is stale, one whose content Segment has is
    /// unchanged (and leaves the dead letters).
    pub async fn decide_replay(
        &self,
        messages: Vec<Identify>,
        holder: &str,
    ) -> Result<Vec<Decision>, StateError> {
        let classified = messages.into_iter().map(Classified::Message).collect();
        self.decide_classified(classified, false, holder, RUN_CLAIM)
            .await
    }

    /// The whole rule for one customer: claimed, decided, sent, and its outcome
    /// recorded before this returns. Two round trips to the state when no other
    /// process holds the customer; while one does, it waits a little for it. It
    /// stops waiting (for the other process, for Segment) at `deadline`; once
    /// Segment has answered, the outcome is recorded whatever the time.
    pub async fn deliver(
        &self,
        customer: Customer,
        deadline: tokio::time::Instant,
    ) -> Result<Delivery, ServiceError> {
        let holder = self.holders.next();
        let mut classified = Some(classify(
            SourceRecord::Customer(Box::new(customer)),
            &self.rules,
        ));
        let mut wait = Duration::from_millis(20);
        let patience = deadline.min(tokio::time::Instant::now() + BUSY_PATIENCE);
        let message = loop {
            let one = classified.take().expect("put back after each busy try");
            let decision = self
                .decide_classified(vec![one], false, &holder, DELIVER_CLAIM)
                .await?
                .pop();
            match decision {
                Some(Decision::Send(message)) => break message,
                Some(Decision::Unchanged { .. }) => return Ok(Delivery::Unchanged),
                Some(Decision::Stale { .. }) => return Ok(Delivery::Stale),
                Some(Decision::Refused { .. }) => return Ok(Delivery::Refused),
                Some(Decision::Skipped { reason, .. }) => return Ok(Delivery::Skipped(reason)),
                Some(Decision::Rejected { error, .. }) => return Ok(Delivery::Rejected(error)),
                Some(Decision::Busy(message)) if tokio::time::Instant::now() < patience => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_millis(500));
                    classified = Some(Classified::Message(message));
                }
                Some(Decision::Busy(_)) => return Err(ServiceError::Busy),
                None => unreachable!("one decision per record"),
            }
        };
        let message_id = message.message_id().to_string();
        let in_flight = match self.submit(message.clone()).await {
            Ok(in_flight) => in_flight,
            Err(error) => {
                self.release(std::slice::from_ref(&message), &holder)
                    .await?;
                return Err(error.into());
            }
        };
        let Ok(settled) = tokio::time::timeout_at(deadline, in_flight.settle()).await else {
            // The sender delivers it again; the claim must not make that wait.
            self.release(std::slice::from_ref(&message), &holder)
                .await?;
            return Err(ServiceError::TimedOut);
        };
        self.record(std::slice::from_ref(&settled), &holder).await?;
        Ok(match settled.outcome {
            Outcome::Delivered => Delivery::Delivered { message_id },
            Outcome::Rejected(error) => Delivery::Rejected(error),
            Outcome::Failed(error) => Delivery::Failed(error),
        })
    }
}

/// Counts a message rejected without being sent (it cannot be sent as it is, or
/// Segment refused this content before): the Segment adapter counts only what it
/// sends, so a message's final outcome is counted once, here.
fn count_rejected_unsent() {
    metrics::counter!(crate::serve::SEGMENT_MESSAGES, "outcome" => "rejected").increment(1);
}

/// What a message is, given what Segment has of its customer and what it refused.
enum Judged {
    Send,
    Unchanged,
    Stale,
    Refused,
}

fn judge(
    message: &Identify,
    held: Option<&DeliveredRecord>,
    refused: Option<&Fingerprint>,
    resend_unchanged: bool,
) -> Judged {
    if held.is_some_and(|held| message.version() < held.version) {
        return Judged::Stale;
    }
    if resend_unchanged {
        return Judged::Send;
    }
    if held.is_some_and(|held| held.fingerprint == message.fingerprint()) {
        return Judged::Unchanged;
    }
    if refused == Some(&message.fingerprint()) {
        return Judged::Refused;
    }
    Judged::Send
}

/// A dead letter recorded now.
fn dead_letter(
    customer_id: &str,
    kind: DeadLetterKind,
    error: &DeliveryError,
    payload: Option<String>,
) -> DeadLetter {
    DeadLetter::from_error(customer_id, kind, error, payload, None, now_rfc3339())
}

/// Now, as RFC 3339 (UTC).
pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        // Formatting the current UTC time cannot fail; keep a dead letter even so.
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
