//! The notification part of the store contract (`notification_store_contract_tests!`)
//! against the embedded SQLite store.

use scheduled_runs::adapters::local::sqlite::SqliteStore;
use scheduled_runs_tests::contract::NotifyStores;
use tempfile::TempDir;

async fn fresh() -> (TempDir, NotifyStores) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("state.db")).expect("open sqlite store");
    (dir, NotifyStores::from_store(store))
}

scheduled_runs_tests::notification_store_contract_tests!(fresh);
