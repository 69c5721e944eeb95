//! `PostgresStateStore`, on a fresh database of the test server, against the
//! state store contract. Every test's name contains `postgres`, so that
//! `cargo xtask ci` can leave them out where no server answers.

use segment_sync_adapters::postgres_state::PostgresStateStore;
use segment_sync_ports::SyncStateStore;
use segment_sync_testkit::contract::Subject;
use segment_sync_testkit::postgres::TestDatabase;

/// A store on a new database, dropped with it.
async fn on_a_fresh_database() -> Subject<dyn SyncStateStore> {
    let database = TestDatabase::create().await;
    let store = PostgresStateStore::connect(database.url())
        .await
        .unwrap_or_else(|e| panic!("a store on {}: {e}", database.name()));
    Subject::from(store).keeping(database)
}

segment_sync_testkit::state_store_contract!(on_a_fresh_database);
