//! Customers that vanished: after a complete walk of the API, the customers the
//! state remembers delivering that the walk did not see.
//!
//! The walk's ids are kept as 64-bit hashes (8 bytes a customer, 16 MB for two
//! million), so that memory stays bounded; two ids with one hash would make a
//! vanished customer look seen, a chance of about one in 10^12 for a shop of
//! two million customers, and it is only reported a run later.

use segment_sync_ports::{CustomerSource, SourceRecord, StateError, SyncStateStore};
use xxhash_rust::xxh3::xxh3_64;

/// Deliveries read per page while looking for vanished customers.
const PAGE: usize = 1_000;

/// The ids a walk saw.
#[derive(Debug, Default)]
pub(super) struct Seen(Vec<u64>);

impl Seen {
    /// Notes the ids of a page's records (a malformed record with an id exists too).
    pub(super) fn note(&mut self, records: &[SourceRecord]) {
        self.0
            .extend(records.iter().filter_map(|record| match record {
                SourceRecord::Customer(customer) => Some(xxh3_64(customer.id.as_bytes())),
                SourceRecord::Malformed {
                    customer_id: Some(id),
                    ..
                } => Some(xxh3_64(id.as_bytes())),
                _ => None,
            }));
    }

    /// The customer ids delivered earlier that the walk did not see.
    pub(super) async fn gone(
        mut self,
        state: &dyn SyncStateStore,
    ) -> Result<Vec<String>, StateError> {
        self.0.sort_unstable();
        self.0.dedup();
        let mut gone = Vec::new();
        let mut after = None;
        loop {
            let page = state.deliveries_after(after.take(), PAGE).await?;
            let Some(last) = page.last() else {
                return Ok(gone);
            };
            after = Some(last.customer_id.clone());
            gone.extend(
                page.into_iter()
                    .filter(|row| {
                        self.0
                            .binary_search(&xxh3_64(row.customer_id.as_bytes()))
                            .is_err()
                    })
                    .map(|row| row.customer_id),
            );
        }
    }
}

/// Of the customers a walk did not see, those the source confirms are gone: one
/// created while the walk went on (behind its cursor) and delivered meanwhile by
/// the webhook is still there, and so is one the source could not be asked about.
pub(super) async fn confirmed(source: &dyn CustomerSource, unseen: Vec<String>) -> Vec<String> {
    let mut gone = Vec::with_capacity(unseen.len());
    for id in unseen {
        match source.customer_by_id(&id).await {
            Ok(None) => gone.push(id),
            Ok(Some(_)) => {}
            Err(error) => {
                tracing::warn!(customer_id = %id, %error, "cannot confirm a customer is gone; it is kept");
            }
        }
    }
    gone
}

#[cfg(test)]
mod tests {
    use segment_sync_domain::Customer;
    use segment_sync_testkit::memory::{MemorySource, MemoryStateStore};

    use super::*;

    #[tokio::test]
    async fn the_delivered_customers_a_walk_did_not_see_are_gone() {
        let state = MemoryStateStore::new();
        let ids: Vec<String> = (0..2_500).map(|n| format!("c{n:05}")).collect();
        let deliveries: Vec<(String, String)> =
            ids.iter().map(|id| (id.clone(), id.clone())).collect();
        state.deliver_as(&deliveries).await;
        let mut seen = Seen::default();
        let records: Vec<SourceRecord> = ids
            .iter()
            .enumerate()
            .filter(|(n, _)| n % 250 != 7)
            .map(|(n, id)| match n % 2 {
                0 => SourceRecord::Customer(Box::new(Customer {
                    id: id.clone(),
                    ..Customer::default()
                })),
                _ => SourceRecord::Malformed {
                    position: format!("line {n}"),
                    customer_id: Some(id.clone()),
                    reason: "invalid type".to_owned(),
                },
            })
            .collect();
        seen.note(&records[..1_000]);
        seen.note(&records[1_000..]);
        seen.note(&[SourceRecord::Customer(Box::new(Customer {
            id: "new-one".to_owned(),
            ..Customer::default()
        }))]);

        let gone = seen.gone(&state).await.unwrap();

        let expected: Vec<String> = (0..10).map(|k| format!("c{:05}", k * 250 + 7)).collect();
        assert_eq!(gone, expected);
    }

    #[tokio::test]
    async fn a_customer_the_source_still_has_is_not_gone() {
        let source = MemorySource::new();
        source.put(Customer {
            id: "created-during-the-walk".to_owned(),
            ..Customer::default()
        });
        let unseen = vec!["created-during-the-walk".to_owned(), "deleted".to_owned()];

        assert_eq!(confirmed(&source, unseen).await, ["deleted"]);
    }
}
