//! The [`CustomerSource`] contract: what every customer source must do, one
//! public function per rule.
//!
//! Each rule asks a factory for a source holding a [`SourceFixture`]: records as
//! the commercetools API or an export holds them, one JSON object each. Instantiate
//! the whole suite with [`customer_source_contract!`](crate::customer_source_contract):
//!
//! ```
//! use segment_sync_testkit::contract::source::SourceFixture;
//! use segment_sync_testkit::memory::MemorySource;
//!
//! async fn holding(fixture: SourceFixture) -> MemorySource {
//!     let source = MemorySource::new().with_page_size(fixture.page_size);
//!     for record in &fixture.records {
//!         source.put_json(record);
//!     }
//!     source
//! }
//!
//! segment_sync_testkit::customer_source_contract!(holding);
//! # fn main() {}
//! ```
//!
//! A source over a file writes [`SourceFixture::ndjson`] into a temporary
//! directory and keeps the directory with [`Subject::keeping`]; a source over
//! HTTP loads the records into a fake server and keeps the server.
//!
//! The order of records within a walk is the source's own (file order, id order
//! for the API), so the rules compare what was read as a set. What
//! `ChangedSince` does with a customer without `lastModifiedAt` or a malformed
//! record is left to each source.

use std::future::Future;

use segment_sync_domain::Customer;
use segment_sync_ports::{CustomerQuery, CustomerSource, SourceError, SourceRecord};
use serde_json::json;
use time::macros::datetime;

use super::{within, Subject};

/// What a source under test must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFixture {
    /// The records in order, each one JSON object as the API returns it in a
    /// query's `results` or an export holds it. Some are not valid customers.
    pub records: Vec<String>,
    /// The records per page the source should hand out; the rules choose it small
    /// so that a walk takes several pages.
    pub page_size: usize,
}

impl SourceFixture {
    /// The records as NDJSON, one per line.
    pub fn ndjson(&self) -> String {
        let mut text = String::new();
        for record in &self.records {
            text.push_str(record);
            text.push('\n');
        }
        text
    }

    /// The records as a JSON array.
    pub fn json_array(&self) -> String {
        format!("[{}]", self.records.join(","))
    }

    /// The records that are valid customers (they parse, with a non-blank id).
    pub fn customers(&self) -> Vec<Customer> {
        self.records
            .iter()
            .filter_map(|record| serde_json::from_str::<Customer>(record).ok())
            .filter(|customer| !customer.id.trim().is_empty())
            .collect()
    }
}

/// Makes a source holding a fixture, fresh for each rule: an async function or
/// closure returning anything that converts into a [`Subject<dyn CustomerSource>`].
pub trait SourceFactory {
    /// A new source holding exactly the fixture's records.
    fn make(&self, fixture: SourceFixture) -> impl Future<Output = Subject<dyn CustomerSource>>;
}

impl<F, Fut, T> SourceFactory for F
where
    F: Fn(SourceFixture) -> Fut,
    Fut: Future<Output = T>,
    T: Into<Subject<dyn CustomerSource>>,
{
    fn make(&self, fixture: SourceFixture) -> impl Future<Output = Subject<dyn CustomerSource>> {
        let made = self(fixture);
        async move { made.await.into() }
    }
}

/// Runs the [`CustomerSource`] contract against a factory: one `#[tokio::test]`
/// per rule of [`crate::contract::source`], in a module named `contract`.
///
/// The factory is an async function (or closure) taking a
/// [`SourceFixture`](crate::contract::source::SourceFixture) and returning a
/// source holding its records, as anything that converts into a
/// [`Subject<dyn CustomerSource>`](crate::contract::Subject). The test crate
/// needs `tokio` with `macros` and `rt-multi-thread`.
///
/// ```text
/// segment_sync_testkit::customer_source_contract!(ndjson_file_holding);
/// ```
#[macro_export]
macro_rules! customer_source_contract {
    ($factory:expr $(,)?) => {
        fn __customer_source_contract_factory() -> impl $crate::contract::source::SourceFactory {
            $factory
        }

        mod contract {
            $crate::__customer_source_rules!(
                an_empty_source_has_no_pages,
                a_walk_reads_every_record_once_in_pages_never_empty,
                malformed_records_do_not_stop_the_walk,
                customers_are_found_by_id,
                an_unknown_id_is_none,
                changed_since_selects_customers_modified_at_or_after_it,
            );
        }
    };
}

/// One test per source rule.
#[doc(hidden)]
#[macro_export]
macro_rules! __customer_source_rules {
    ($($rule:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $rule() {
                $crate::contract::source::$rule(&super::__customer_source_contract_factory()).await;
            }
        )*
    };
}

/// A customer with most fields set, last modified at `last_modified_at`.
fn customer(n: usize, last_modified_at: &str) -> String {
    json!({
        "id": format!("customer-{n:03}"),
        "version": n + 1,
        "key": format!("key-{n}"),
        "customerNumber": format!("CN-{n}"),
        "email": format!("User{n}@Example.com"),
        "firstName": "Ada",
        "lastName": format!("Lovelace {n}"),
        "addresses": [{"id": "a1", "streetName": "St James's Square", "city": "London",
                       "postalCode": "SW1Y 4JH", "country": "GB"}],
        "defaultBillingAddressId": "a1",
        "isEmailVerified": n.is_multiple_of(2),
        "custom": {"type": {"typeId": "type", "id": "t1"}, "fields": {"loyalty": n, "tags": ["a", "b"]}},
        "createdAt": "2024-01-01T00:00:00.000Z",
        "lastModifiedAt": last_modified_at,
        "authenticationMode": "Password"
    })
    .to_string()
}

fn customers(count: usize) -> Vec<String> {
    (0..count)
        .map(|n| customer(n, "2024-05-01T10:00:00.000Z"))
        .collect()
}

/// A record with a readable id whose `version` is not a number.
const MALFORMED_WITH_ID: &str =
    r#"{"id":"customer-malformed","version":"two","email":"bad@example.com"}"#;
/// A record without an id.
const MALFORMED_WITHOUT_ID: &str = r#"{"version":3,"email":"no-id@example.com"}"#;

fn parsed(json: &str) -> Customer {
    serde_json::from_str(json).expect("the fixture's customers are valid")
}

fn ok<T>(doing: &str, result: Result<T, SourceError>) -> T {
    result.unwrap_or_else(|e| panic!("{doing} failed: {e}"))
}

/// Walks `query` to its end, checking that no page is empty and that the walk
/// stays over once over.
async fn walk(
    source: &dyn CustomerSource,
    query: CustomerQuery,
    at_most: usize,
) -> Vec<SourceRecord> {
    let mut pages = ok(
        "starting a walk",
        within("starting a walk", source.customers(query)).await,
    );
    let mut records = Vec::new();
    let mut page_count = 0;
    while let Some(page) = ok("next_page", within("a page", pages.next_page()).await) {
        page_count += 1;
        assert!(
            !page.records.is_empty(),
            "page {page_count} is empty: a walk has no empty pages"
        );
        records.extend(page.records);
        assert!(
            records.len() <= at_most,
            "the walk yielded more than the {at_most} records the source holds"
        );
    }
    let after_the_end = within("a page after the end", pages.next_page()).await;
    assert_eq!(
        ok("next_page after the end", after_the_end),
        None,
        "a finished walk stays finished"
    );
    records
}

/// A malformed record as read: its id, position and reason.
type MalformedRecord = (Option<String>, String, String);

/// The customers of a walk, by id order, and its malformed records.
fn split(records: Vec<SourceRecord>) -> (Vec<Customer>, Vec<MalformedRecord>) {
    let mut customers = Vec::new();
    let mut malformed = Vec::new();
    for record in records {
        match record {
            SourceRecord::Customer(customer) => customers.push(*customer),
            SourceRecord::Malformed {
                position,
                customer_id,
                reason,
            } => malformed.push((customer_id, position, reason)),
        }
    }
    customers.sort_by(|a, b| a.id.cmp(&b.id));
    (customers, malformed)
}

fn sorted(mut customers: Vec<Customer>) -> Vec<Customer> {
    customers.sort_by(|a, b| a.id.cmp(&b.id));
    customers
}

/// A source with no records has no pages: the first `next_page` is `None`.
pub async fn an_empty_source_has_no_pages(make: &impl SourceFactory) {
    let source = make
        .make(SourceFixture {
            records: Vec::new(),
            page_size: 3,
        })
        .await;

    assert!(walk(&*source, CustomerQuery::All, 0).await.is_empty());
}

/// A walk of every customer yields each exactly once, as held, in pages none of
/// which is empty — whether the last page is full or not.
pub async fn a_walk_reads_every_record_once_in_pages_never_empty(make: &impl SourceFactory) {
    for count in [9, 7, 1] {
        let fixture = SourceFixture {
            records: customers(count),
            page_size: 3,
        };
        let expected = sorted(fixture.customers());
        let source = make.make(fixture).await;

        let (read, malformed) = split(walk(&*source, CustomerQuery::All, count).await);

        assert_eq!(read, expected, "{count} customers, each once and as held");
        assert!(
            malformed.is_empty(),
            "no malformed record in {count} customers"
        );
    }
}

/// A malformed record — with a readable id or without one, first, in the middle
/// or last — is reported as [`SourceRecord::Malformed`] with a position, a reason
/// and the id when it has one, and the walk goes on to every other record.
pub async fn malformed_records_do_not_stop_the_walk(make: &impl SourceFactory) {
    let valid = customers(5);
    let records = vec![
        MALFORMED_WITHOUT_ID.to_owned(),
        valid[0].clone(),
        valid[1].clone(),
        MALFORMED_WITH_ID.to_owned(),
        valid[2].clone(),
        valid[3].clone(),
        valid[4].clone(),
        r#"{"id":"customer-malformed-last","addresses":"not a list"}"#.to_owned(),
    ];
    let fixture = SourceFixture {
        records,
        page_size: 2,
    };
    let expected = sorted(fixture.customers());
    let source = make.make(fixture).await;

    let (read, mut malformed) = split(walk(&*source, CustomerQuery::All, 8).await);

    assert_eq!(read, expected, "every valid customer is read");
    malformed.sort();
    let ids: Vec<Option<&str>> = malformed.iter().map(|(id, _, _)| id.as_deref()).collect();
    assert_eq!(
        ids,
        [
            None,
            Some("customer-malformed"),
            Some("customer-malformed-last")
        ],
        "each malformed record once, with its id when it has a readable one"
    );
    for (id, position, reason) in &malformed {
        assert!(
            !position.trim().is_empty(),
            "the malformed record {id:?} has a position"
        );
        assert!(
            !reason.trim().is_empty(),
            "the malformed record {id:?} has a reason"
        );
    }
}

/// A source that cannot answer by id says so with an error, never `Ok(None)`,
/// which would claim the customer does not exist.
async fn refuses_by_id(source: &dyn CustomerSource, id: &str) {
    let answer = within("customer_by_id", source.customer_by_id(id)).await;
    assert!(
        answer.is_err(),
        "capabilities say by_id is false, so customer_by_id({id:?}) must fail, not answer {answer:?}"
    );
}

/// A customer is found by its id, as held (a source whose capabilities say it
/// cannot answer by id fails instead).
pub async fn customers_are_found_by_id(make: &impl SourceFactory) {
    let mut records = customers(5);
    records.insert(2, MALFORMED_WITH_ID.to_owned());
    let wanted = [
        parsed(&records[0]),
        parsed(&records[3]),
        parsed(&records[5]),
    ];
    let source = make
        .make(SourceFixture {
            records,
            page_size: 2,
        })
        .await;

    for customer in wanted {
        if !source.capabilities().by_id {
            refuses_by_id(&*source, &customer.id).await;
            continue;
        }
        let found = within("customer_by_id", source.customer_by_id(&customer.id)).await;
        assert_eq!(
            ok("customer_by_id", found).as_ref(),
            Some(&customer),
            "{} as held",
            customer.id
        );
    }
}

/// An id that no customer has is `Ok(None)`, not an error (a source whose
/// capabilities say it cannot answer by id fails instead).
pub async fn an_unknown_id_is_none(make: &impl SourceFactory) {
    let source = make
        .make(SourceFixture {
            records: customers(3),
            page_size: 2,
        })
        .await;

    for unknown in ["customer-999", "no-such-customer"] {
        if !source.capabilities().by_id {
            refuses_by_id(&*source, unknown).await;
            continue;
        }
        let found = within("customer_by_id", source.customer_by_id(unknown)).await;
        assert_eq!(ok("customer_by_id", found), None, "{unknown}");
    }
}

/// `ChangedSince(t)` yields exactly the customers whose `lastModifiedAt` is at or
/// after `t` (to the millisecond, whatever `t`'s offset), over several pages; a
/// `t` after every change yields no page.
pub async fn changed_since_selects_customers_modified_at_or_after_it(make: &impl SourceFactory) {
    let records = vec![
        customer(0, "2023-01-01T00:00:00.000Z"),
        customer(1, "2024-05-01T10:00:00.000Z"),
        customer(2, "2024-05-01T09:59:59.999Z"),
        customer(3, "2024-06-01T00:00:00.000Z"),
        customer(4, "2024-05-01T10:00:00.001Z"),
        customer(5, "2024-05-02T00:00:00.000Z"),
    ];
    let wanted = sorted([1, 3, 4, 5].map(|i| parsed(&records[i])).to_vec());
    let source = make
        .make(SourceFixture {
            records,
            page_size: 2,
        })
        .await;
    // 10:00 UTC, said in another offset.
    let since = CustomerQuery::ChangedSince(datetime!(2024-05-01 12:00:00 +02:00));

    let (read, malformed) = split(walk(&*source, since, 6).await);

    let ids = |customers: &[Customer]| -> Vec<String> {
        customers.iter().map(|c| c.id.clone()).collect()
    };
    assert_eq!(
        ids(&read),
        ids(&wanted),
        "modified at or after 10:00:00.000 UTC"
    );
    assert_eq!(read, wanted, "as held");
    assert!(malformed.is_empty());

    let after_everything = CustomerQuery::ChangedSince(datetime!(2025-01-01 00:00 UTC));
    assert!(
        walk(&*source, after_everything, 0).await.is_empty(),
        "nothing changed since 2025"
    );
}
