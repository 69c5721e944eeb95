//! `SqliteStateStore`, on a file and in memory, against the state store contract.

use segment_sync_adapters::sqlite_state::SqliteStateStore;
use segment_sync_ports::SyncStateStore;
use segment_sync_testkit::contract::Subject;

mod on_a_file {
    use super::*;

    /// A new database file in a temporary directory that lives as long as it.
    async fn in_a_temporary_directory() -> Subject<dyn SyncStateStore> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStateStore::open(&dir.path().join("state.db")).expect("a new state file");
        Subject::from(store).keeping(dir)
    }

    segment_sync_testkit::state_store_contract!(in_a_temporary_directory);
}

mod in_memory {
    use super::*;

    async fn private_database() -> SqliteStateStore {
        SqliteStateStore::open_in_memory().expect("an in-memory database")
    }

    segment_sync_testkit::state_store_contract!(private_database);
}
