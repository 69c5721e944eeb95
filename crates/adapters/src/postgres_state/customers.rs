//! Per-customer state: claims between processes, deliveries (never moved
//! backwards), and what a holder settles — each call one statement, so one
//! round trip and its own transaction.
//!
//! Rows are written in customer id order (bytewise, as the columns compare), so
//! that two statements over the same customers lock them in the same order and
//! cannot deadlock each other.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use deadpool_postgres::ClientWrapper;
use segment_sync_ports::{Claimed, DeliveredRecord, DeliveredRow, Settlement};

use super::failure::Failure;
use super::letters::LetterColumns;
use crate::state_values;

/// Reserves the customers asked for that are free, expired or the holder's
/// already, and answers the last deliveries of those it reserved.
const CLAIM: &str = "
WITH asked AS (
    SELECT DISTINCT customer_id FROM unnest($1::text[]) AS a(customer_id)
), granted AS (
    INSERT INTO claims AS c (customer_id, holder, expires_at)
    SELECT customer_id, $2, now() + $3::bigint * interval '1 millisecond'
    FROM asked ORDER BY customer_id COLLATE \"C\"
    ON CONFLICT (customer_id) DO UPDATE SET
        holder = excluded.holder, expires_at = excluded.expires_at
    WHERE c.holder = excluded.holder OR c.expires_at <= now()
    RETURNING c.customer_id
)
SELECT customer_id FROM granted";

/// What was delivered (and refused) of the customers asked for, read by a
/// statement of its own after [`CLAIM`]: a statement sees the data as it was when
/// it began, so a lookup inside the claim's statement could miss a delivery that
/// committed while the claim waited for the previous holder's row, and let an
/// older version through.
const CLAIMED: &str = "
SELECT a.customer_id, d.fingerprint, d.version, l.fingerprint
FROM unnest($1::text[]) AS a(customer_id)
LEFT JOIN deliveries d ON d.customer_id = a.customer_id
LEFT JOIN dead_letters l
    ON l.customer_id = a.customer_id AND l.kind = 'rejected' AND l.fingerprint IS NOT NULL";

/// Records deliveries unless a newer version is held, clears the dead letters
/// those deliveries make stale, adds dead letters and releases the holder's
/// claims. Parameters: deliveries ($1–$4), dead letters ($5–$13), release
/// ($14, $15). Adding dead letters alone is this statement with the rest empty.
///
/// The sub-statements see one snapshot and must not touch a row twice, so a
/// letter added for a customer is not also cleared: it replaces the held one,
/// counting an attempt only if the held one was not made stale by a delivery
/// of this same settlement (as clearing then adding would).
const SETTLE: &str = "
WITH written AS (
    INSERT INTO deliveries AS d (customer_id, fingerprint, version, user_id)
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[])
        AS i(customer_id, fingerprint, version, user_id)
    ORDER BY customer_id COLLATE \"C\"
    ON CONFLICT (customer_id) DO UPDATE SET
        fingerprint = excluded.fingerprint,
        version = excluded.version,
        user_id = excluded.user_id
    WHERE excluded.version >= d.version
    RETURNING d.customer_id, d.version
), cleared AS (
    DELETE FROM dead_letters l USING written w
    WHERE l.customer_id = w.customer_id
      AND (l.version IS NULL OR l.version <= w.version)
      AND l.customer_id <> ALL($5::text[])
    RETURNING l.customer_id
), letters AS (
    SELECT customer_id, kind, code, reason, payload, fingerprint, version,
           GREATEST(attempts, 1) AS attempts, recorded_at,
           nextval('dead_letters_seq') AS seq
    FROM unnest($5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
                $10::text[], $11::bigint[], $12::bigint[], $13::text[])
        WITH ORDINALITY
        AS n(customer_id, kind, code, reason, payload, fingerprint, version,
             attempts, recorded_at, ord)
    ORDER BY ord
), lettered AS (
    INSERT INTO dead_letters AS l
        (customer_id, kind, code, reason, payload, fingerprint, version, attempts,
         recorded_at, seq)
    SELECT customer_id, kind, code, reason, payload, fingerprint, version, attempts,
           recorded_at, seq
    FROM letters ORDER BY seq
    ON CONFLICT (customer_id) DO UPDATE SET
        kind = excluded.kind,
        code = excluded.code,
        reason = excluded.reason,
        payload = excluded.payload,
        fingerprint = excluded.fingerprint,
        version = excluded.version,
        attempts = CASE
            WHEN EXISTS (
                SELECT 1 FROM written w
                WHERE w.customer_id = l.customer_id
                  AND (l.version IS NULL OR l.version <= w.version)
            ) THEN excluded.attempts
            ELSE l.attempts + 1
        END,
        recorded_at = excluded.recorded_at,
        seq = excluded.seq
    RETURNING l.customer_id
), released AS (
    DELETE FROM claims c USING (
        SELECT customer_id FROM claims
        WHERE customer_id = ANY($14::text[]) AND holder = $15
        ORDER BY customer_id
        FOR UPDATE
    ) mine
    WHERE c.customer_id = mine.customer_id
    RETURNING c.customer_id
)
SELECT (SELECT count(*) FROM written),
       (SELECT count(*) FROM cleared),
       (SELECT count(*) FROM lettered),
       (SELECT count(*) FROM released)";

const DELIVERED: &str = "
SELECT customer_id, fingerprint, version FROM deliveries
WHERE customer_id = ANY($1::text[])";

const DELIVERIES_AFTER: &str = "
SELECT customer_id, fingerprint, version, user_id FROM deliveries
WHERE customer_id > $1 ORDER BY customer_id LIMIT $2";

/// The longest reservation written: the database's timestamps end in 294276.
const LONGEST_CLAIM: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

pub(super) async fn claim(
    client: &ClientWrapper,
    ids: &[String],
    holder: &str,
    ttl: Duration,
) -> Result<Claimed, Failure> {
    let ttl_ms = i64::try_from(ttl.min(LONGEST_CLAIM).as_millis()).unwrap_or(i64::MAX);
    let claim = client.prepare_cached(CLAIM).await?;
    let look = client.prepare_cached(CLAIMED).await?;
    // Both statements go in one round trip; the server runs the lookup after the
    // claim, with a snapshot of its own.
    let claim_parameters: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
        [&ids, &holder, &ttl_ms];
    let look_parameters: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&ids];
    let (granted_rows, rows) = tokio::try_join!(
        client.query(&claim, &claim_parameters),
        client.query(&look, &look_parameters),
    )?;
    let granted: HashSet<String> = granted_rows
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    let mut claimed = Claimed::default();
    for row in rows {
        let id: String = row.try_get(0)?;
        if !granted.contains(&id) {
            continue;
        }
        let fingerprint: Option<String> = row.try_get(1)?;
        let version: Option<i64> = row.try_get(2)?;
        if let (Some(hex), Some(version)) = (fingerprint, version) {
            let record = DeliveredRecord {
                fingerprint: state_values::fingerprint(&id, &hex)?,
                version,
            };
            claimed.delivered.insert(id.clone(), record);
        }
        let rejected: Option<String> = row.try_get(3)?;
        if let Some(hex) = rejected {
            claimed
                .rejected
                .insert(id.clone(), state_values::fingerprint(&id, &hex)?);
        }
    }
    let mut seen = HashSet::with_capacity(ids.len());
    claimed.busy = ids
        .iter()
        .filter(|id| !granted.contains(*id) && seen.insert(id.as_str()))
        .cloned()
        .collect();
    Ok(claimed)
}

pub(super) async fn settle(
    client: &ClientWrapper,
    settlement: &Settlement<'_>,
) -> Result<(), Failure> {
    let deliveries = DeliveryColumns::of(settlement);
    let letters = LetterColumns::of(settlement.dead_letters);
    let statement = client.prepare_cached(SETTLE).await?;
    client
        .query_one(
            &statement,
            &[
                &deliveries.ids,
                &deliveries.fingerprints,
                &deliveries.versions,
                &deliveries.user_ids,
                &letters.ids,
                &letters.kinds,
                &letters.codes,
                &letters.reasons,
                &letters.payloads,
                &letters.fingerprints,
                &letters.versions,
                &letters.attempts,
                &letters.recorded_at,
                &settlement.release,
                &settlement.holder,
            ],
        )
        .await?;
    Ok(())
}

pub(super) async fn delivered(
    client: &ClientWrapper,
    ids: &[String],
) -> Result<HashMap<String, DeliveredRecord>, Failure> {
    let statement = client.prepare_cached(DELIVERED).await?;
    let rows = client.query(&statement, &[&ids]).await?;
    let mut found = HashMap::with_capacity(rows.len());
    for row in rows {
        let id: String = row.try_get(0)?;
        let hex: &str = row.try_get(1)?;
        let record = DeliveredRecord {
            fingerprint: state_values::fingerprint(&id, hex)?,
            version: row.try_get(2)?,
        };
        found.insert(id, record);
    }
    Ok(found)
}

pub(super) async fn deliveries_after(
    client: &ClientWrapper,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<DeliveredRow>, Failure> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let statement = client.prepare_cached(DELIVERIES_AFTER).await?;
    let rows = client
        .query(&statement, &[&after.unwrap_or(""), &limit])
        .await?;
    rows.into_iter()
        .map(|row| {
            let customer_id: String = row.try_get(0)?;
            let hex: &str = row.try_get(1)?;
            Ok(DeliveredRow {
                fingerprint: state_values::fingerprint(&customer_id, hex)?,
                version: row.try_get(2)?,
                user_id: row.try_get(3)?,
                customer_id,
            })
        })
        .collect()
}

/// The deliveries of a settlement as one array per column, one entry per
/// customer: of several deliveries of one customer, the newest version counts,
/// and the last given of equal versions — what recording them one after the
/// other would leave.
struct DeliveryColumns<'a> {
    ids: Vec<&'a str>,
    fingerprints: Vec<String>,
    versions: Vec<i64>,
    user_ids: Vec<&'a str>,
}

impl<'a> DeliveryColumns<'a> {
    fn of(settlement: &Settlement<'a>) -> Self {
        let mut kept: HashMap<&str, usize> = HashMap::with_capacity(settlement.delivered.len());
        for (i, delivery) in settlement.delivered.iter().enumerate() {
            let newest = kept.entry(delivery.customer_id).or_insert(i);
            if delivery.version >= settlement.delivered[*newest].version {
                *newest = i;
            }
        }
        let mut chosen: Vec<usize> = kept.into_values().collect();
        chosen.sort_unstable();
        let mut columns = Self {
            ids: Vec::with_capacity(chosen.len()),
            fingerprints: Vec::with_capacity(chosen.len()),
            versions: Vec::with_capacity(chosen.len()),
            user_ids: Vec::with_capacity(chosen.len()),
        };
        for delivery in chosen.into_iter().map(|i| &settlement.delivered[i]) {
            columns.ids.push(delivery.customer_id);
            columns.fingerprints.push(delivery.fingerprint.to_hex());
            columns.versions.push(delivery.version);
            columns.user_ids.push(delivery.user_id);
        }
        columns
    }
}

/// Whether a settlement has nothing to record.
pub(super) fn is_empty(settlement: &Settlement<'_>) -> bool {
    settlement.delivered.is_empty()
        && settlement.dead_letters.is_empty()
        && settlement.release.is_empty()
}

#[cfg(test)]
mod tests {
    use segment_sync_domain::Fingerprint;
    use segment_sync_ports::Delivered;

    use super::*;

    fn fingerprint(n: u128) -> Fingerprint {
        Fingerprint::from_hex(&format!("{n:032x}")).unwrap()
    }

    #[test]
    fn of_several_deliveries_of_a_customer_the_newest_and_then_the_last_counts() {
        let delivered = [
            Delivered {
                customer_id: "a",
                version: 2,
                fingerprint: fingerprint(1),
                user_id: "a1",
            },
            Delivered {
                customer_id: "b",
                version: 1,
                fingerprint: fingerprint(2),
                user_id: "b1",
            },
            Delivered {
                customer_id: "a",
                version: 1,
                fingerprint: fingerprint(3),
                user_id: "a2",
            },
            Delivered {
                customer_id: "b",
                version: 1,
                fingerprint: fingerprint(4),
                user_id: "b2",
            },
        ];
        let settlement = Settlement {
            delivered: &delivered,
            ..Settlement::default()
        };
        let columns = DeliveryColumns::of(&settlement);
        assert_eq!(columns.ids, ["a", "b"]);
        assert_eq!(columns.user_ids, ["a1", "b2"]);
        assert_eq!(columns.versions, [2, 1]);
        assert_eq!(
            columns.fingerprints,
            [fingerprint(1).to_hex(), fingerprint(4).to_hex()]
        );
    }
}
