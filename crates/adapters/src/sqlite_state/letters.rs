//! Dead letters: one per customer, replaced when added again.

use rusqlite::{params, Connection, Transaction, TransactionBehavior};
use segment_sync_domain::sync::DeadLetter;
use segment_sync_ports::{DeadLetterCursor, StoredDeadLetter};

use super::rows::{kind_from_text, to_u64, Failure};

pub(super) fn add(conn: &mut Connection, letters: &[DeadLetter]) -> Result<(), Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    upsert(&tx, letters)?;
    tx.commit()?;
    Ok(())
}

/// Adds or replaces letters within a transaction.
pub(super) fn upsert(tx: &Transaction<'_>, letters: &[DeadLetter]) -> Result<(), Failure> {
    if letters.is_empty() {
        return Ok(());
    }
    // `seq` orders the list by when each letter was last recorded, whatever
    // format the caller's `recorded_at` has.
    let last_seq: i64 = tx
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM dead_letters")?
        .query_row([], |row| row.get(0))?;
    // A re-added letter counts one more attempt, whatever attempts the caller's
    // copy carries, so replaying a listed letter counts right.
    let mut upsert = tx.prepare_cached(
        "INSERT INTO dead_letters
             (customer_id, kind, code, reason, payload, fingerprint, version, attempts, recorded_at, seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (customer_id) DO UPDATE SET
             kind = excluded.kind,
             code = excluded.code,
             reason = excluded.reason,
             payload = excluded.payload,
             fingerprint = excluded.fingerprint,
             version = excluded.version,
             attempts = dead_letters.attempts + 1,
             recorded_at = excluded.recorded_at,
             seq = excluded.seq",
    )?;
    for (seq, letter) in (last_seq + 1..).zip(letters) {
        upsert.execute(params![
            letter.customer_id,
            letter.kind.as_str(),
            letter.code,
            letter.reason,
            letter.payload,
            letter.fingerprint,
            letter.version,
            letter.attempts.max(1),
            letter.recorded_at,
            seq,
        ])?;
    }
    Ok(())
}

pub(super) fn page(
    conn: &mut Connection,
    after: Option<DeadLetterCursor>,
    limit: usize,
) -> Result<Vec<StoredDeadLetter>, Failure> {
    let mut stmt = conn.prepare_cached(
        "SELECT customer_id, kind, code, reason, payload, fingerprint, version, attempts, recorded_at, seq
         FROM dead_letters WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let after = after.map_or(i64::MIN, |cursor| cursor.0);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut rows = stmt.query(params![after, limit])?;
    let mut letters = Vec::new();
    while let Some(row) = rows.next()? {
        let kind: String = row.get(1)?;
        letters.push(StoredDeadLetter {
            cursor: DeadLetterCursor(row.get(9)?),
            letter: DeadLetter {
                customer_id: row.get(0)?,
                kind: kind_from_text(&kind)?,
                code: row.get(2)?,
                reason: row.get(3)?,
                payload: row.get(4)?,
                fingerprint: row.get(5)?,
                version: row.get(6)?,
                attempts: row.get(7)?,
                recorded_at: row.get(8)?,
            },
        });
    }
    Ok(letters)
}

pub(super) fn count(conn: &mut Connection) -> Result<u64, Failure> {
    let n: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM dead_letters")?
        .query_row([], |row| row.get(0))?;
    to_u64(n, "dead letter count")
}

/// Removes the letters recorded before `before` (RFC 3339), comparing instants,
/// whatever offset or precision each was written with.
pub(super) fn purge(conn: &mut Connection, before: &str) -> Result<u64, Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let removed = tx
        .prepare_cached("DELETE FROM dead_letters WHERE julianday(recorded_at) < julianday(?1)")?
        .execute([before])?;
    tx.commit()?;
    Ok(removed as u64)
}

pub(super) fn remove(conn: &mut Connection, ids: &[String]) -> Result<(), Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut delete = tx.prepare_cached("DELETE FROM dead_letters WHERE customer_id = ?1")?;
        for id in ids {
            delete.execute([id])?;
        }
    }
    tx.commit()?;
    Ok(())
}
