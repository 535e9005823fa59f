//! The AWS deployment's state store: every store port (`WorkspaceStore`, `ProjectStore`,
//! `ScheduleStore`, `RunStore`, `ResultsStore`, `ConnectionStore`, `SqlCacheStore`,
//! `RateLimitStore`, and for notifications `RunEventOutbox`, `DeliveryStore` and
//! `IntegrationStore`) over one DynamoDB table.
//!
//! Design, in short (the long form, from the access patterns, is `docs/dynamodb.md`):
//! * **One table, keys built in `table.rs`.** Every partition key starts with the
//!   workspace (`WS#w…`), so tenant isolation is structural: a request for workspace B
//!   cannot name an item of workspace A. Only the operator listings (all workspaces, all
//!   schedules, active runs) and rate-limit windows have workspace-less partitions.
//! * **Records in a `data` map** (`serde_dynamo`), beside explicit key, index and
//!   condition attributes, so no record field can collide with a key attribute and
//!   conditions compare fixed-width copies of the fields they need.
//! * **Race-free rules are conditions, never read-then-write:** `attribute_not_exists(PK)`
//!   for creations, `version`/`status`+`attempt`/`asOf` conditions for updates, and schedule
//!   limits as counter items updated in the same `TransactWriteItems` as the schedule.
//! * **Lists are `Query` with a cursor** (the last item's key, base64url), never `Scan`.
//!
//! The shared contract suites (`tests/src/contract.rs`: `store_contract_tests!` and
//! `notification_store_contract_tests!`) pin the observable behaviour;
//! `tests/tests/store_contract_dynamodb.rs` runs them against DynamoDB Local.

mod cache;
mod codec;
mod connections;
mod deliveries;
mod integrations;
mod outbox;
mod projects;
mod rate_limits;
mod results;
mod run_path;
mod runs;
mod schedules;
pub mod table;
mod workspaces;

use aws_sdk_dynamodb::Client;

/// The SDK this adapter is built on, for callers that construct its client (binaries,
/// tests) without depending on the crate themselves.
pub use aws_sdk_dynamodb as sdk;
pub use table::create_table;

/// The DynamoDB store. Cheap to clone: clones share the SDK client (and its connection
/// pool).
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    /// A store over `table`, which must exist with the layout of `table::create_table`.
    pub fn new(client: Client, table: impl Into<String>) -> DynamoStore {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}
