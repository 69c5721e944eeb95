//! Forgetting customers, and the deletions asked of Segment on their behalf.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};
use segment_sync_ports::{DeletionRecord, DeletionsSent, Forgotten, Subject};

use super::rows::{parse_rfc3339, rfc3339, to_u64, Failure};

/// `(customer id, userId)` of the customers last delivered under each `userId`
/// asked for, in one pass over the deliveries (there is no index on `userId`:
/// forgetting by it is rare, and every sync would pay for one).
fn delivered_under(
    tx: &Transaction<'_>,
    user_ids: &[&str],
) -> Result<HashMap<String, Vec<String>>, Failure> {
    let mut found: HashMap<String, Vec<String>> = HashMap::new();
    if user_ids.is_empty() {
        return Ok(found);
    }
    let wanted = serde_json::to_string(user_ids).map_err(|e| Failure::Invalid(e.to_string()))?;
    let mut stmt = tx.prepare_cached(
        "SELECT customer_id, user_id FROM delivered
         WHERE user_id IN (SELECT value FROM json_each(?1))",
    )?;
    let mut rows = stmt.query([wanted])?;
    while let Some(row) = rows.next()? {
        found.entry(row.get(1)?).or_default().push(row.get(0)?);
    }
    Ok(found)
}

pub(super) fn forget(
    conn: &mut Connection,
    subjects: &[Subject],
    regulation_type: Option<&str>,
    at: &str,
) -> Result<Vec<Forgotten>, Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let user_ids: Vec<&str> = subjects
        .iter()
        .filter_map(|subject| match subject {
            Subject::UserId(user_id) => Some(user_id.as_str()),
            Subject::CustomerId(_) => None,
        })
        .collect();
    let mut under = delivered_under(&tx, &user_ids)?;
    let mut answers = Vec::with_capacity(subjects.len());
    for subject in subjects {
        let mut forgotten = Forgotten::default();
        match subject {
            Subject::CustomerId(id) => {
                let user_id: Option<String> = tx
                    .prepare_cached("SELECT user_id FROM delivered WHERE customer_id = ?1")?
                    .query_row([id], |row| row.get(0))
                    .optional()?;
                if let Some(user_id) = user_id {
                    erase_delivery(&tx, id)?;
                    forgotten.customer_ids.push(id.clone());
                    forgotten.user_ids.push(user_id);
                }
                let letters = tx
                    .prepare_cached("DELETE FROM dead_letters WHERE customer_id = ?1")?
                    .execute([id])?;
                if letters > 0 && forgotten.customer_ids.is_empty() {
                    forgotten.customer_ids.push(id.clone());
                }
                forgotten.dead_letters = letters as u64;
            }
            Subject::UserId(user_id) => {
                if let Some(customers) = under.remove(user_id) {
                    for id in &customers {
                        erase_delivery(&tx, id)?;
                    }
                    forgotten.customer_ids = customers;
                    forgotten.user_ids.push(user_id.clone());
                }
                let mut by_customer = 0;
                for id in &forgotten.customer_ids {
                    by_customer += tx
                        .prepare_cached("DELETE FROM dead_letters WHERE customer_id = ?1")?
                        .execute([id])?;
                }
                let mut stmt = tx.prepare_cached(
                    "DELETE FROM dead_letters
                     WHERE json_valid(payload) AND json_extract(payload, '$.userId') = ?1
                     RETURNING customer_id",
                )?;
                let by_payload: Vec<String> = stmt
                    .query_map([user_id], |row| row.get(0))?
                    .collect::<Result<_, _>>()?;
                forgotten.dead_letters = (by_customer + by_payload.len()) as u64;
                for id in by_payload {
                    if !forgotten.customer_ids.contains(&id) {
                        forgotten.customer_ids.push(id);
                    }
                }
            }
        }
        forgotten.user_ids.retain(|user_id| !user_id.is_empty());
        if let Some(kind) = regulation_type {
            for user_id in &forgotten.user_ids {
                forgotten.queued += queue(&tx, user_id, kind, at)?;
            }
        }
        answers.push(forgotten);
    }
    tx.commit()?;
    Ok(answers)
}

fn erase_delivery(tx: &Transaction<'_>, customer_id: &str) -> Result<(), Failure> {
    tx.prepare_cached("DELETE FROM delivered WHERE customer_id = ?1")?
        .execute([customer_id])?;
    Ok(())
}

/// Queues a deletion unless one of that type is already queued; returns 1 when
/// it queued one.
fn queue(tx: &Transaction<'_>, user_id: &str, kind: &str, at: &str) -> Result<u64, Failure> {
    let queued = tx
        .prepare_cached(
            "INSERT INTO deletions (subject, regulation_type, requested_at)
             SELECT ?1, ?2, ?3
             WHERE NOT EXISTS (SELECT 1 FROM deletions
                               WHERE subject = ?1 AND regulation_type = ?2 AND sent_at IS NULL)",
        )?
        .execute(params![user_id, kind, at])?;
    Ok(queued as u64)
}

const COLUMNS: &str = "id, subject, regulation_type, requested_at, regulation_id, sent_at, status";

fn record(row: &Row<'_>) -> Result<DeletionRecord, Failure> {
    let requested_at: String = row.get(3)?;
    let sent_at: Option<String> = row.get(5)?;
    Ok(DeletionRecord {
        id: row.get(0)?,
        subject: row.get(1)?,
        regulation_type: row.get(2)?,
        requested_at: parse_rfc3339(&requested_at, "deletion request time")?,
        regulation_id: row.get(4)?,
        sent_at: sent_at
            .map(|text| parse_rfc3339(&text, "deletion sending time"))
            .transpose()?,
        status: row.get(6)?,
    })
}

fn records(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<DeletionRecord>, Failure> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut found = Vec::new();
    while let Some(row) = rows.next()? {
        found.push(record(row)?);
    }
    Ok(found)
}

pub(super) fn queued(conn: &mut Connection, limit: usize) -> Result<Vec<DeletionRecord>, Failure> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    records(
        conn,
        &format!("SELECT {COLUMNS} FROM deletions WHERE sent_at IS NULL ORDER BY id LIMIT ?1"),
        [limit],
    )
}

pub(super) fn after(
    conn: &mut Connection,
    after: Option<i64>,
    limit: usize,
) -> Result<Vec<DeletionRecord>, Failure> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    records(
        conn,
        &format!("SELECT {COLUMNS} FROM deletions WHERE id > ?1 ORDER BY id LIMIT ?2"),
        params![after.unwrap_or(i64::MIN), limit],
    )
}

pub(super) fn sent(conn: &mut Connection, sent: &OwnedDeletionsSent) -> Result<(), Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut update = tx.prepare_cached(
            "UPDATE deletions SET regulation_id = ?2, sent_at = ?3, status = ?4
             WHERE id = ?1 AND sent_at IS NULL",
        )?;
        for id in &sent.ids {
            update.execute(params![id, sent.regulation_id, sent.at, sent.status])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// A [`DeletionsSent`] copied for the blocking pool.
pub(super) struct OwnedDeletionsSent {
    ids: Vec<i64>,
    regulation_id: Option<String>,
    status: String,
    at: String,
}

impl OwnedDeletionsSent {
    pub(super) fn of(sent: &DeletionsSent<'_>, at: String) -> Self {
        Self {
            ids: sent.ids.to_vec(),
            regulation_id: sent.regulation_id.map(str::to_owned),
            status: sent.status.to_owned(),
            at,
        }
    }
}

pub(super) fn set_status(
    conn: &mut Connection,
    regulation_id: &str,
    status: &str,
) -> Result<(), Failure> {
    conn.prepare_cached("UPDATE deletions SET status = ?2 WHERE regulation_id = ?1")?
        .execute([regulation_id, status])?;
    Ok(())
}

pub(super) fn regulated_since(conn: &mut Connection, since: &str) -> Result<u64, Failure> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM deletions
             WHERE regulation_id IS NOT NULL AND julianday(sent_at) >= julianday(?1)",
        )?
        .query_row([since], |row| row.get(0))?;
    to_u64(n, "regulated users")
}

pub(super) fn import(conn: &mut Connection, deletions: &[DeletionRecord]) -> Result<(), Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO deletions (subject, regulation_type, requested_at, regulation_id, sent_at, status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for deletion in deletions {
            insert.execute(params![
                deletion.subject,
                deletion.regulation_type,
                rfc3339(deletion.requested_at)?,
                deletion.regulation_id,
                deletion.sent_at.map(rfc3339).transpose()?,
                deletion.status,
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}
