//! Dead letters: one per customer, listed by when each was last recorded (a
//! sequence, so that writers on several hosts agree on the order). They are
//! added by the settlement statement (see `customers`).

use std::collections::HashMap;

use deadpool_postgres::ClientWrapper;
use segment_sync_domain::sync::DeadLetter;
use segment_sync_ports::{DeadLetterCursor, StoredDeadLetter};

use super::failure::Failure;
use crate::state_values;

const PAGE: &str = "
SELECT customer_id, kind, code, reason, payload, fingerprint, version, attempts, recorded_at, seq
FROM dead_letters WHERE seq > $1 ORDER BY seq LIMIT $2";

const COUNT: &str = "SELECT COUNT(*) FROM dead_letters";

const PURGE: &str =
    "DELETE FROM dead_letters WHERE recorded_at::timestamptz < $1::text::timestamptz";

const REMOVE: &str = "DELETE FROM dead_letters WHERE customer_id = ANY($1::text[])";

pub(super) async fn page(
    client: &ClientWrapper,
    after: Option<DeadLetterCursor>,
    limit: usize,
) -> Result<Vec<StoredDeadLetter>, Failure> {
    let statement = client.prepare_cached(PAGE).await?;
    let after = after.map_or(i64::MIN, |cursor| cursor.0);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = client.query(&statement, &[&after, &limit]).await?;
    rows.into_iter()
        .map(|row| {
            let kind: &str = row.try_get(1)?;
            let attempts: i64 = row.try_get(7)?;
            Ok(StoredDeadLetter {
                cursor: DeadLetterCursor(row.try_get(9)?),
                letter: DeadLetter {
                    customer_id: row.try_get(0)?,
                    kind: state_values::dead_letter_kind(kind)?,
                    code: row.try_get(2)?,
                    reason: row.try_get(3)?,
                    payload: row.try_get(4)?,
                    fingerprint: row.try_get(5)?,
                    version: row.try_get(6)?,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    recorded_at: row.try_get(8)?,
                },
            })
        })
        .collect()
}

pub(super) async fn count(client: &ClientWrapper) -> Result<u64, Failure> {
    let statement = client.prepare_cached(COUNT).await?;
    let n: i64 = client.query_one(&statement, &[]).await?.try_get(0)?;
    Ok(state_values::to_u64(n, "dead letter count")?)
}

/// Removes the letters recorded before `before` (RFC 3339), comparing instants.
pub(super) async fn purge(client: &ClientWrapper, before: &str) -> Result<u64, Failure> {
    let statement = client.prepare_cached(PURGE).await?;
    Ok(client.execute(&statement, &[&before]).await?)
}

pub(super) async fn remove(client: &ClientWrapper, ids: &[String]) -> Result<(), Failure> {
    let statement = client.prepare_cached(REMOVE).await?;
    client.execute(&statement, &[&ids]).await?;
    Ok(())
}

/// Dead letters as one array per column, in the order given; of several letters
/// of one customer, the last given counts, in its place.
pub(super) struct LetterColumns<'a> {
    pub(super) ids: Vec<&'a str>,
    pub(super) kinds: Vec<&'static str>,
    pub(super) codes: Vec<&'a str>,
    pub(super) reasons: Vec<&'a str>,
    pub(super) payloads: Vec<Option<&'a str>>,
    pub(super) fingerprints: Vec<Option<&'a str>>,
    pub(super) versions: Vec<Option<i64>>,
    pub(super) attempts: Vec<i64>,
    pub(super) recorded_at: Vec<&'a str>,
}

impl<'a> LetterColumns<'a> {
    pub(super) fn of(letters: &'a [DeadLetter]) -> Self {
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(letters.len());
        for (i, letter) in letters.iter().enumerate() {
            last.insert(&letter.customer_id, i);
        }
        let kept = letters
            .iter()
            .enumerate()
            .filter(|(i, letter)| last.get(letter.customer_id.as_str()) == Some(i))
            .map(|(_, letter)| letter);
        let mut columns = Self {
            ids: Vec::with_capacity(last.len()),
            kinds: Vec::with_capacity(last.len()),
            codes: Vec::with_capacity(last.len()),
            reasons: Vec::with_capacity(last.len()),
            payloads: Vec::with_capacity(last.len()),
            fingerprints: Vec::with_capacity(last.len()),
            versions: Vec::with_capacity(last.len()),
            attempts: Vec::with_capacity(last.len()),
            recorded_at: Vec::with_capacity(last.len()),
        };
        for letter in kept {
            columns.ids.push(&letter.customer_id);
            columns.kinds.push(letter.kind.as_str());
            columns.codes.push(&letter.code);
            columns.reasons.push(&letter.reason);
            columns.payloads.push(letter.payload.as_deref());
            columns.fingerprints.push(letter.fingerprint.as_deref());
            columns.versions.push(letter.version);
            columns.attempts.push(i64::from(letter.attempts));
            columns.recorded_at.push(&letter.recorded_at);
        }
        columns
    }
}

#[cfg(test)]
mod tests {
    use segment_sync_domain::sync::DeadLetterKind;

    use super::*;

    #[test]
    fn of_several_letters_of_a_customer_the_last_counts_in_its_place() {
        let letter = |id: &str, reason: &str| DeadLetter {
            customer_id: id.to_owned(),
            kind: DeadLetterKind::Failed,
            code: "x".to_owned(),
            reason: reason.to_owned(),
            payload: None,
            fingerprint: None,
            version: None,
            attempts: 1,
            recorded_at: "2024-05-01T10:00:00Z".to_owned(),
        };
        let letters = [
            letter("a", "first"),
            letter("b", "b"),
            letter("a", "second"),
        ];
        let columns = LetterColumns::of(&letters);
        assert_eq!(columns.ids, ["b", "a"]);
        assert_eq!(columns.reasons, ["b", "second"]);
    }
}
