//! The store contract against the DynamoDB store on DynamoDB Local: every behaviour of
//! `scheduled_runs_tests::contract` (the notification ports' part too), each on a table
//! of its own, plus what only the DynamoDB layout can get wrong (ids that contain the key
//! separator).
//!
//! Needs `SCHEDULED_RUNS_TEST_DYNAMODB_ENDPOINT` (`infra/local/dynamodb.sh start`, then
//! `source .test-env/dynamodb.env`). With `SCHEDULED_RUNS_REQUIRE_PEERS=1` a missing
//! endpoint fails the tests. Without it they are skipped with a loud notice: the contract
//! macro offers no early return, so the first test that finds the endpoint missing prints
//! the notice and ends this test binary with success — every test in it needs the same
//! endpoint, so none of them could have run.

use std::io::Write;

use chrono::{TimeZone, Utc};
use scheduled_runs::adapters::aws::dynamodb::{DynamoStore, create_table, sdk};
use scheduled_runs::domain::model::{Plan, Project, Workspace};
use scheduled_runs::ports::{PageRequest, PortError, ProjectStore, WorkspaceStore};
use scheduled_runs_tests::contract::{NotifyStores, Stores};

const ENDPOINT_VAR: &str = "SCHEDULED_RUNS_TEST_DYNAMODB_ENDPOINT";
const REQUIRE_VAR: &str = "SCHEDULED_RUNS_REQUIRE_PEERS";
const REGION: &str = "us-east-1";

/// DynamoDB Local's endpoint; without one, fails when peers are required and otherwise
/// skips the whole binary (see the module docs).
fn endpoint() -> String {
    match std::env::var(ENDPOINT_VAR) {
        Ok(endpoint) if !endpoint.trim().is_empty() => endpoint.trim().to_owned(),
        _ => {
            assert!(
                std::env::var(REQUIRE_VAR).as_deref() != Ok("1"),
                "{ENDPOINT_VAR} is not set but {REQUIRE_VAR}=1: run `infra/local/dynamodb.sh \
                 start` and `source .test-env/dynamodb.env` first"
            );
            // Straight to the file descriptor: the test harness captures `eprintln!`, and
            // its capture is lost when the process ends here.
            let notice = format!(
                "\n!!!!!!!! SKIPPED store_contract_dynamodb: {ENDPOINT_VAR} is not set, so the \
                 DynamoDB store was NOT tested. Run `infra/local/dynamodb.sh start && source \
                 .test-env/dynamodb.env` (or set {REQUIRE_VAR}=1 to make this fail).\n\n"
            );
            let _ = std::io::stderr().write_all(notice.as_bytes());
            std::process::exit(0);
        }
    }
}

/// A client for DynamoDB Local, configured explicitly (endpoint, region, static test
/// credentials) so nothing from the environment can point it at a real account.
fn client(endpoint: &str) -> sdk::Client {
    use sdk::config::{BehaviorVersion, Credentials, Region};
    let config = sdk::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(scheduled_runs::aws_deployment::https_client())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "dynamodb-local",
        ))
        .endpoint_url(endpoint)
        .build();
    sdk::Client::from_conf(config)
}

/// Names the table the test ran on (DynamoDB Local runs in memory, so tables vanish with
/// it; the name helps when reading its log).
#[allow(dead_code)]
struct Table(String);

/// A new table with the store's layout, and the store over it.
async fn fresh_store() -> (Table, DynamoStore) {
    let client = client(&endpoint());
    let table = format!("contract-{}", uuid::Uuid::new_v4().simple());
    create_table(&client, &table)
        .await
        .expect("create a table on DynamoDB Local");
    (Table(table.clone()), DynamoStore::new(client, table))
}

async fn fresh() -> (Table, Stores) {
    let (table, store) = fresh_store().await;
    (table, Stores::from_store(store))
}

async fn fresh_notify() -> (Table, NotifyStores) {
    let (table, store) = fresh_store().await;
    (table, NotifyStores::from_store(store))
}

scheduled_runs_tests::store_contract_tests!(fresh);
scheduled_runs_tests::notification_store_contract_tests!(fresh_notify);

/// `#` separates the parts of every key; an id that contains it must not reach into
/// another workspace's items.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_with_key_separators_stay_in_their_workspace() {
    let (_table, store) = fresh_store().await;
    let at = Utc
        .with_ymd_and_hms(2026, 3, 2, 9, 0, 0)
        .single()
        .expect("valid instant");
    let workspace = |id: &str| Workspace {
        workspace_id: id.to_owned(),
        plan: Plan::Team,
        auto_archive_after_days: None,
        created_at: at,
    };
    let project = |ws: &str, id: &str| Project {
        project_id: id.to_owned(),
        workspace_id: ws.to_owned(),
        title: "t".to_owned(),
        description: None,
        created_by: "u".to_owned(),
        created_at: at,
        updated_at: at,
        archived: false,
        published_version: None,
        last_activity_at: at,
    };
    // Unescaped, workspace "a#P#x" and project "x" of workspace "a" share a partition.
    store.create_workspace(&workspace("a")).await.expect("a");
    store
        .create_workspace(&workspace("a#P#x"))
        .await
        .expect("a#P#x");
    store
        .create_project(&project("a", "x"))
        .await
        .expect("project x of a");
    assert_eq!(
        store.get_project("a#P#x", "x").await.expect("get"),
        None,
        "a's project is not visible through the look-alike workspace"
    );
    store
        .create_project(&project("a#P#x", "x"))
        .await
        .expect("a project of the look-alike workspace");
    let listed = store
        .list_projects("a", None, &PageRequest::first(10))
        .await
        .expect("list");
    assert_eq!(listed.items, vec![project("a", "x")]);
    assert!(matches!(
        store.create_project(&project("a", "x")).await,
        Err(PortError::AlreadyExists)
    ));
}

// Duplicate deliveries on the at-least-once edges, through the product's services on this
// store (scheduled_runs_tests::duplicates).

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_fires_dispatch_one_run() {
    let (_keep, s) = fresh().await;
    scheduled_runs_tests::duplicates::concurrent_fires_dispatch_one_run(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_of_fires_decides_each_as_one_after_another() {
    let (_keep, s) = fresh().await;
    scheduled_runs_tests::duplicates::a_batch_of_fires_decides_each_as_one_after_another(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_that_fails_part_way_is_retried_without_loss_or_doubles() {
    let (_keep, s) = fresh().await;
    scheduled_runs_tests::duplicates::a_batch_that_fails_part_way_is_retried_without_loss_or_doubles(&s)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_run_messages_execute_once() {
    let (_keep, s) = fresh().await;
    scheduled_runs_tests::duplicates::concurrent_deliveries_execute_once(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_runs_open_no_connection() {
    let (_keep, s) = fresh().await;
    scheduled_runs_tests::duplicates::cached_runs_open_no_connection(&s).await;
}
