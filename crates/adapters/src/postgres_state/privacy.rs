//! Forgetting customers, and the deletions asked of Segment on their behalf.
//!
//! Forgetting is one statement: the deliveries and dead letters go and the
//! deletions are queued together, or not at all.

use std::collections::HashMap;

use deadpool_postgres::ClientWrapper;
use segment_sync_ports::{DeletionRecord, DeletionsSent, Forgotten, Subject};
use tokio_postgres::Row;

use super::failure::Failure;
use crate::state_values;

/// `$1` customer ids, `$2` userIds, `$3` the regulation type (or null: queue
/// nothing), `$4` when. A dead letter's `userId` is found in its payload as the
/// identify message writes it (`"userId":"…"`), without parsing the payload, so
/// that no stored text can make the statement fail.
const FORGET: &str = r#"
WITH erased_deliveries AS (
    DELETE FROM deliveries
    WHERE customer_id = ANY($1::text[]) OR user_id = ANY($2::text[])
    RETURNING customer_id, user_id
), payload_user_ids AS (
    SELECT u.user_id, '"userId":' || to_jsonb(u.user_id)::text AS needle
    FROM unnest($2::text[]) AS u(user_id)
), erased_letters AS (
    DELETE FROM dead_letters l
    WHERE l.customer_id = ANY($1::text[])
       OR l.customer_id IN (SELECT customer_id FROM deliveries WHERE user_id = ANY($2::text[]))
       OR EXISTS (SELECT 1 FROM payload_user_ids p WHERE strpos(l.payload, p.needle) > 0)
    RETURNING l.customer_id,
              (SELECT p.user_id FROM payload_user_ids p WHERE strpos(l.payload, p.needle) > 0 LIMIT 1)
), queued AS (
    INSERT INTO deletions (subject, regulation_type, requested_at)
    SELECT DISTINCT d.user_id, $3::text, $4::text FROM erased_deliveries d
    WHERE $3::text IS NOT NULL AND d.user_id <> ''
      AND NOT EXISTS (SELECT 1 FROM deletions q
                      WHERE q.subject = d.user_id AND q.regulation_type = $3::text
                        AND q.sent_at IS NULL)
    RETURNING subject
)
SELECT 'delivery', customer_id, user_id FROM erased_deliveries
UNION ALL SELECT 'letter', customer_id, user_id FROM erased_letters
UNION ALL SELECT 'queued', NULL, subject FROM queued"#;

const COLUMNS: &str = "id, subject, regulation_type, requested_at, regulation_id, sent_at, status";

const SENT: &str = "
UPDATE deletions SET regulation_id = $2, sent_at = $3, status = $4
WHERE id = ANY($1::bigint[]) AND sent_at IS NULL";

const SET_STATUS: &str = "UPDATE deletions SET status = $2 WHERE regulation_id = $1";

const REGULATED_SINCE: &str = "
SELECT COUNT(*) FROM deletions
WHERE regulation_id IS NOT NULL AND sent_at::timestamptz >= $1::text::timestamptz";

const IMPORT: &str = "
INSERT INTO deletions (subject, regulation_type, requested_at, regulation_id, sent_at, status)
SELECT subject, regulation_type, requested_at, regulation_id, sent_at, status
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
WITH ORDINALITY AS d(subject, regulation_type, requested_at, regulation_id, sent_at, status, n)
ORDER BY n";

pub(super) async fn forget(
    client: &ClientWrapper,
    subjects: &[Subject],
    regulation_type: Option<&str>,
    at: &str,
) -> Result<Vec<Forgotten>, Failure> {
    let mut customer_ids: Vec<&str> = Vec::new();
    let mut user_ids: Vec<&str> = Vec::new();
    for subject in subjects {
        match subject {
            Subject::CustomerId(id) => customer_ids.push(id),
            Subject::UserId(user_id) => user_ids.push(user_id),
        }
    }
    let statement = client.prepare_cached(FORGET).await?;
    let rows = client
        .query(
            &statement,
            &[&customer_ids, &user_ids, &regulation_type, &at],
        )
        .await?;
    answer(subjects, &rows)
}

/// What the statement erased and queued, told per subject.
fn answer(subjects: &[Subject], rows: &[Row]) -> Result<Vec<Forgotten>, Failure> {
    // Customer id -> userId of each delivery erased; dead letters erased per
    // customer id and per userId found in their payload; userIds queued.
    let mut deliveries: HashMap<String, String> = HashMap::new();
    let mut letters_of_customer: HashMap<String, u64> = HashMap::new();
    let mut letters_of_user: HashMap<String, Vec<String>> = HashMap::new();
    let mut queued: Vec<String> = Vec::new();
    for row in rows {
        let what: &str = row.try_get(0)?;
        let customer_id: Option<String> = row.try_get(1)?;
        let user_id: Option<String> = row.try_get(2)?;
        match (what, customer_id, user_id) {
            ("delivery", Some(customer_id), Some(user_id)) => {
                deliveries.insert(customer_id, user_id);
            }
            ("letter", Some(customer_id), user_id) => {
                *letters_of_customer.entry(customer_id.clone()).or_default() += 1;
                if let Some(user_id) = user_id {
                    letters_of_user
                        .entry(user_id)
                        .or_default()
                        .push(customer_id);
                }
            }
            ("queued", None, Some(user_id)) => queued.push(user_id),
            _ => return Err(Failure::Invalid(format!("unexpected row of {what}"))),
        }
    }
    let mut answers = Vec::with_capacity(subjects.len());
    for subject in subjects {
        let mut forgotten = Forgotten::default();
        match subject {
            Subject::CustomerId(id) => {
                if let Some(user_id) = deliveries.get(id) {
                    forgotten.user_ids.push(user_id.clone());
                }
                forgotten.dead_letters = letters_of_customer.remove(id).unwrap_or(0);
                if deliveries.contains_key(id) || forgotten.dead_letters > 0 {
                    forgotten.customer_ids.push(id.clone());
                }
            }
            Subject::UserId(user_id) => {
                let mut customers: Vec<String> = deliveries
                    .iter()
                    .filter(|(_, delivered_as)| *delivered_as == user_id)
                    .map(|(customer_id, _)| customer_id.clone())
                    .collect();
                customers.sort();
                if !customers.is_empty() {
                    forgotten.user_ids.push(user_id.clone());
                }
                for customer_id in letters_of_user.remove(user_id).unwrap_or_default() {
                    if !customers.contains(&customer_id) {
                        customers.push(customer_id);
                    }
                }
                for customer_id in &customers {
                    forgotten.dead_letters += letters_of_customer.remove(customer_id).unwrap_or(0);
                }
                forgotten.customer_ids = customers;
            }
        }
        forgotten.user_ids.retain(|user_id| !user_id.is_empty());
        for user_id in &forgotten.user_ids {
            if let Some(at) = queued.iter().position(|queued| queued == user_id) {
                queued.swap_remove(at);
                forgotten.queued += 1;
            }
        }
        answers.push(forgotten);
    }
    Ok(answers)
}

fn record(row: &Row) -> Result<DeletionRecord, Failure> {
    let requested_at: &str = row.try_get(3)?;
    let sent_at: Option<&str> = row.try_get(5)?;
    Ok(DeletionRecord {
        id: row.try_get(0)?,
        subject: row.try_get(1)?,
        regulation_type: row.try_get(2)?,
        requested_at: state_values::parse_rfc3339(requested_at, "deletion request time")?,
        regulation_id: row.try_get(4)?,
        sent_at: sent_at
            .map(|text| state_values::parse_rfc3339(text, "deletion sending time"))
            .transpose()?,
        status: row.try_get(6)?,
    })
}

pub(super) async fn queued(
    client: &ClientWrapper,
    limit: usize,
) -> Result<Vec<DeletionRecord>, Failure> {
    let sql = format!("SELECT {COLUMNS} FROM deletions WHERE sent_at IS NULL ORDER BY id LIMIT $1");
    let statement = client.prepare_cached(&sql).await?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = client.query(&statement, &[&limit]).await?;
    rows.iter().map(record).collect()
}

pub(super) async fn after(
    client: &ClientWrapper,
    after: Option<i64>,
    limit: usize,
) -> Result<Vec<DeletionRecord>, Failure> {
    let sql = format!("SELECT {COLUMNS} FROM deletions WHERE id > $1 ORDER BY id LIMIT $2");
    let statement = client.prepare_cached(&sql).await?;
    let after = after.unwrap_or(i64::MIN);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = client.query(&statement, &[&after, &limit]).await?;
    rows.iter().map(record).collect()
}

pub(super) async fn sent(client: &ClientWrapper, sent: &DeletionsSent<'_>) -> Result<(), Failure> {
    let at = state_values::rfc3339(sent.at)?;
    let statement = client.prepare_cached(SENT).await?;
    client
        .execute(
            &statement,
            &[&sent.ids, &sent.regulation_id, &at, &sent.status],
        )
        .await?;
    Ok(())
}

pub(super) async fn set_status(
    client: &ClientWrapper,
    regulation_id: &str,
    status: &str,
) -> Result<(), Failure> {
    let statement = client.prepare_cached(SET_STATUS).await?;
    client
        .execute(&statement, &[&regulation_id, &status])
        .await?;
    Ok(())
}

pub(super) async fn regulated_since(client: &ClientWrapper, since: &str) -> Result<u64, Failure> {
    let statement = client.prepare_cached(REGULATED_SINCE).await?;
    let n: i64 = client.query_one(&statement, &[&since]).await?.try_get(0)?;
    Ok(state_values::to_u64(n, "regulated users")?)
}

pub(super) async fn import(
    client: &ClientWrapper,
    deletions: &[DeletionRecord],
) -> Result<(), Failure> {
    let requested_at = deletions
        .iter()
        .map(|d| state_values::rfc3339(d.requested_at))
        .collect::<Result<Vec<_>, _>>()?;
    let sent_at = deletions
        .iter()
        .map(|d| d.sent_at.map(state_values::rfc3339).transpose())
        .collect::<Result<Vec<_>, _>>()?;
    let subjects: Vec<&str> = deletions.iter().map(|d| d.subject.as_str()).collect();
    let types: Vec<&str> = deletions
        .iter()
        .map(|d| d.regulation_type.as_str())
        .collect();
    let regulation_ids: Vec<Option<&str>> = deletions
        .iter()
        .map(|d| d.regulation_id.as_deref())
        .collect();
    let statuses: Vec<Option<&str>> = deletions.iter().map(|d| d.status.as_deref()).collect();
    let statement = client.prepare_cached(IMPORT).await?;
    client
        .execute(
            &statement,
            &[
                &subjects,
                &types,
                &requested_at,
                &regulation_ids,
                &sent_at,
                &statuses,
            ],
        )
        .await?;
    Ok(())
}
