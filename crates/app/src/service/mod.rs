//! The per-customer rule, in one place for every way in.
//!
//! A record becomes an identify message, or is skipped or rejected; a message whose
//! content Segment already has is unchanged (and any older failed attempt at that
//! customer is dropped, so a replay can never overwrite it); the rest is sent, and
//! its outcome recorded: a delivery (which clears the customer's dead letters) or a
//! dead letter. `sync`, `dead-letters replay` and the webhook all go through
//! [`SyncService`]; it is the only caller of the state and Segment ports for this
//! rule. The sync engine only streams pages through it and counts, and the webhook
//! handler only decodes a body, calls [`SyncService::deliver`] and maps the result
//! to a status.

use std::sync::Arc;

use segment_sync_domain::identify::{identify, NotSent, SkipReason};
use segment_sync_domain::sync::{DeadLetter, DeadLetterKind};
use segment_sync_domain::{
    Customer, DeliveryError, Fingerprint, Identify, Outcome, UserIdStrategy,
};
use segment_sync_ports::{
    Delivered, PendingOutcome, SegmentClient, SegmentError, SourceRecord, StateError,
    SyncStateStore,
};
use time::OffsetDateTime;

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

/// Transforms one record: a message, a skip, or a dead letter. Pure: the dry run
/// uses it without any state.
pub fn classify(record: SourceRecord, strategy: UserIdStrategy) -> Classified {
    match record {
        SourceRecord::Customer(customer) => match identify(&customer, strategy) {
            Ok(message) => Classified::Message(message),
            Err(NotSent::Skipped(reason)) => Classified::Skipped {
                customer_id: customer.id,
                reason,
            },
            Err(NotSent::Rejected(error)) => Classified::Rejected {
                letter: dead_letter(&customer.id, DeadLetterKind::Rejected, &error, None),
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
    /// To be sent: Segment does not have this content.
    Send(Identify),
    /// Segment already has this exact content.
    Unchanged {
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
    },
}

/// A message handed to Segment, with what recording its outcome needs. The message
/// itself is shared with the client, not copied.
pub struct InFlight {
    customer_id: String,
    fingerprint: Fingerprint,
    payload: Arc<str>,
    outcome: PendingOutcome,
}

impl InFlight {
    /// Waits for Segment's answer about this message.
    pub async fn settle(self) -> Settled {
        Settled {
            outcome: self.outcome.await,
            customer_id: self.customer_id,
            fingerprint: self.fingerprint,
            payload: self.payload,
        }
    }
}

/// A message whose outcome is known, ready to be recorded.
#[derive(Debug, Clone)]
pub struct Settled {
    customer_id: String,
    fingerprint: Fingerprint,
    payload: Arc<str>,
    outcome: Outcome,
}

impl Settled {
    /// The customer it was about.
    pub fn customer_id(&self) -> &str {
        &self.customer_id
    }

    /// What Segment did with it.
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }
}

/// The failed dead letters, ready to be sent again.
#[derive(Debug, Default)]
pub struct Replay {
    /// Their messages, oldest first.
    pub messages: Vec<Identify>,
    /// Letters whose payload can no longer be sent; each is now a rejected dead letter.
    pub unusable: u64,
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
    /// Not sent on purpose.
    Skipped(SkipReason),
    /// Can never be delivered as it is; it is in the dead letters.
    Rejected(DeliveryError),
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
}

/// The per-customer use case over the state and Segment ports.
#[derive(Clone)]
pub struct SyncService {
    segment: Arc<dyn SegmentClient>,
    state: Arc<dyn SyncStateStore>,
    strategy: UserIdStrategy,
}

impl SyncService {
    /// The rule over these ports, choosing `userId` by `strategy`.
    pub fn new(
        segment: Arc<dyn SegmentClient>,
        state: Arc<dyn SyncStateStore>,
        strategy: UserIdStrategy,
    ) -> Self {
        Self {
            segment,
            state,
            strategy,
        }
    }

    /// How `userId` is chosen.
    pub fn strategy(&self) -> UserIdStrategy {
        self.strategy
    }

    /// Decides a page of records with one lookup in the state: rejected records'
    /// dead letters are recorded, and a customer found unchanged loses any dead
    /// letter of an older attempt. With `resend_unchanged`, nothing is unchanged.
    /// Decisions come in the records' order.
    pub async fn decide(
        &self,
        records: Vec<SourceRecord>,
        resend_unchanged: bool,
    ) -> Result<Vec<Decision>, StateError> {
        let mut decisions = Vec::with_capacity(records.len());
        let mut letters = Vec::new();
        for record in records {
            decisions.push(match classify(record, self.strategy) {
                Classified::Message(message) => Decision::Send(message),
                Classified::Skipped {
                    customer_id,
                    reason,
                } => Decision::Skipped {
                    customer_id,
                    reason,
                },
                Classified::Rejected { error, letter } => {
                    let customer_id = letter.customer_id.clone();
                    letters.push(letter);
                    Decision::Rejected { customer_id, error }
                }
            });
        }
        if !letters.is_empty() {
            self.state.add_dead_letters(&letters).await?;
        }
        if !resend_unchanged {
            self.drop_unchanged(&mut decisions).await?;
        }
        Ok(decisions)
    }

    async fn drop_unchanged(&self, decisions: &mut [Decision]) -> Result<(), StateError> {
        let ids: Vec<String> = decisions
            .iter()
            .filter_map(|d| match d {
                Decision::Send(message) => Some(message.customer_id().to_owned()),
                _ => None,
            })
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let known = self.state.delivered_fingerprints(&ids).await?;
        let mut unchanged = Vec::new();
        for decision in decisions.iter_mut() {
            if let Decision::Send(message) = decision {
                if known.get(message.customer_id()) == Some(&message.fingerprint()) {
                    let customer_id = message.customer_id().to_owned();
                    unchanged.push(customer_id.clone());
                    *decision = Decision::Unchanged { customer_id };
                }
            }
        }
        if unchanged.is_empty() {
            return Ok(());
        }
        // Segment has these as they are now: an older failed attempt at them must
        // not be replayed over it.
        self.state.remove_dead_letters(&unchanged).await
    }

    /// Hands a message to Segment; waits while its queue is full.
    pub async fn submit(&self, message: Identify) -> Result<InFlight, SegmentError> {
        let customer_id = message.customer_id().to_owned();
        let fingerprint = message.fingerprint();
        let payload = message.shared_json();
        let outcome = self.segment.identify(message).await?;
        Ok(InFlight {
            customer_id,
            fingerprint,
            payload,
            outcome,
        })
    }

    /// Records outcomes in one go: deliveries (which clear those customers' dead
    /// letters), and a dead letter with its payload for every message refused or
    /// not delivered. A refused write key voids the message: no dead letter, the
    /// next run with the right key sends it.
    pub async fn record(&self, settled: &[Settled]) -> Result<(), StateError> {
        let mut delivered = Vec::new();
        let mut letters = Vec::new();
        for one in settled {
            match &one.outcome {
                Outcome::Delivered => delivered.push(Delivered {
                    customer_id: &one.customer_id,
                    fingerprint: one.fingerprint,
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
        if !delivered.is_empty() {
            self.state.record_delivered(&delivered).await?;
        }
        if !letters.is_empty() {
            self.state.add_dead_letters(&letters).await?;
        }
        Ok(())
    }

    /// The failed dead letters' messages, to send again. Rejected letters stay for
    /// a sync to resend once the customer's data is fixed; a failed letter whose
    /// payload can no longer be sent becomes a rejected one.
    pub async fn replayable(&self) -> Result<Replay, StateError> {
        let mut replay = Replay::default();
        let mut unusable = Vec::new();
        for letter in self.state.dead_letters().await? {
            let (DeadLetterKind::Failed, Some(payload)) = (&letter.kind, letter.payload) else {
                continue;
            };
            match Identify::from_json(&letter.customer_id, payload) {
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

    /// The whole rule for one customer: decided, sent, and its outcome recorded
    /// before this returns. At most two round trips to the state.
    pub async fn deliver(&self, customer: Customer) -> Result<Delivery, ServiceError> {
        let record = SourceRecord::Customer(Box::new(customer));
        let decision = self.decide(vec![record], false).await?.pop();
        let message = match decision {
            Some(Decision::Send(message)) => message,
            Some(Decision::Unchanged { .. }) => return Ok(Delivery::Unchanged),
            Some(Decision::Skipped { reason, .. }) => return Ok(Delivery::Skipped(reason)),
            Some(Decision::Rejected { error, .. }) => return Ok(Delivery::Rejected(error)),
            None => unreachable!("one decision per record"),
        };
        let message_id = message.message_id().to_string();
        let settled = self.submit(message).await?.settle().await;
        self.record(std::slice::from_ref(&settled)).await?;
        Ok(match settled.outcome {
            Outcome::Delivered => Delivery::Delivered { message_id },
            Outcome::Rejected(error) => Delivery::Rejected(error),
            Outcome::Failed(error) => Delivery::Failed(error),
        })
    }
}

impl Settled {
    fn dead_letter(&self, kind: DeadLetterKind, error: &DeliveryError) -> DeadLetter {
        DeadLetter {
            fingerprint: Some(self.fingerprint.to_hex()),
            ..dead_letter(
                &self.customer_id,
                kind,
                error,
                Some(self.payload.to_string()),
            )
        }
    }
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
