//! The walk over a customer query: `sort=id asc`, an `id > "<last id>"` cursor,
//! and the next page always in flight while the caller handles the current one.

use std::sync::Arc;

use async_trait::async_trait;
use segment_sync_ports::{CustomerPages, CustomerQuery, Page, SourceError, SourceRecord};
use serde::Deserialize;
use serde_json::value::RawValue;
use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};
use tokio::task::JoinHandle;

use super::source::Client;

/// RFC 3339 in UTC with milliseconds, as commercetools writes its own timestamps.
const PREDICATE_TIME: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// The pages of one customer query, fetched one page ahead.
pub(crate) struct ApiPages {
    client: Arc<Client>,
    query: CustomerQuery,
    pages_requested: u64,
    next: Option<PageFetch>,
}

/// A page request running on its own task. Dropping the walk cancels it.
struct PageFetch(JoinHandle<Result<FetchedPage, SourceError>>);

impl Drop for PageFetch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A page as read, with what the walk needs to go on.
struct FetchedPage {
    page: Page,
    received: usize,
    last_id: Option<String>,
}

impl ApiPages {
    /// Starts the walk: the first page is requested at once.
    pub(crate) fn start(client: Arc<Client>, query: CustomerQuery) -> Self {
        let mut pages = Self {
            client,
            query,
            pages_requested: 0,
            next: None,
        };
        pages.next = Some(pages.request(None));
        pages
    }

    fn request(&mut self, after: Option<String>) -> PageFetch {
        self.pages_requested += 1;
        let client = Arc::clone(&self.client);
        let query = self.query;
        let page_number = self.pages_requested;
        PageFetch(tokio::spawn(async move {
            fetch_page(&client, query, after.as_deref(), page_number).await
        }))
    }
}

#[async_trait]
impl CustomerPages for ApiPages {
    async fn next_page(&mut self) -> Result<Option<Page>, SourceError> {
        let Some(mut fetch) = self.next.take() else {
            return Ok(None);
        };
        let fetched = (&mut fetch.0)
            .await
            .map_err(|e| SourceError::Protocol(format!("customer page request stopped: {e}")))??;
        if fetched.received == 0 {
            return Ok(None);
        }
        // A short page is the last one: commercetools has nothing after it.
        if fetched.received >= self.client.page_size as usize {
            let Some(last_id) = fetched.last_id else {
                return Err(SourceError::Protocol(
                    "a full customer page without any id; the walk cannot go on".to_owned(),
                ));
            };
            self.next = Some(self.request(Some(last_id)));
        }
        Ok(Some(fetched.page))
    }
}

async fn fetch_page(
    client: &Client,
    query: CustomerQuery,
    after: Option<&str>,
    page_number: u64,
) -> Result<FetchedPage, SourceError> {
    let limit = client.page_size.to_string();
    let predicate = where_predicate(query, after);
    let answer = client
        .send("customer query", |http| {
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
    let fetched = parse_page(&answer.body, page_number)?;
    tracing::debug!(
        page = page_number,
        customers = fetched.received,
        "read a commercetools customer page"
    );
    Ok(fetched)
}

/// The body of a query answer; each result is kept raw so that one customer
/// that does not deserialize costs only itself.
#[derive(Deserialize)]
struct QueryResults<'a> {
    #[serde(borrow)]
    results: Vec<&'a RawValue>,
}

fn parse_page(body: &[u8], page_number: u64) -> Result<FetchedPage, SourceError> {
    let parsed: QueryResults<'_> = serde_json::from_slice(body).map_err(|e| {
        SourceError::Protocol(format!(
            "customer page {page_number} is not a query result: {e}"
        ))
    })?;
    let mut last_id = None;
    let records = parsed
        .results
        .iter()
        .enumerate()
        .map(|(index, raw)| {
            let malformed = |reason: String, customer_id: Option<String>| SourceRecord::Malformed {
                position: format!("page {page_number} index {index}"),
                customer_id,
                reason,
            };
            match crate::record::parse_customer(raw.get()) {
                Ok(customer) if customer.id.is_empty() => {
                    malformed("customer has no id".to_owned(), None)
                }
                Ok(customer) => {
                    last_id = Some(customer.id.clone());
                    SourceRecord::Customer(Box::new(customer))
                }
                Err(reason) => {
                    let id = crate::record::customer_id_of(raw.get());
                    if id.is_some() {
                        last_id.clone_from(&id);
                    }
                    malformed(reason, id)
                }
            }
        })
        .collect();
    Ok(FetchedPage {
        page: Page { records },
        received: parsed.results.len(),
        last_id,
    })
}

/// The `where` parameter for a page of `query` after the customer `after`.
fn where_predicate(query: CustomerQuery, after: Option<&str>) -> Option<String> {
    let changed = match query {
        CustomerQuery::All => None,
        CustomerQuery::ChangedSince(since) => Some(changed_since_predicate(since)),
    };
    let cursor = after.map(id_after_predicate);
    match (changed, cursor) {
        (Some(changed), Some(cursor)) => Some(format!("{changed} and {cursor}")),
        (changed, cursor) => changed.or(cursor),
    }
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

/// `id > "<id>"`, the id escaped as a predicate string literal.
fn id_after_predicate(id: &str) -> String {
    let escaped = id.replace('\\', "\\\\").replace('"', "\\\"");
    format!("id > \"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_first_page_of_all_customers_has_no_predicate() {
        assert_eq!(where_predicate(CustomerQuery::All, None), None);
        assert_eq!(
            where_predicate(CustomerQuery::All, Some("abc")).as_deref(),
            Some(r#"id > "abc""#)
        );
    }

    #[test]
    fn changed_since_is_utc_with_milliseconds_and_joined_with_the_cursor() {
        let since = CustomerQuery::ChangedSince(datetime!(2024-05-01 12:30:05.5 +02:00));
        assert_eq!(
            where_predicate(since, None).as_deref(),
            Some(r#"lastModifiedAt >= "2024-05-01T10:30:05.500Z""#)
        );
        assert_eq!(
            where_predicate(since, Some("c-9")).as_deref(),
            Some(r#"lastModifiedAt >= "2024-05-01T10:30:05.500Z" and id > "c-9""#)
        );
    }

    #[test]
    fn quotes_in_an_id_cannot_end_the_literal() {
        assert_eq!(id_after_predicate(r#"a"b\c"#), r#"id > "a\"b\\c""#);
    }

    #[test]
    fn one_bad_customer_costs_only_itself_and_still_moves_the_cursor() {
        let body = br#"{"limit":3,"count":3,"results":[
            {"id":"a","version":1},
            {"id":"b","version":"two"},
            {"version":3}
        ]}"#;
        let fetched = parse_page(body, 2).unwrap();
        assert_eq!(fetched.received, 3);
        assert_eq!(fetched.last_id.as_deref(), Some("b"));
        assert!(matches!(&fetched.page.records[0], SourceRecord::Customer(c) if c.id == "a"));
        assert!(matches!(
            &fetched.page.records[1],
            SourceRecord::Malformed { position, .. } if position == "page 2 index 1"
        ));
        assert!(matches!(
            &fetched.page.records[2],
            SourceRecord::Malformed { reason, .. } if reason == "customer has no id"
        ));
    }
}
