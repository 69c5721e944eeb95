//! Per-customer state: claims between processes, deliveries (never moved
//! backwards), and what a holder settles in one transaction.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, params_from_iter, Connection, Transaction, TransactionBehavior};
use segment_sync_domain::Fingerprint;
use segment_sync_ports::{Claimed, DeliveredRecord, DeliveredRow, Settlement};

use super::letters;
use super::rows::{fingerprint, placeholders, Failure};

/// Ids per `IN (...)` lookup: one page of customers, well under SQLite's
/// variable limit.
const LOOKUP_CHUNK: usize = 500;

/// Milliseconds since the epoch on this host's clock: claims are shared only by
/// processes of one host, the one that holds the file.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(super) fn claim(
    conn: &mut Connection,
    ids: &[String],
    holder: &str,
    ttl: Duration,
) -> Result<Claimed, Failure> {
    let now = now_ms();
    let expires = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut claimed = Claimed::default();
    let mut granted = Vec::with_capacity(ids.len());
    {
        let mut take = tx.prepare_cached(
            "INSERT INTO claims (customer_id, holder, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (customer_id) DO UPDATE SET
                 holder = excluded.holder, expires_at = excluded.expires_at
             WHERE claims.holder = excluded.holder OR claims.expires_at <= ?4",
        )?;
        for id in ids {
            if take.execute(params![id, holder, expires, now])? == 1 {
                granted.push(id.clone());
            } else {
                claimed.busy.push(id.clone());
            }
        }
    }
    claimed.delivered = lookup(&tx, &granted)?;
    claimed.rejected = rejected(&tx, &granted)?;
    tx.commit()?;
    Ok(claimed)
}

pub(super) fn delivered(
    conn: &mut Connection,
    ids: &[String],
) -> Result<HashMap<String, DeliveredRecord>, Failure> {
    // One read transaction: one snapshot and one lock for every chunk.
    let tx = conn.transaction()?;
    let found = lookup(&tx, ids)?;
    tx.commit()?;
    Ok(found)
}

fn lookup(
    tx: &Transaction<'_>,
    ids: &[String],
) -> Result<HashMap<String, DeliveredRecord>, Failure> {
    let mut found = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(LOOKUP_CHUNK) {
        let sql = format!(
            "SELECT customer_id, fingerprint, version FROM delivered WHERE customer_id IN {}",
            placeholders(chunk.len())
        );
        let mut stmt = tx.prepare_cached(&sql)?;
        let mut rows = stmt.query(params_from_iter(chunk))?;
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let hex = row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
            let record = DeliveredRecord {
                fingerprint: fingerprint(&id, hex)?,
                version: row.get(2)?,
            };
            found.insert(id, record);
        }
    }
    Ok(found)
}

/// The fingerprints of the rejected dead letters of these customers.
fn rejected(tx: &Transaction<'_>, ids: &[String]) -> Result<HashMap<String, Fingerprint>, Failure> {
    let mut found = HashMap::new();
    // Dead letters are usually none; skip the lookups then.
    let any_dead: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM dead_letters)")?
        .query_row([], |row| row.get(0))?;
    if !any_dead {
        return Ok(found);
    }
    for chunk in ids.chunks(LOOKUP_CHUNK) {
        let sql = format!(
            "SELECT customer_id, fingerprint FROM dead_letters
             WHERE kind = 'rejected' AND fingerprint IS NOT NULL AND customer_id IN {}",
            placeholders(chunk.len())
        );
        let mut stmt = tx.prepare_cached(&sql)?;
        let mut rows = stmt.query(params_from_iter(chunk))?;
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let hex: String = row.get(1)?;
            found.insert(id.clone(), fingerprint(&id, &hex)?);
        }
    }
    Ok(found)
}

pub(super) fn settle(conn: &mut Connection, settlement: &OwnedSettlement) -> Result<(), Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        // Never backwards: an older version does not replace a newer one.
        let mut upsert = tx.prepare_cached(
            "INSERT INTO delivered (customer_id, fingerprint, version, user_id)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (customer_id) DO UPDATE SET
                 fingerprint = excluded.fingerprint,
                 version = excluded.version,
                 user_id = excluded.user_id
             WHERE excluded.version >= delivered.version",
        )?;
        // Dead letters are usually none; skip a probe per customer then.
        let any_dead: bool = tx
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM dead_letters)")?
            .query_row([], |row| row.get(0))?;
        let mut clear = tx.prepare_cached(
            "DELETE FROM dead_letters
             WHERE customer_id = ?1 AND (version IS NULL OR version <= ?2)",
        )?;
        for (id, version, fingerprint, user_id) in &settlement.delivered {
            let recorded = upsert.execute(params![id, fingerprint, version, user_id])? == 1;
            if recorded && any_dead {
                clear.execute(params![id, version])?;
            }
        }
        letters::upsert(&tx, &settlement.dead_letters)?;
        let mut release =
            tx.prepare_cached("DELETE FROM claims WHERE customer_id = ?1 AND holder = ?2")?;
        for id in &settlement.release {
            release.execute(params![id, settlement.holder])?;
        }
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn deliveries_after(
    conn: &mut Connection,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<DeliveredRow>, Failure> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(
        "SELECT customer_id, fingerprint, version, user_id FROM delivered
         WHERE customer_id > ?1 ORDER BY customer_id LIMIT ?2",
    )?;
    let mut rows = stmt.query(params![after.unwrap_or(""), limit])?;
    let mut page = Vec::new();
    while let Some(row) = rows.next()? {
        let customer_id: String = row.get(0)?;
        let hex: String = row.get(1)?;
        page.push(DeliveredRow {
            fingerprint: fingerprint(&customer_id, &hex)?,
            customer_id,
            version: row.get(2)?,
            user_id: row.get(3)?,
        });
    }
    Ok(page)
}

/// A [`Settlement`] copied for the blocking pool.
pub(super) struct OwnedSettlement {
    delivered: Vec<(String, i64, String, String)>,
    dead_letters: Vec<segment_sync_domain::sync::DeadLetter>,
    release: Vec<String>,
    holder: String,
}

impl OwnedSettlement {
    pub(super) fn of(settlement: &Settlement<'_>) -> Self {
        Self {
            delivered: settlement
                .delivered
                .iter()
                .map(|d| {
                    (
                        d.customer_id.to_owned(),
                        d.version,
                        d.fingerprint.to_hex(),
                        d.user_id.to_owned(),
                    )
                })
                .collect(),
            dead_letters: settlement.dead_letters.to_vec(),
            release: settlement.release.to_vec(),
            holder: settlement.holder.to_owned(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.delivered.is_empty() && self.dead_letters.is_empty() && self.release.is_empty()
    }
}
