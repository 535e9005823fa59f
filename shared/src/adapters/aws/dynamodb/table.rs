//! The single table: its key attributes, its three global secondary indexes, the key of
//! every item kind, and `create_table` (used by the tests and by infrastructure helpers;
//! `template.yaml` declares the same table). `docs/dynamodb.md` explains the design from
//! the access patterns; this file is its executable form.
//!
//! Every key is built here and nowhere else, so the layout can be read in one place:
//!
//! | item | `PK` | `SK` | GSI1 (`GSI1PK` / `GSI1SK`) | GSI2 | GSI3 |
//! |---|---|---|---|---|---|
//! | workspace | `WS#w` | `WORKSPACE` | `WORKSPACES` / created#w | | |
//! | user | `WS#w` | `USER#u` | | | |
//! | connection | `WS#w` | `CONN#name` | | | |
//! | project | `WS#w#P#p` | `PROJECT` | `WS#w#PROJECTS` / created#p | `WS#w#IDLE` / activity#p (not archived) | |
//! | draft, versions, results | `WS#w#P#p` | `DRAFT`, `VERSION#0000000001`, `RESULTS` | | | |
//! | member | `WS#w#P#p` | `MEMBER#u` | `WS#w#MEMBER#u` / projectCreated#p | | |
//! | schedule counters | `WS#w#P#p` | `COUNT#SCHEDULES`, `COUNT#HOURLY`, `COUNT#CREATOR#u` | | | |
//! | schedule | `WS#w#S#s` | `SCHEDULE` | `WS#w#P#p#SCHEDULES` / created#s | `WS#w#SCHEDULES` / created#s | `SCHEDULES#n` / `WS#w#S#s` |
//! | active-run marker | `WS#w#S#s` | `ACTIVE_RUN` | | | |
//! | run | `WS#w#R#r` | `RUN` | `WS#w#S#s#RUNS` / logAt#r (schedule runs) | `WS#w#P#p#RUNS` / created#r | `ACTIVE_RUNS#n` / created#w#r (PENDING, RUNNING); `PENDING_EVENTS#n` / ended#w#r (ended, event not yet published) |
//! | delivery of a run's notifications | `WS#w#R#r` | `DELIVERY#d` | | | |
//! | integrations (Slack, signing secret) | `WS#w` | `INTEGRATIONS` | | | |
//! | SQL cache entry | `WS#w#CACHE#k` | `CACHE` | | | |
//! | rate-limit window | `RATE#k#windowStart` | `RATE` | | | |

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

use super::codec::{build_err, sdk_err};
use crate::ports::PortError;

pub const PK: &str = "PK";
pub const SK: &str = "SK";
pub const GSI1: &str = "GSI1";
pub const GSI1PK: &str = "GSI1PK";
pub const GSI1SK: &str = "GSI1SK";
pub const GSI2: &str = "GSI2";
pub const GSI2PK: &str = "GSI2PK";
pub const GSI2SK: &str = "GSI2SK";
pub const GSI3: &str = "GSI3";
pub const GSI3PK: &str = "GSI3PK";
pub const GSI3SK: &str = "GSI3SK";
/// The whole record (workspace, project, schedule, run, ...) as a map, written and read
/// with `serde_dynamo`. Key, index and condition attributes sit beside it at the top level.
pub const DATA: &str = "data";
/// The TTL attribute (epoch seconds) of runs, SQL cache entries and rate-limit windows.
pub const EXPIRES_AT: &str = "expiresAt";

/// Partitions of the operator listings (`list_all_schedules`, `list_active_runs`). Every
/// run enters and leaves the active-run index, so one partition key would take all of
/// those index writes; eight spread them, and a walk costs at most eight extra queries.
pub const SHARDS: u32 = 8;

/// The index that holds an item kind's listing, with its key attribute names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Index {
    /// `None` for the base table.
    pub name: Option<&'static str>,
    pub pk: &'static str,
    pub sk: &'static str,
}

pub const TABLE: Index = Index {
    name: None,
    pk: PK,
    sk: SK,
};
pub const BY_PARENT: Index = Index {
    name: Some(GSI1),
    pk: GSI1PK,
    sk: GSI1SK,
};
pub const BY_WORKSPACE: Index = Index {
    name: Some(GSI2),
    pk: GSI2PK,
    sk: GSI2SK,
};
pub const OPERATOR: Index = Index {
    name: Some(GSI3),
    pk: GSI3PK,
    sk: GSI3SK,
};

/// RFC 3339 in UTC with exactly nine fractional digits: fixed width, so it sorts as text
/// in time order inside sort keys and compares correctly in condition expressions.
pub fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Epoch seconds for the TTL attribute, rounded up so DynamoDB never deletes an item
/// before the instant its readers treat as its expiry.
pub fn ttl(t: &DateTime<Utc>) -> i64 {
    let secs = t.timestamp();
    if t.timestamp_subsec_nanos() > 0 {
        secs + 1
    } else {
        secs
    }
}

/// Ids come from tokens and operators; `#` separates key parts, so it (and the escape
/// character) is percent-encoded: no id can reach into another item's key space.
pub fn esc(id: &str) -> String {
    if !id.contains(['#', '%']) {
        return id.to_owned();
    }
    id.replace('%', "%25").replace('#', "%23")
}

/// A stable shard of an id, `0..SHARDS`.
pub fn shard_of(id: &str) -> u32 {
    let digest = Sha256::digest(id.as_bytes());
    u32::from(digest[0]) % SHARDS
}

// --- workspaces and users ------------------------------------------------------------

pub fn workspace_pk(ws: &str) -> String {
    format!("WS#{}", esc(ws))
}
pub const WORKSPACE_SK: &str = "WORKSPACE";
pub const WORKSPACES: &str = "WORKSPACES";
pub fn user_sk(user: &str) -> String {
    format!("USER#{}", esc(user))
}
pub fn connection_sk(name: &str) -> String {
    format!("CONN#{}", esc(name))
}
pub const CONNECTION_PREFIX: &str = "CONN#";

// --- projects ------------------------------------------------------------------------

pub fn project_pk(ws: &str, project: &str) -> String {
    format!("WS#{}#P#{}", esc(ws), esc(project))
}
pub const PROJECT_SK: &str = "PROJECT";
pub const DRAFT_SK: &str = "DRAFT";
pub const RESULTS_SK: &str = "RESULTS";
pub fn version_sk(version: u32) -> String {
    format!("VERSION#{version:010}")
}
pub fn member_sk(user: &str) -> String {
    format!("MEMBER#{}", esc(user))
}
pub fn projects_of(ws: &str) -> String {
    format!("WS#{}#PROJECTS", esc(ws))
}
pub fn memberships_of(ws: &str, user: &str) -> String {
    format!("WS#{}#MEMBER#{}", esc(ws), esc(user))
}
pub fn idle_projects_of(ws: &str) -> String {
    format!("WS#{}#IDLE", esc(ws))
}
/// `{instant}#{id}`: time order, the id as tie-break.
pub fn at_then(t: &DateTime<Utc>, id: &str) -> String {
    format!("{}#{}", ts(t), esc(id))
}

// --- schedules -------------------------------------------------------------------------

pub fn schedule_pk(ws: &str, schedule: &str) -> String {
    format!("WS#{}#S#{}", esc(ws), esc(schedule))
}
pub const SCHEDULE_SK: &str = "SCHEDULE";
pub fn schedules_of_project(ws: &str, project: &str) -> String {
    format!("WS#{}#P#{}#SCHEDULES", esc(ws), esc(project))
}
pub fn schedules_of_workspace(ws: &str) -> String {
    format!("WS#{}#SCHEDULES", esc(ws))
}
pub fn all_schedules_shard(shard: u32) -> String {
    format!("SCHEDULES#{shard}")
}
/// The counter items of a project's schedules (in the project's partition).
pub const COUNT_SCHEDULES_SK: &str = "COUNT#SCHEDULES";
pub const COUNT_HOURLY_SK: &str = "COUNT#HOURLY";
pub fn count_creator_sk(user: &str) -> String {
    format!("COUNT#CREATOR#{}", esc(user))
}

// --- runs ------------------------------------------------------------------------------

pub fn run_pk(ws: &str, run: &str) -> String {
    format!("WS#{}#R#{}", esc(ws), esc(run))
}
pub const RUN_SK: &str = "RUN";
pub fn runs_of_schedule(ws: &str, schedule: &str) -> String {
    format!("WS#{}#S#{}#RUNS", esc(ws), esc(schedule))
}
pub fn runs_of_project(ws: &str, project: &str) -> String {
    format!("WS#{}#P#{}#RUNS", esc(ws), esc(project))
}
pub fn active_runs_shard(shard: u32) -> String {
    format!("ACTIVE_RUNS#{shard}")
}
/// The outbox of run events: an ended run is in one of these GSI3 partitions from the
/// write that ends it until its event is published (it has left `ACTIVE_RUNS#n` in that
/// same write, so a run is in at most one GSI3 partition at a time).
pub fn pending_events_shard(shard: u32) -> String {
    format!("{PENDING_EVENTS_PREFIX}{shard}")
}
pub const PENDING_EVENTS_PREFIX: &str = "PENDING_EVENTS#";
/// A delivery of the run's notifications, in the run's partition: listing a run's
/// deliveries is one `Query` of that partition, and they expire with the run (TTL).
pub fn delivery_sk(delivery: &str) -> String {
    format!("{DELIVERY_PREFIX}{}", esc(delivery))
}
pub const DELIVERY_PREFIX: &str = "DELIVERY#";

// --- notification integrations -----------------------------------------------------------

/// The workspace's integrations item (in the workspace partition).
pub const INTEGRATIONS_SK: &str = "INTEGRATIONS";

// --- SQL cache and rate limits -----------------------------------------------------------

pub fn cache_pk(ws: &str, key: &str) -> String {
    format!("WS#{}#CACHE#{}", esc(ws), esc(key))
}
pub const CACHE_SK: &str = "CACHE";
pub fn rate_pk(key: &str, window_start: &DateTime<Utc>) -> String {
    format!("RATE#{}#{}", esc(key), ts(window_start))
}
pub const RATE_SK: &str = "RATE";

// --- the table itself ------------------------------------------------------------------------

/// Creates the table with its indexes (on-demand capacity); returns when the table is
/// `ACTIVE`. The tests and benches make one table each on DynamoDB Local; a deployment
/// creates the same table from `template.yaml`, which also turns on TTL deletion on
/// `expiresAt`.
///
/// TTL deletion stays off here: DynamoDB Local deletes an expired item by the wall clock
/// within seconds, while the tests drive the store with simulated clocks whose runs
/// expired long ago by the wall clock, so their items vanished at random moments. The
/// store never relies on TTL deletion (every read checks the exact expiry, since
/// DynamoDB's own deletion lags by up to days), so leaving it off loses nothing else.
pub async fn create_table(client: &Client, table: &str) -> Result<(), PortError> {
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(build_err)
    };
    let string_attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(build_err)
    };
    let index = |idx: Index| -> Result<GlobalSecondaryIndex, PortError> {
        GlobalSecondaryIndex::builder()
            .index_name(idx.name.unwrap_or_default())
            .key_schema(key(idx.pk, KeyType::Hash)?)
            .key_schema(key(idx.sk, KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .map_err(build_err)
    };

    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(PK, KeyType::Hash)?)
        .key_schema(key(SK, KeyType::Range)?);
    for attr in [PK, SK, GSI1PK, GSI1SK, GSI2PK, GSI2SK, GSI3PK, GSI3SK] {
        request = request.attribute_definitions(string_attr(attr)?);
    }
    for idx in [BY_PARENT, BY_WORKSPACE, OPERATOR] {
        request = request.global_secondary_indexes(index(idx)?);
    }
    request
        .send()
        .await
        .map_err(|e| sdk_err("CreateTable", e))?;

    // On AWS the table takes a few seconds to become ACTIVE; DynamoDB Local is at once.
    for _ in 0..120 {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| sdk_err("DescribeTable", e))?;
        let status = described.table().and_then(|t| t.table_status());
        if status == Some(&aws_sdk_dynamodb::types::TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    Err(PortError::unavailable(format!(
        "dynamodb: table {table} did not become ACTIVE"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ids_cannot_forge_key_separators() {
        assert_eq!(esc("plain-id"), "plain-id");
        assert_eq!(esc("a#P#b"), "a%23P%23b");
        assert_eq!(esc("100%#"), "100%25%23");
        assert_ne!(project_pk("a#P#b", "c"), project_pk("a", "b#P#c"));
    }

    #[test]
    fn sort_keys_order_by_time_then_id() {
        let t = Utc
            .with_ymd_and_hms(2026, 3, 8, 7, 30, 0)
            .single()
            .expect("valid instant");
        let later = t + chrono::Duration::nanoseconds(1);
        assert!(at_then(&t, "z") < at_then(&later, "a"));
        assert!(at_then(&t, "a") < at_then(&t, "b"));
        // An instant used as an exclusive upper bound excludes keys at that instant.
        assert!(at_then(&t, "a").as_str() > ts(&t).as_str());
        assert!(version_sk(9) < version_sk(10));
    }

    #[test]
    fn ttl_rounds_up_and_shards_are_in_range() {
        let t = Utc
            .with_ymd_and_hms(2026, 3, 8, 7, 30, 0)
            .single()
            .expect("valid instant");
        assert_eq!(ttl(&t), t.timestamp());
        assert_eq!(
            ttl(&(t + chrono::Duration::milliseconds(1))),
            t.timestamp() + 1
        );
        for id in ["a", "b", "run-1", "sched-2"] {
            assert!(shard_of(id) < SHARDS);
            assert_eq!(shard_of(id), shard_of(id));
        }
    }
}
