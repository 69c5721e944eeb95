//! [`MemorySource`]: customers, and records that are not customers, in memory.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use segment_sync_domain::Customer;
use segment_sync_ports::{
    CustomerPages, CustomerQuery, CustomerSource, Page, SourceCapabilities, SourceError,
    SourceRecord,
};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Records per page unless [`MemorySource::with_page_size`] says otherwise: the
/// commercetools API's largest page.
pub const DEFAULT_PAGE_SIZE: usize = 500;

/// A [`CustomerSource`] over records held in memory, in the order they were put.
///
/// - A walk hands out the records in pages of at most the page size, never an
///   empty page; it reads a copy taken when the walk starts.
/// - `ChangedSince(t)` keeps customers whose `lastModifiedAt` is at or after `t`,
///   and, as an export file does, customers without a readable `lastModifiedAt`
///   and malformed records: dropping those would lose them for good.
/// - `customer_by_id` finds customers, never malformed records.
/// - [`MemorySource::set_unavailable`] makes every read fail with
///   [`SourceError::Unavailable`], including the next page of a walk under way.
/// - By-id lookups and walks are logged ([`MemorySource::lookups`],
///   [`MemorySource::walks`]).
/// - It tracks changes and answers by id, as the commercetools API does;
///   [`MemorySource::with_capabilities`] makes it an export-like source instead
///   (without `by_id`, `customer_by_id` fails with [`SourceError::Protocol`]).
///
/// It passes [`crate::contract::source`].
#[derive(Debug)]
pub struct MemorySource {
    held: Mutex<Records>,
    page_size: usize,
    capabilities: SourceCapabilities,
    unavailable: Arc<AtomicBool>,
    lookups: Mutex<Vec<String>>,
    walks: Mutex<Vec<CustomerQuery>>,
}

#[derive(Debug, Default)]
struct Records {
    records: Vec<SourceRecord>,
    /// Where each customer is in `records`.
    by_id: HashMap<String, usize>,
    /// Records ever put, for the positions of malformed ones.
    put: usize,
}

impl Default for MemorySource {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MemorySource {
    /// An empty source with pages of [`DEFAULT_PAGE_SIZE`].
    pub fn new() -> Self {
        Self {
            held: Mutex::new(Records::default()),
            page_size: DEFAULT_PAGE_SIZE,
            capabilities: SourceCapabilities {
                tracks_changes: true,
                by_id: true,
            },
            unavailable: Arc::default(),
            lookups: Mutex::default(),
            walks: Mutex::default(),
        }
    }

    /// Sets the records per page (at least 1).
    pub fn with_page_size(mut self, page_size: usize) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    /// Sets what [`CustomerSource::capabilities`] answers.
    pub fn with_capabilities(mut self, capabilities: SourceCapabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Adds a customer, or replaces the one with its id in its place.
    ///
    /// # Panics
    /// When the customer's id is blank: no source yields such a customer (see
    /// [`MemorySource::put_json`] for a record that is not a customer).
    pub fn put(&self, customer: Customer) {
        assert!(
            !customer.id.trim().is_empty(),
            "a customer needs an id; use put_json or put_malformed for a record without one"
        );
        let mut held = lock(&self.held);
        held.put += 1;
        match held.by_id.get(&customer.id).copied() {
            Some(at) => held.records[at] = SourceRecord::Customer(Box::new(customer)),
            None => {
                let at = held.records.len();
                held.by_id.insert(customer.id.clone(), at);
                held.records
                    .push(SourceRecord::Customer(Box::new(customer)));
            }
        }
    }

    /// Adds a record as an export or the API holds it: a customer when it reads as
    /// one with a non-blank id, else a [`SourceRecord::Malformed`] at `record N`
    /// (N counting every record put), with its id when it has a readable one.
    pub fn put_json(&self, json: &str) {
        match serde_json::from_str::<Customer>(json) {
            Ok(customer) if !customer.id.trim().is_empty() => self.put(customer),
            Ok(_) => self.put_malformed(None, "customer has no id"),
            Err(e) => self.put_malformed(id_of(json).as_deref(), &e.to_string()),
        }
    }

    /// Adds a record that is not a valid customer, at `record N`.
    pub fn put_malformed(&self, customer_id: Option<&str>, reason: &str) {
        let mut held = lock(&self.held);
        held.put += 1;
        let position = format!("record {}", held.put);
        held.records.push(SourceRecord::Malformed {
            position,
            customer_id: customer_id.map(str::to_owned),
            reason: reason.to_owned(),
        });
    }

    /// Removes the customer with this id; true if there was one.
    pub fn remove(&self, id: &str) -> bool {
        let mut held = lock(&self.held);
        let Some(at) = held.by_id.remove(id) else {
            return false;
        };
        held.records.remove(at);
        for index in held.by_id.values_mut() {
            if *index > at {
                *index -= 1;
            }
        }
        true
    }

    /// The records held, in order.
    pub fn records(&self) -> Vec<SourceRecord> {
        lock(&self.held).records.clone()
    }

    /// While `unavailable` is true every read fails as if commercetools were down.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// The ids asked of [`CustomerSource::customer_by_id`], in order, failed
    /// lookups included.
    pub fn lookups(&self) -> Vec<String> {
        lock(&self.lookups).clone()
    }

    /// The queries of the walks started, in order, failed starts included.
    pub fn walks(&self) -> Vec<CustomerQuery> {
        lock(&self.walks).clone()
    }

    fn check(&self) -> Result<(), SourceError> {
        check(&self.unavailable)
    }
}

fn check(unavailable: &AtomicBool) -> Result<(), SourceError> {
    if unavailable.load(Ordering::SeqCst) {
        Err(SourceError::Unavailable(
            "503 Service Unavailable (the memory source is set to be unavailable)".to_owned(),
        ))
    } else {
        Ok(())
    }
}

/// The non-blank `id` of a record that is not a whole customer.
fn id_of(json: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: String,
    }
    serde_json::from_str::<IdOnly>(json)
        .ok()
        .map(|record| record.id)
        .filter(|id| !id.trim().is_empty())
}

/// Whether a `ChangedSince(since)` walk keeps this record.
fn selected(record: &SourceRecord, since: OffsetDateTime) -> bool {
    let SourceRecord::Customer(customer) = record else {
        return true;
    };
    customer
        .last_modified_at
        .as_deref()
        .and_then(|at| OffsetDateTime::parse(at, &Rfc3339).ok())
        .is_none_or(|at| at >= since)
}

#[async_trait]
impl CustomerSource for MemorySource {
    fn capabilities(&self) -> SourceCapabilities {
        self.capabilities
    }

    async fn customers(&self, query: CustomerQuery) -> Result<Box<dyn CustomerPages>, SourceError> {
        lock(&self.walks).push(query);
        self.check()?;
        let held = lock(&self.held);
        let records = match query {
            CustomerQuery::All => held.records.iter().cloned().collect(),
            CustomerQuery::ChangedSince(since) => held
                .records
                .iter()
                .filter(|record| selected(record, since))
                .cloned()
                .collect(),
        };
        Ok(Box::new(MemoryPages {
            records,
            page_size: self.page_size,
            unavailable: Arc::clone(&self.unavailable),
        }))
    }

    async fn customer_by_id(&self, id: &str) -> Result<Option<Customer>, SourceError> {
        lock(&self.lookups).push(id.to_owned());
        self.check()?;
        if !self.capabilities.by_id {
            return Err(SourceError::Protocol(
                "this memory source cannot be searched by id".to_owned(),
            ));
        }
        let held = lock(&self.held);
        Ok(held.by_id.get(id).and_then(|at| match &held.records[*at] {
            SourceRecord::Customer(customer) => Some(customer.as_ref().clone()),
            SourceRecord::Malformed { .. } => None,
        }))
    }
}

/// One walk over a [`MemorySource`].
struct MemoryPages {
    records: VecDeque<SourceRecord>,
    page_size: usize,
    unavailable: Arc<AtomicBool>,
}

#[async_trait]
impl CustomerPages for MemoryPages {
    async fn next_page(&mut self) -> Result<Option<Page>, SourceError> {
        if self.records.is_empty() {
            return Ok(None);
        }
        check(&self.unavailable)?;
        let take = self.page_size.min(self.records.len());
        Ok(Some(Page {
            records: self.records.drain(..take).collect(),
        }))
    }
}
