//! The customers a fake commercetools serves, always in `sort=id asc` order:
//! either a list a test gave (and may change), or generated customers made on
//! request from a sorted index of their id keys.

use std::borrow::Cow;
use std::sync::{Mutex, MutexGuard};

use serde_json::{json, Value};

use super::predicate::Predicate;
use crate::customers::timestamp_now;
use crate::generate;
use crate::lock;

/// Where the customers come from.
pub(super) enum Population {
    /// A test's customers, kept sorted by id.
    Listed(Mutex<Vec<Entry>>),
    /// Generated customers, made when a page asks for them.
    Generated(Generated),
}

/// One listed customer, serialised once.
pub(super) struct Entry {
    id: String,
    last_modified_at: Option<String>,
    json: String,
}

impl Entry {
    fn of(customer: &Value) -> Self {
        Self {
            id: customer["id"].as_str().unwrap_or_default().to_owned(),
            last_modified_at: customer["lastModifiedAt"].as_str().map(str::to_owned),
            json: customer.to_string(),
        }
    }
}

/// `count` generated customers of `seed`.
pub(super) struct Generated {
    seed: u64,
    count: u64,
    /// The [`generate::sort_key`] of every index, sorted: row `n` of the id
    /// order is the index whose key is `keys[n]`.
    keys: Vec<u32>,
}

/// What one `GET /{project}/customers` asks for.
pub(super) struct PageQuery {
    pub(super) predicate: Predicate,
    pub(super) limit: usize,
    pub(super) offset: usize,
    pub(super) with_total: bool,
}

/// Rows in id order, however they are stored.
trait Rows {
    fn len(&self) -> usize;
    fn id(&self, row: usize) -> Cow<'_, str>;
    fn last_modified_at(&self, row: usize) -> Option<Cow<'_, str>>;
    fn write(&self, row: usize, out: &mut Vec<u8>);
}

impl Rows for [Entry] {
    fn len(&self) -> usize {
        <[Entry]>::len(self)
    }

    fn id(&self, row: usize) -> Cow<'_, str> {
        Cow::Borrowed(&self[row].id)
    }

    fn last_modified_at(&self, row: usize) -> Option<Cow<'_, str>> {
        self[row].last_modified_at.as_deref().map(Cow::Borrowed)
    }

    fn write(&self, row: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(self[row].json.as_bytes());
    }
}

impl Generated {
    fn index(&self, row: usize) -> u64 {
        generate::index_of_key(self.seed, self.keys[row])
    }
}

impl Rows for Generated {
    fn len(&self) -> usize {
        self.keys.len()
    }

    fn id(&self, row: usize) -> Cow<'_, str> {
        Cow::Owned(generate::customer_id(self.seed, self.index(row)))
    }

    fn last_modified_at(&self, row: usize) -> Option<Cow<'_, str>> {
        Some(Cow::Owned(generate::last_modified_at(
            self.seed,
            self.index(row),
        )))
    }

    fn write(&self, row: usize, out: &mut Vec<u8>) {
        generate::write_customer(self.seed, self.index(row), out);
    }
}

impl Population {
    pub(super) fn listed(customers: Vec<Value>) -> Self {
        let mut entries: Vec<Entry> = customers.iter().map(Entry::of).collect();
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        Self::Listed(Mutex::new(entries))
    }

    pub(super) fn generated(count: u64, seed: u64) -> Self {
        let mut keys: Vec<u32> = (0..count)
            .map(|index| generate::sort_key(seed, index))
            .collect();
        keys.sort_unstable();
        Self::Generated(Generated { seed, count, keys })
    }

    /// The body of a query answer, as commercetools shapes it.
    pub(super) fn page(&self, query: &PageQuery) -> Vec<u8> {
        match self {
            Self::Listed(entries) => page(lock(entries).as_slice(), query),
            Self::Generated(generated) => page(generated, query),
        }
    }

    /// One customer's JSON, if there is a customer with that id.
    pub(super) fn by_id(&self, id: &str) -> Option<Vec<u8>> {
        match self {
            Self::Listed(entries) => {
                let entries = lock(entries);
                let row = find(&entries, id)?;
                Some(entries[row].json.clone().into_bytes())
            }
            Self::Generated(generated) => {
                let index = generate::index_of(generated.seed, id)?;
                (index < generated.count).then(|| {
                    let mut out = Vec::with_capacity(2048);
                    generate::write_customer(generated.seed, index, &mut out);
                    out
                })
            }
        }
    }

    /// The listed customers, for changing them; generated ones cannot change.
    fn entries(&self) -> MutexGuard<'_, Vec<Entry>> {
        match self {
            Self::Listed(entries) => lock(entries),
            Self::Generated(_) => panic!("generated customers cannot be changed; list them"),
        }
    }

    /// Applies `change` to the customer, then bumps its `version` and sets its
    /// `lastModifiedAt` to now, as commercetools does on every update.
    pub(super) fn update(&self, id: &str, change: impl FnOnce(&mut Value)) {
        let mut entries = self.entries();
        let row = find(&entries, id).unwrap_or_else(|| panic!("no customer {id:?}"));
        let mut customer: Value =
            serde_json::from_str(&entries[row].json).expect("a listed customer is JSON");
        change(&mut customer);
        customer["version"] = json!(customer["version"].as_i64().unwrap_or(0) + 1);
        customer["lastModifiedAt"] = json!(timestamp_now());
        entries.remove(row);
        insert(&mut entries, Entry::of(&customer));
    }

    /// Adds a customer, or replaces the one with its id.
    pub(super) fn put(&self, customer: &Value) {
        let entry = Entry::of(customer);
        let mut entries = self.entries();
        if let Some(row) = find(&entries, &entry.id) {
            entries.remove(row);
        }
        insert(&mut entries, entry);
    }

    /// Adds a record served as is, in `id` order: anything that is not a valid
    /// customer, for tests of what a walk does with one.
    pub(super) fn put_raw(&self, id: &str, text: &str) {
        let last_modified_at = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v["lastModifiedAt"].as_str().map(str::to_owned));
        let mut entries = self.entries();
        insert(
            &mut entries,
            Entry {
                id: id.to_owned(),
                last_modified_at,
                json: text.to_owned(),
            },
        );
    }

    /// Removes the customer; whether there was one.
    pub(super) fn remove(&self, id: &str) -> bool {
        let mut entries = self.entries();
        match find(&entries, id) {
            Some(row) => {
                entries.remove(row);
                true
            }
            None => false,
        }
    }
}

fn find(entries: &[Entry], id: &str) -> Option<usize> {
    entries.binary_search_by(|e| e.id.as_str().cmp(id)).ok()
}

fn insert(entries: &mut Vec<Entry>, entry: Entry) {
    let at = entries.partition_point(|e| e.id <= entry.id);
    entries.insert(at, entry);
}

/// The first row in `rows` for which `before` is false; `before` must be true
/// for a prefix of the rows and false after it.
fn partition_point(rows: std::ops::Range<usize>, before: impl Fn(usize) -> bool) -> usize {
    let (mut low, mut high) = (rows.start, rows.end);
    while low < high {
        let middle = low + (high - low) / 2;
        if before(middle) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    low
}

fn page<R: Rows + ?Sized>(rows: &R, query: &PageQuery) -> Vec<u8> {
    let range = query.predicate.id_range();
    let start = partition_point(0..rows.len(), |row| !range.above_lower(&rows.id(row)));
    let end = partition_point(start..rows.len(), |row| range.below_upper(&rows.id(row)));
    let filtered = query.predicate.filters_beyond_id();
    let matches = |row: usize| {
        !filtered
            || query
                .predicate
                .matches(&rows.id(row), rows.last_modified_at(row).as_deref())
    };

    let mut results = Vec::with_capacity(query.limit.min(end - start) * 2048);
    let mut count = 0;
    let mut matched = 0;
    let mut row = start;
    while row < end && count < query.limit {
        if matches(row) {
            if matched >= query.offset {
                if count > 0 {
                    results.push(b',');
                }
                rows.write(row, &mut results);
                count += 1;
            }
            matched += 1;
        }
        row += 1;
    }
    let total = query.with_total.then(|| {
        if filtered {
            matched + (row..end).filter(|&r| matches(r)).count()
        } else {
            end - start
        }
    });

    let mut body = Vec::with_capacity(results.len() + 96);
    body.extend_from_slice(
        format!(
            r#"{{"limit":{},"offset":{},"count":{count},"#,
            query.limit, query.offset
        )
        .as_bytes(),
    );
    if let Some(total) = total {
        body.extend_from_slice(format!(r#""total":{total},"#).as_bytes());
    }
    body.extend_from_slice(br#""results":["#);
    body.extend_from_slice(&results);
    body.extend_from_slice(b"]}");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(predicate: &str, limit: usize) -> PageQuery {
        PageQuery {
            predicate: Predicate::parse(predicate).unwrap(),
            limit,
            offset: 0,
            with_total: false,
        }
    }

    fn ids(body: &[u8]) -> Vec<String> {
        let page: Value = serde_json::from_slice(body).unwrap();
        page["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    }

    fn listed(ids: &[&str]) -> Population {
        Population::listed(
            ids.iter()
                .map(|id| json!({"id": id, "version": 1, "lastModifiedAt": "2024-05-01T10:00:00.000Z"}))
                .collect(),
        )
    }

    #[test]
    fn listed_customers_are_served_in_id_order_within_the_range() {
        let population = listed(&["c", "a", "e", "b", "d"]);
        assert_eq!(
            ids(&population.page(&query("", 10))),
            ["a", "b", "c", "d", "e"]
        );
        assert_eq!(ids(&population.page(&query(r#"id > "b""#, 2))), ["c", "d"]);
        assert_eq!(
            ids(&population.page(&query(r#"id >= "b" and id < "d""#, 10))),
            ["b", "c"]
        );
        assert!(ids(&population.page(&query(r#"id > "e""#, 10))).is_empty());
    }

    #[test]
    fn offset_and_total_are_counted_over_the_matches() {
        let population = listed(&["a", "b", "c", "d", "e"]);
        let mut paged = query(r#"id > "a""#, 2);
        paged.offset = 1;
        paged.with_total = true;
        let body = population.page(&paged);
        let page: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(ids(&body), ["c", "d"]);
        assert_eq!(
            (page["count"].as_u64(), page["total"].as_u64()),
            (Some(2), Some(4))
        );
        assert_eq!(
            (page["limit"].as_u64(), page["offset"].as_u64()),
            (Some(2), Some(1))
        );
        let without: Value = serde_json::from_slice(&population.page(&query("", 1))).unwrap();
        assert!(without.get("total").is_none());
    }

    #[test]
    fn updates_bump_version_and_last_modified_and_keep_the_order() {
        let population = listed(&["a", "b"]);
        population.update("a", |c| c["email"] = json!("new@example.com"));
        let a: Value = serde_json::from_slice(&population.by_id("a").unwrap()).unwrap();
        assert_eq!(a["version"], 2);
        assert_eq!(a["email"], "new@example.com");
        assert!(a["lastModifiedAt"].as_str().unwrap() > "2024-05-01T10:00:00.000Z");
        let since = query(r#"lastModifiedAt >= "2025-01-01T00:00:00.000Z""#, 10);
        assert_eq!(ids(&population.page(&since)), ["a"]);

        population.put(&json!({"id": "0", "version": 1}));
        population.put_raw("aa", r#"{"id":"aa","version":"two"}"#);
        assert!(population.remove("b"));
        assert!(!population.remove("b"));
        assert_eq!(ids(&population.page(&query("", 10))), ["0", "a", "aa"]);
        assert_eq!(population.by_id("b"), None);
    }

    #[test]
    fn generated_customers_answer_ranges_and_cursors_in_id_order() {
        let population = Population::generated(3_000, 4);
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let predicate = cursor
                .as_ref()
                .map_or(String::new(), |last| format!(r#"id > "{last}""#));
            let page = ids(&population.page(&query(&predicate, 500)));
            all.extend(page.iter().cloned());
            cursor = page.last().cloned();
            if page.len() < 500 {
                break;
            }
        }
        assert_eq!(all.len(), 3_000);
        assert!(all.windows(2).all(|pair| pair[0] < pair[1]));

        let mut by_range = 0;
        for (low, high) in [("", "4"), ("4", "8"), ("8", "c"), ("c", "")] {
            let mut terms = Vec::new();
            if !low.is_empty() {
                terms.push(format!(r#"id >= "{low}""#));
            }
            if !high.is_empty() {
                terms.push(format!(r#"id < "{high}""#));
            }
            let part = ids(&population.page(&query(&terms.join(" and "), 3_000)));
            assert!(
                (600..=900).contains(&part.len()),
                "{} in [{low}, {high})",
                part.len()
            );
            by_range += part.len();
        }
        assert_eq!(by_range, 3_000, "the ranges split the customers");

        let id = generate::customer_id(4, 17);
        let one: Value = serde_json::from_slice(&population.by_id(&id).unwrap()).unwrap();
        assert_eq!(one, generate::customer(4, 17));
        assert_eq!(population.by_id(&generate::customer_id(4, 3_000)), None);
        assert_eq!(population.by_id("nope"), None);
    }

    #[test]
    fn generated_customers_filter_on_last_modified() {
        let population = Population::generated(400, 4);
        let since = "2023-06-01T00:00:00.000Z";
        let expected = (0..400)
            .filter(|&i| generate::last_modified_at(4, i).as_str() >= since)
            .count();
        let mut counted = query(&format!(r#"lastModifiedAt >= "{since}""#), 500);
        counted.with_total = true;
        let page: Value = serde_json::from_slice(&population.page(&counted)).unwrap();
        assert!(expected > 0 && expected < 400, "{expected}");
        assert_eq!(page["count"].as_u64(), Some(expected as u64));
        assert_eq!(page["total"].as_u64(), Some(expected as u64));
    }
}
