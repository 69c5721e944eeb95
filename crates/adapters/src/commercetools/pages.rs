//! The walk over a customer query: the id space split into ranges, each walked
//! with `sort=id asc` and an `id > "<last id>"` cursor, their pages handed out in
//! the order they arrive.
//!
//! Every range keeps one page ahead: it asks for its next page once there is room
//! for it, and a walk has room for one page per range, at most [`PAGES_HELD`], in
//! flight or waiting, besides the one the caller has. A waiting page is kept as
//! the API's bytes, checked to be a query result, and read into customers only
//! when it is handed out: a page of customers takes several times the memory of
//! its JSON. With one range this is the single cursor, always one page ahead of
//! the caller.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use segment_sync_domain::walk::{id_ranges, IdRange};
use segment_sync_ports::{CustomerPages, CustomerQuery, Page, SourceError, SourceRecord};
use serde::Deserialize;
use serde_json::value::RawValue;
use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::source::Client;
use super::throttle::Throttle;

/// RFC 3339 in UTC with milliseconds, as commercetools writes its own timestamps.
const PREDICATE_TIME: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// The most pages a walk holds, in flight or waiting, whatever its number of
/// ranges: 16 pages of 500 customers are about 12 MB of JSON, and 16 requests of
/// 150 ms in flight bring 53,000 customers/s, more than the rest of a run takes.
/// More ranges than that still spread a skewed id space over more cursors.
const PAGES_HELD: usize = 16;

/// The pages of one customer query, read by one cursor per id range.
pub(crate) struct ApiPages {
    pages: mpsc::Receiver<Result<RawPage, SourceError>>,
    /// The cursors; dropping the walk stops them.
    cursors: JoinSet<()>,
    /// The first range that failed: reported once the others are read.
    failed: Option<SourceError>,
}

/// Where one cursor is: its range, and what it needs to ask for a page.
struct Cursor {
    client: Arc<Client>,
    throttle: Arc<Throttle>,
    query: CustomerQuery,
    range: IdRange,
    /// Which range, for logs and positions; `None` when there is only one.
    label: Option<usize>,
}

/// A page as the API sent it, checked to be a query result.
struct RawPage {
    body: Bytes,
    /// `page 3`, or `range 2 page 3`: where its records are.
    name: String,
}

/// What a cursor needs of a page to go on: how many records, and the last id.
struct Skimmed {
    received: usize,
    last_id: Option<String>,
}

impl ApiPages {
    /// Starts the walk: every range asks for its first page at once (as many at
    /// a time as the throttle lets through).
    pub(crate) fn start(client: Arc<Client>, query: CustomerQuery) -> Self {
        let ranges = id_ranges(client.concurrency);
        Self::over(client, query, ranges)
    }

    /// A walk with a single cursor over the whole id space, whatever the
    /// configured concurrency: for a look at the first page.
    pub(crate) fn single_cursor(client: Arc<Client>, query: CustomerQuery) -> Self {
        Self::over(client, query, vec![IdRange::everything()])
    }

    fn over(client: Arc<Client>, query: CustomerQuery, ranges: Vec<IdRange>) -> Self {
        let ceiling = u32::try_from(ranges.len()).unwrap_or(u32::MAX);
        let throttle = Arc::new(Throttle::new(ceiling.min(client.concurrency)));
        let (page_tx, pages) = mpsc::channel(ranges.len().min(PAGES_HELD));
        let single = ranges.len() == 1;
        let mut cursors = JoinSet::new();
        for (index, range) in ranges.into_iter().enumerate() {
            let cursor = Cursor {
                client: Arc::clone(&client),
                throttle: Arc::clone(&throttle),
                query,
                range,
                label: (!single).then_some(index + 1),
            };
            cursors.spawn(cursor.walk(page_tx.clone()));
        }
        Self {
            pages,
            cursors,
            failed: None,
        }
    }
}

impl Cursor {
    /// Reads the range page by page into `pages` until it ends, fails, or the
    /// walk is dropped.
    async fn walk(self, pages: mpsc::Sender<Result<RawPage, SourceError>>) {
        let mut after: Option<String> = None;
        let mut page_number = 0;
        // Room for the page is taken before it is asked for: memory is bounded
        // by the channel, not by how fast the API answers.
        while let Ok(room) = pages.reserve().await {
            page_number += 1;
            let (page, skimmed) = match self.fetch(after.as_deref(), page_number).await {
                Ok(fetched) => fetched,
                Err(error) => return room.send(Err(error)),
            };
            if skimmed.received == 0 {
                return;
            }
            // A short page is the range's last: commercetools has nothing after it.
            if skimmed.received < self.client.page_size as usize {
                return room.send(Ok(page));
            }
            let Some(last_id) = skimmed.last_id else {
                return room.send(Err(SourceError::Protocol(
                    "a full customer page without any id; the walk cannot go on".to_owned(),
                )));
            };
            room.send(Ok(page));
            after = Some(last_id);
        }
    }

    async fn fetch(
        &self,
        after: Option<&str>,
        page_number: u64,
    ) -> Result<(RawPage, Skimmed), SourceError> {
        let client = &self.client;
        let limit = client.page_size.to_string();
        let predicate = where_predicate(self.query, &self.range, after);
        let answer = client
            .send_paced("customer query", Some(&self.throttle), |http| {
                let mut params = vec![
                    ("limit", limit.as_str()),
                    ("withTotal", "false"),
                    ("sort", "id asc"),
                ];
                if let Some(predicate) = &predicate {
                    params.push(("where", predicate));
                }
                http.get(client.customers_url.clone()).query(&params)
            })
            .await?;
        if answer.status != 200 {
            return Err(answer.unexpected("customer query"));
        }
        let name = match self.label {
            Some(range) => format!("range {range} page {page_number}"),
            None => format!("page {page_number}"),
        };
        let skimmed = skim_page(&answer.body, &name)?;
        tracing::debug!(
            page = name,
            customers = skimmed.received,
            "read a commercetools customer page"
        );
        Ok((
            RawPage {
                body: answer.body,
                name,
            },
            skimmed,
        ))
    }
}

#[async_trait]
impl CustomerPages for ApiPages {
    /// The next page of any range. A range that fails does not stop the others:
    /// their pages are still handed out, and the walk ends with the failure
    /// instead of `None`. Credentials and scope, which no range gets past, end
    /// it at once.
    async fn next_page(&mut self) -> Result<Option<Page>, SourceError> {
        loop {
            match self.pages.recv().await {
                Some(Ok(raw)) => return Ok(Some(read_page(&raw.body, &raw.name)?)),
                Some(Err(error)) if error.is_fatal() => {
                    self.pages.close();
                    return Err(error);
                }
                Some(Err(error)) => {
                    tracing::warn!(
                        error = %error,
                        "an id range of the customer walk failed; reading the others"
                    );
                    self.failed.get_or_insert(error);
                }
                None => {
                    // Every cursor let go of the channel; one that panicked
                    // did not read its range, and the walk is not complete.
                    while let Some(ended) = self.cursors.join_next().await {
                        if let Err(stopped) = ended {
                            self.failed.get_or_insert(SourceError::Protocol(format!(
                                "customer page request stopped: {stopped}"
                            )));
                        }
                    }
                    return self.failed.take().map_or(Ok(None), Err);
                }
            }
        }
    }
}

/// The body of a query answer; each result is kept raw so that one customer
/// that does not deserialize costs only itself.
#[derive(Deserialize)]
struct QueryResults<'a> {
    #[serde(borrow)]
    results: Vec<&'a RawValue>,
}

fn query_results<'a>(body: &'a [u8], page: &str) -> Result<QueryResults<'a>, SourceError> {
    serde_json::from_slice(body)
        .map_err(|e| SourceError::Protocol(format!("customer {page} is not a query result: {e}")))
}

/// Just the id of a record.
#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

/// Checks that a query answer is a query result and finds what the cursor needs:
/// the number of records and the last non-empty id among them (the API sorts by
/// id, so it is the greatest, whether or not its record is a valid customer).
fn skim_page(body: &[u8], page: &str) -> Result<Skimmed, SourceError> {
    let parsed = query_results(body, page)?;
    let last_id = parsed.results.iter().rev().find_map(|raw| {
        serde_json::from_str::<IdOnly>(raw.get())
            .ok()
            .map(|record| record.id)
            .filter(|id| !id.is_empty())
    });
    Ok(Skimmed {
        received: parsed.results.len(),
        last_id,
    })
}

/// Reads a query answer into records; `page` names it in positions and errors.
fn read_page(body: &[u8], page: &str) -> Result<Page, SourceError> {
    let parsed = query_results(body, page)?;
    let records = parsed
        .results
        .iter()
        .enumerate()
        .map(|(index, raw)| {
            let malformed = |reason: String, customer_id: Option<String>| SourceRecord::Malformed {
                position: format!("{page} index {index}"),
                customer_id,
                reason,
            };
            match crate::record::parse_customer(raw.get()) {
                Ok(customer) if customer.id.is_empty() => {
                    malformed("customer has no id".to_owned(), None)
                }
                Ok(customer) => SourceRecord::Customer(Box::new(customer)),
                Err(reason) => malformed(reason, crate::record::customer_id_of(raw.get())),
            }
        })
        .collect();
    Ok(Page { records })
}

/// The `where` parameter for a page of `query` within `range` after the
/// customer `after`; once a cursor is past the range's lower bound, that bound
/// says nothing more.
fn where_predicate(query: CustomerQuery, range: &IdRange, after: Option<&str>) -> Option<String> {
    let mut terms = Vec::new();
    if let CustomerQuery::ChangedSince(since) = query {
        terms.push(changed_since_predicate(since));
    }
    match (after, range.low()) {
        (Some(after), _) => terms.push(id_predicate(">", after)),
        (None, Some(low)) => terms.push(id_predicate(">=", low)),
        (None, None) => {}
    }
    if let Some(high) = range.high() {
        terms.push(id_predicate("<", high));
    }
    (!terms.is_empty()).then(|| terms.join(" and "))
}

/// `lastModifiedAt >= "<since, UTC, milliseconds>"`.
fn changed_since_predicate(since: OffsetDateTime) -> String {
    let since = since.to_offset(UtcOffset::UTC);
    // Formatting a UTC instant with a fixed description cannot fail for years
    // 0..=9999; outside that range commercetools has nothing anyway.
    let at = since
        .format(PREDICATE_TIME)
        .unwrap_or_else(|_| "0000-01-01T00:00:00.000Z".to_owned());
    format!("lastModifiedAt >= \"{at}\"")
}

/// `id <op> "<id>"`, the id escaped as a predicate string literal.
fn id_predicate(op: &str, id: &str) -> String {
    let escaped = id.replace('\\', "\\\\").replace('"', "\\\"");
    format!("id {op} \"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_first_page_of_all_customers_has_no_predicate() {
        let all = IdRange::everything();
        assert_eq!(where_predicate(CustomerQuery::All, &all, None), None);
        assert_eq!(
            where_predicate(CustomerQuery::All, &all, Some("abc")).as_deref(),
            Some(r#"id > "abc""#)
        );
    }

    #[test]
    fn a_range_bounds_the_cursor_until_it_is_past_the_lower_bound() {
        let ranges = id_ranges(4);
        assert_eq!(
            where_predicate(CustomerQuery::All, &ranges[1], None).as_deref(),
            Some(r#"id >= "4" and id < "8""#)
        );
        assert_eq!(
            where_predicate(CustomerQuery::All, &ranges[1], Some("5f")).as_deref(),
            Some(r#"id > "5f" and id < "8""#)
        );
        assert_eq!(
            where_predicate(CustomerQuery::All, &ranges[0], None).as_deref(),
            Some(r#"id < "4""#)
        );
        assert_eq!(
            where_predicate(CustomerQuery::All, &ranges[3], None).as_deref(),
            Some(r#"id >= "c""#)
        );
    }

    #[test]
    fn changed_since_is_utc_with_milliseconds_and_joined_with_the_cursor() {
        let since = CustomerQuery::ChangedSince(datetime!(2024-05-01 12:30:05.5 +02:00));
        assert_eq!(
            where_predicate(since, &IdRange::everything(), None).as_deref(),
            Some(r#"lastModifiedAt >= "2024-05-01T10:30:05.500Z""#)
        );
        assert_eq!(
            where_predicate(since, &IdRange::everything(), Some("c-9")).as_deref(),
            Some(r#"lastModifiedAt >= "2024-05-01T10:30:05.500Z" and id > "c-9""#)
        );
        assert_eq!(
            where_predicate(since, &id_ranges(4)[2], Some("c-9")).as_deref(),
            Some(r#"lastModifiedAt >= "2024-05-01T10:30:05.500Z" and id > "c-9" and id < "c""#)
        );
    }

    #[test]
    fn quotes_in_an_id_cannot_end_the_literal() {
        assert_eq!(id_predicate(">", r#"a"b\c"#), r#"id > "a\"b\\c""#);
    }

    #[test]
    fn one_bad_customer_costs_only_itself_and_still_moves_the_cursor() {
        let body = br#"{"limit":3,"count":3,"results":[
            {"id":"a","version":1},
            {"id":"b","version":"two"},
            {"version":3}
        ]}"#;
        let skimmed = skim_page(body, "page 2").unwrap();
        assert_eq!(skimmed.received, 3);
        assert_eq!(skimmed.last_id.as_deref(), Some("b"));
        let page = read_page(body, "page 2").unwrap();
        assert!(matches!(&page.records[0], SourceRecord::Customer(c) if c.id == "a"));
        assert!(matches!(
            &page.records[1],
            SourceRecord::Malformed { position, .. } if position == "page 2 index 1"
        ));
        assert!(matches!(
            &page.records[2],
            SourceRecord::Malformed { reason, .. } if reason == "customer has no id"
        ));
    }
}
