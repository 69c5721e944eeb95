//! The schema, its migrations, and the pragmas every connection gets.

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use std::time::Duration;

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The schema, one entry per version; `PRAGMA user_version` says how many ran.
const MIGRATIONS: &[&str] = &[
    // Version 1.
    "CREATE TABLE delivered (
         customer_id TEXT PRIMARY KEY NOT NULL,
         fingerprint TEXT NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE meta (
         key TEXT PRIMARY KEY NOT NULL,
         value TEXT NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE dead_letters (
         customer_id TEXT PRIMARY KEY NOT NULL,
         kind TEXT NOT NULL,
         code TEXT NOT NULL,
         reason TEXT NOT NULL,
         payload TEXT,
         fingerprint TEXT,
         attempts INTEGER NOT NULL,
         recorded_at TEXT NOT NULL,
         seq INTEGER NOT NULL
     );
     CREATE INDEX dead_letters_by_seq ON dead_letters (seq);
     CREATE TABLE runs (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         kind TEXT NOT NULL,
         started_at TEXT NOT NULL,
         finished_at TEXT,
         status TEXT NOT NULL,
         read INTEGER NOT NULL DEFAULT 0,
         sent INTEGER NOT NULL DEFAULT 0,
         unchanged INTEGER NOT NULL DEFAULT 0,
         skipped INTEGER NOT NULL DEFAULT 0,
         rejected INTEGER NOT NULL DEFAULT 0,
         failed INTEGER NOT NULL DEFAULT 0,
         error TEXT
     );",
    // Version 2: versions (a delivery never moves a profile backwards), the userId
    // delivered, per-customer claims between processes, who ran a run on what.
    "ALTER TABLE delivered ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE delivered ADD COLUMN user_id TEXT NOT NULL DEFAULT '';
     ALTER TABLE dead_letters ADD COLUMN version INTEGER;
     ALTER TABLE runs ADD COLUMN source TEXT;
     ALTER TABLE runs ADD COLUMN holder TEXT;
     CREATE TABLE claims (
         customer_id TEXT PRIMARY KEY NOT NULL,
         holder TEXT NOT NULL,
         expires_at INTEGER NOT NULL
     ) WITHOUT ROWID;",
    // Version 3: deletions asked of Segment (queued until sent), with no personal
    // data but the `userId` they name.
    "CREATE TABLE deletions (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         subject TEXT NOT NULL,
         regulation_type TEXT NOT NULL,
         requested_at TEXT NOT NULL,
         regulation_id TEXT,
         sent_at TEXT,
         status TEXT
     );
     CREATE INDEX deletions_queued ON deletions (subject, regulation_type) WHERE sent_at IS NULL;
     CREATE INDEX deletions_by_regulation ON deletions (regulation_id) WHERE regulation_id IS NOT NULL;
     CREATE INDEX deletions_by_sent_at ON deletions (sent_at) WHERE regulation_id IS NOT NULL;",
];

/// The schema version this build writes and understands.
pub(super) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Pragmas and schema. The error is the reason for a `StateError::Open`.
pub(super) fn configure(conn: &mut Connection) -> Result<(), String> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| describe_open_error(&e))?;
    // The journal mode is the first statement that reads the file, so a file that
    // is not a database fails here.
    let _mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|e| describe_open_error(&e))?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(|e| describe_open_error(&e))?;
    conn.set_prepared_statement_cache_capacity(32);
    migrate(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), String> {
    let version = user_version(conn).map_err(|e| describe_open_error(&e))?;
    check_version(version)?;
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| describe_open_error(&e))?;
    // Another process may have migrated while this one waited for the lock.
    let version = user_version(&tx).map_err(|e| describe_open_error(&e))?;
    check_version(version)?;
    let pending = usize::try_from(version).unwrap_or(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(pending) {
        tx.execute_batch(sql)
            .map_err(|e| format!("cannot create schema version {}: {e}", i + 1))?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(|e| describe_open_error(&e))?;
    tx.commit().map_err(|e| describe_open_error(&e))
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

pub(super) fn check_version(version: i64) -> Result<(), String> {
    if version > SCHEMA_VERSION {
        return Err(format!(
            "it has schema version {version}, written by a newer segment-sync; \
             this build knows up to version {SCHEMA_VERSION}: upgrade segment-sync \
             or use another --state file"
        ));
    }
    if version < 0 {
        return Err(format!("it has an invalid schema version {version}"));
    }
    Ok(())
}

pub(super) fn describe_open_error(error: &rusqlite::Error) -> String {
    match error.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => {
            format!("it is not a SQLite database ({error}); point --state at a segment-sync state file or a new path")
        }
        Some(ErrorCode::ReadOnly) | Some(ErrorCode::PermissionDenied) => {
            format!("it is not writable ({error})")
        }
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_schema_versions_are_refused() {
        assert!(check_version(SCHEMA_VERSION).is_ok());
        let reason = check_version(SCHEMA_VERSION + 1).unwrap_err();
        assert!(reason.contains("newer segment-sync"), "{reason}");
    }

    #[test]
    fn a_version_1_database_is_migrated_keeping_its_deliveries() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO delivered (customer_id, fingerprint) VALUES ('c1', 'ab')",
            [],
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let (version, user_id): (i64, String) = conn
            .query_row(
                "SELECT version, user_id FROM delivered WHERE customer_id = 'c1'",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!(
            (version, user_id.as_str()),
            (0, ""),
            "any real version is newer"
        );
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
    }
}
