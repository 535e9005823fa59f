//! How values cross the DynamoDB boundary: records in and out of the `data` map
//! (`serde_dynamo`), SDK errors into `PortError`, page cursors, and the two loops every
//! aggregate shares (a filtered, cursor-paged `Query`; a `TransactWriteItems` retried on
//! transaction conflicts). Kept in one place so every aggregate encodes, pages and fails
//! the same way.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{BuildError, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, TransactWriteItem};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::DynamoStore;
use super::table::{DATA, Index, PK, SK, TABLE};
use crate::ports::{PageRequest, PortError};

/// One DynamoDB item as the SDK hands it over.
pub(super) type Item = HashMap<String, AttributeValue>;

/// The most items one page returns, whatever the caller asks for (as the SQLite store).
pub(super) const MAX_PAGE: u32 = 1000;

/// `BatchGetItem` takes at most 100 keys per request.
const BATCH_GET_MAX: usize = 100;

/// Attempts of a write that lost a transaction conflict (or of a batch read with
/// unprocessed keys) before the caller is told to retry later.
const CONFLICT_ATTEMPTS: u32 = 25;

pub(super) fn page_size(page: &PageRequest) -> usize {
    page.limit.clamp(1, MAX_PAGE) as usize
}

// --- values --------------------------------------------------------------------------------

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn b(value: bool) -> AttributeValue {
    AttributeValue::Bool(value)
}

/// The record as the `data` map attribute.
pub(super) fn encode<T: Serialize>(value: &T, what: &str) -> Result<AttributeValue, PortError> {
    let item: Item = serde_dynamo::to_item(value)
        .map_err(|_| PortError::fatal(format!("dynamodb: cannot encode {what}")))?;
    Ok(AttributeValue::M(item))
}

/// Any serialisable value as one attribute (for `SET data.field = :v` updates).
pub(super) fn encode_value<T: Serialize>(
    value: &T,
    what: &str,
) -> Result<AttributeValue, PortError> {
    serde_dynamo::to_attribute_value(value)
        .map_err(|_| PortError::fatal(format!("dynamodb: cannot encode {what}")))
}

/// The record of an item. A record that no longer decodes is data corruption (or a schema
/// drift); retrying cannot help, so it is fatal. The message names the kind, never the
/// contents.
pub(super) fn decode<T: DeserializeOwned>(mut item: Item, what: &str) -> Result<T, PortError> {
    match item.remove(DATA) {
        Some(AttributeValue::M(map)) => serde_dynamo::from_item(map)
            .map_err(|_| PortError::fatal(format!("dynamodb: corrupt {what} item"))),
        _ => Err(PortError::fatal(format!(
            "dynamodb: {what} item without a record"
        ))),
    }
}

pub(super) fn decode_value<T: DeserializeOwned>(
    value: AttributeValue,
    what: &str,
) -> Result<T, PortError> {
    serde_dynamo::from_attribute_value(value)
        .map_err(|_| PortError::fatal(format!("dynamodb: corrupt {what} attribute")))
}

pub(super) fn string_attr<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v),
        _ => None,
    }
}

pub(super) fn key(pk: String, sk: impl Into<String>) -> Item {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

// --- errors ----------------------------------------------------------------------------------

/// Service error codes worth retrying: throttling, capacity, transient server trouble and
/// transaction conflicts (another transaction held an item a moment ago).
const RETRYABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionConflictException",
    "TransactionInProgressException",
    "LimitExceededException",
];

/// Translates an SDK failure into the port's vocabulary: throttling, 5xx, timeouts and
/// connection failures are retryable; validation errors, missing tables and everything
/// else are not. The message names the operation and the error code only — never the
/// SDK's text, which may quote request values.
pub(super) fn sdk_err<E>(op: &str, e: SdkError<E, HttpResponse>) -> PortError
where
    E: ProvideErrorMetadata,
{
    match &e {
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code().unwrap_or("UnknownError");
            let status = ctx.raw().status().as_u16();
            let message = format!("dynamodb {op}: {code} (HTTP {status})");
            if RETRYABLE_CODES.contains(&code) || status >= 500 {
                PortError::unavailable(message)
            } else {
                PortError::fatal(message)
            }
        }
        SdkError::TimeoutError(_) => PortError::unavailable(format!("dynamodb {op}: timeout")),
        SdkError::DispatchFailure(failure) => {
            let kind = if failure.is_timeout() {
                "timeout"
            } else if failure.is_io() {
                "connection failed"
            } else {
                "request not sent"
            };
            PortError::unavailable(format!("dynamodb {op}: {kind}"))
        }
        SdkError::ResponseError(_) => {
            PortError::unavailable(format!("dynamodb {op}: unreadable response"))
        }
        SdkError::ConstructionFailure(_) => {
            PortError::fatal(format!("dynamodb {op}: request could not be built"))
        }
        _ => PortError::fatal(format!("dynamodb {op}: failed")),
    }
}

/// The error code of a service error, if the failure was one.
pub(super) fn service_code<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> Option<&str> {
    match e {
        SdkError::ServiceError(ctx) => ctx.err().code(),
        _ => None,
    }
}

pub(super) fn build_err(e: BuildError) -> PortError {
    PortError::fatal(format!("dynamodb: invalid request: {e}"))
}

/// A short pause before retrying a conflict: exponential from 5 ms, at most 320 ms, with
/// full jitter so racing writers spread out instead of colliding again.
async fn backoff(attempt: u32) {
    let cap_ms = 5u64 << attempt.min(6);
    let jitter = getrandom::u64().unwrap_or(u64::from(attempt) * 7919);
    tokio::time::sleep(Duration::from_millis(1 + jitter % cap_ms)).await;
}

// --- cursors --------------------------------------------------------------------------------

/// What a cursor carries: the listing it belongs to and the key of the last item returned,
/// which is exactly the `ExclusiveStartKey` of the next page (keyset pagination: items
/// inserted meanwhile never shift or repeat a page).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CursorBody {
    l: String,
    k: BTreeMap<String, String>,
}

/// The key condition of a listing's sort key.
#[derive(Clone, Debug)]
pub(super) enum Range {
    All,
    /// Sort keys strictly below the bound.
    Below(String),
    /// Sort keys starting with the prefix.
    Prefix(String),
}

impl Range {
    fn admits(&self, sort_key: &str) -> bool {
        match self {
            Range::All => true,
            Range::Below(bound) => sort_key < bound.as_str(),
            Range::Prefix(prefix) => sort_key.starts_with(prefix.as_str()),
        }
    }
}

fn key_names(index: Index) -> Vec<&'static str> {
    let mut names = vec![PK, SK];
    if index != TABLE {
        names.extend([index.pk, index.sk]);
    }
    names
}

fn encode_cursor(tag: &str, index: Index, item: &Item) -> Result<String, PortError> {
    let mut k = BTreeMap::new();
    for name in key_names(index) {
        let value = string_attr(item, name).ok_or_else(|| {
            PortError::fatal(format!(
                "dynamodb: listed item lacks its key attribute {name}"
            ))
        })?;
        k.insert(name.to_owned(), value.to_owned());
    }
    let body = CursorBody {
        l: tag.to_owned(),
        k,
    };
    let json = serde_json::to_vec(&body)
        .map_err(|_| PortError::fatal("dynamodb: cannot encode a cursor"))?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

/// Decodes a cursor of the listing `tag`. A cursor this store did not issue for this very
/// listing (garbled, of another listing, of another partition — another workspace — or
/// outside the key condition) is the caller's mistake: `InvalidCursor`, never a request
/// that DynamoDB would reject.
fn decode_cursor(
    cursor: &str,
    tag: &str,
    index: Index,
    partition_ok: impl Fn(&str) -> bool,
    range: &Range,
) -> Result<Item, PortError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| PortError::InvalidCursor)?;
    let body: CursorBody = serde_json::from_slice(&bytes).map_err(|_| PortError::InvalidCursor)?;
    let names = key_names(index);
    if body.l != tag
        || body.k.len() != names.len()
        || names.iter().any(|name| !body.k.contains_key(*name))
    {
        return Err(PortError::InvalidCursor);
    }
    let partition = body.k.get(index.pk).map(String::as_str).unwrap_or_default();
    let sort_key = body.k.get(index.sk).map(String::as_str).unwrap_or_default();
    if !partition_ok(partition) || !range.admits(sort_key) {
        return Err(PortError::InvalidCursor);
    }
    Ok(body.k.into_iter().map(|(k, v)| (k, s(v))).collect())
}

/// Turns the `size + 1` items a page fetched into a page: the extra item only proves that
/// more follow, so the cursor is `None` exactly on the last page.
fn finish(
    tag: &str,
    index: Index,
    mut items: Vec<Item>,
    size: usize,
) -> Result<(Vec<Item>, Option<String>), PortError> {
    if items.len() <= size {
        return Ok((items, None));
    }
    items.truncate(size);
    let cursor = match items.last() {
        Some(last) => Some(encode_cursor(tag, index, last)?),
        None => None,
    };
    Ok((items, cursor))
}

// --- queries ---------------------------------------------------------------------------------

/// A server-side filter of a listing; its placeholders must not start with `#k`/`:k`,
/// which the key condition uses.
#[derive(Clone, Debug, Default)]
pub(super) struct Filter {
    pub expression: Vec<String>,
    pub names: Vec<(&'static str, &'static str)>,
    pub values: Vec<(&'static str, AttributeValue)>,
}

impl Filter {
    pub(super) fn and(
        &mut self,
        expression: &str,
        name: (&'static str, &'static str),
        value: Option<(&'static str, AttributeValue)>,
    ) {
        self.expression.push(expression.to_owned());
        if !self.names.contains(&name) {
            self.names.push(name);
        }
        self.values.extend(value);
    }

    fn is_empty(&self) -> bool {
        self.expression.is_empty()
    }
}

/// One listing: a partition of the table or of an index, read in sort-key order.
#[derive(Clone, Debug)]
pub(super) struct Listing {
    /// Names the listing inside its cursors, so a cursor of one listing is refused by
    /// every other.
    pub tag: &'static str,
    pub index: Index,
    pub partition: String,
    pub range: Range,
    pub forward: bool,
    pub filter: Filter,
}

impl Listing {
    pub(super) fn new(tag: &'static str, index: Index, partition: String) -> Listing {
        Listing {
            tag,
            index,
            partition,
            range: Range::All,
            forward: true,
            filter: Filter::default(),
        }
    }
}

impl DynamoStore {
    /// Strongly consistent `GetItem`.
    pub(super) async fn get_item(&self, key: Item) -> Result<Option<Item>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem", e))?;
        Ok(out.item)
    }

    /// Strongly consistent `BatchGetItem` of up to any number of keys; items come back in
    /// no particular order, missing ones are left out. Unprocessed keys are asked again.
    pub(super) async fn batch_get(&self, keys: Vec<Item>) -> Result<Vec<Item>, PortError> {
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_GET_MAX) {
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(chunk.to_vec()))
                    .consistent_read(true)
                    .build()
                    .map_err(build_err)?,
            );
            let mut attempt = 0;
            while let Some(request) = pending.take() {
                let mut out = self
                    .client
                    .batch_get_item()
                    .request_items(self.table.clone(), request)
                    .send()
                    .await
                    .map_err(|e| sdk_err("BatchGetItem", e))?;
                if let Some(mut responses) = out.responses.take() {
                    found.extend(responses.remove(&self.table).unwrap_or_default());
                }
                pending = out
                    .unprocessed_keys
                    .take()
                    .and_then(|mut unprocessed| unprocessed.remove(&self.table))
                    .filter(|rest| !rest.keys().is_empty());
                if pending.is_some() {
                    attempt += 1;
                    if attempt >= CONFLICT_ATTEMPTS {
                        return Err(PortError::unavailable(
                            "dynamodb BatchGetItem: keys left unprocessed",
                        ));
                    }
                    backoff(attempt).await;
                }
            }
        }
        Ok(found)
    }

    /// Reads up to `want` items of the listing from `start` on (following
    /// `LastEvaluatedKey`, since a filter or the 1 MB limit may cut a response short).
    pub(super) async fn query_items(
        &self,
        listing: &Listing,
        mut start: Option<Item>,
        want: usize,
    ) -> Result<Vec<Item>, PortError> {
        let mut out = Vec::new();
        if want == 0 {
            return Ok(out);
        }
        let index = listing.index;
        let mut condition = "#kp = :kp".to_owned();
        let mut values = vec![(":kp", s(listing.partition.clone()))];
        match &listing.range {
            Range::All => {}
            Range::Below(bound) => {
                condition.push_str(" AND #ks < :ks");
                values.push((":ks", s(bound.clone())));
            }
            Range::Prefix(prefix) => {
                condition.push_str(" AND begins_with(#ks, :ks)");
                values.push((":ks", s(prefix.clone())));
            }
        }
        let filtered = !listing.filter.is_empty();
        loop {
            let remaining = want - out.len();
            // A filter may drop most of what a page reads, so read ahead when filtering;
            // long walks go in requests of at most MAX_PAGE items.
            let limit = if filtered {
                remaining.max(100)
            } else {
                remaining
            }
            .min(MAX_PAGE as usize);
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .set_index_name(index.name.map(str::to_owned))
                .key_condition_expression(&condition)
                .expression_attribute_names("#kp", index.pk)
                .scan_index_forward(listing.forward)
                .limit(i32::try_from(limit).unwrap_or(1000))
                .set_exclusive_start_key(start.take())
                // Only the base table offers consistent reads; indexes are eventually
                // consistent (see docs/dynamodb.md).
                .consistent_read(index == TABLE);
            if !matches!(listing.range, Range::All) {
                query = query.expression_attribute_names("#ks", index.sk);
            }
            for (placeholder, value) in &values {
                query = query.expression_attribute_values(*placeholder, value.clone());
            }
            if filtered {
                query = query.filter_expression(listing.filter.expression.join(" AND "));
                for (placeholder, name) in &listing.filter.names {
                    query = query.expression_attribute_names(*placeholder, *name);
                }
                for (placeholder, value) in &listing.filter.values {
                    query = query.expression_attribute_values(*placeholder, value.clone());
                }
            }
            let response = query.send().await.map_err(|e| sdk_err("Query", e))?;
            for item in response.items.unwrap_or_default() {
                out.push(item);
                if out.len() == want {
                    return Ok(out);
                }
            }
            match response.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => return Ok(out),
            }
        }
    }

    /// One page of a single-partition listing and the cursor of the next.
    pub(super) async fn page(
        &self,
        listing: &Listing,
        page: &PageRequest,
    ) -> Result<(Vec<Item>, Option<String>), PortError> {
        let size = page_size(page);
        let start = match &page.cursor {
            Some(cursor) => Some(decode_cursor(
                cursor,
                listing.tag,
                listing.index,
                |partition| partition == listing.partition,
                &listing.range,
            )?),
            None => None,
        };
        let items = self.query_items(listing, start, size + 1).await?;
        finish(listing.tag, listing.index, items, size)
    }

    /// One page of a listing spread over the shards `partition(0..SHARDS)` of an index:
    /// the shards are walked in order, each in sort-key order.
    pub(super) async fn sharded_page(
        &self,
        tag: &'static str,
        index: Index,
        partition: impl Fn(u32) -> String,
        page: &PageRequest,
    ) -> Result<(Vec<Item>, Option<String>), PortError> {
        let size = page_size(page);
        let shards = super::table::SHARDS;
        let (mut shard, mut start) = match &page.cursor {
            Some(cursor) => {
                let start = decode_cursor(
                    cursor,
                    tag,
                    index,
                    |p| (0..shards).any(|i| partition(i) == p),
                    &Range::All,
                )?;
                let of_cursor = string_attr(&start, index.pk).unwrap_or_default();
                let shard = (0..shards)
                    .find(|i| partition(*i) == of_cursor)
                    .ok_or(PortError::InvalidCursor)?;
                (shard, Some(start))
            }
            None => (0, None),
        };
        let mut items = Vec::new();
        while shard < shards && items.len() <= size {
            let listing = Listing::new(tag, index, partition(shard));
            let got = self
                .query_items(&listing, start.take(), size + 1 - items.len())
                .await?;
            items.extend(got);
            shard += 1;
        }
        finish(tag, index, items, size)
    }

    /// Runs a transaction, retrying it while it loses conflicts with concurrent
    /// transactions. `Ok(Err(failed))` when conditions failed: `failed[i]` tells whether
    /// the condition of item `i` did (DynamoDB reports every item's outcome).
    pub(super) async fn transact(
        &self,
        op: &'static str,
        items: Vec<TransactWriteItem>,
    ) -> Result<Result<(), Vec<bool>>, PortError> {
        for attempt in 0..CONFLICT_ATTEMPTS {
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let e = match result {
                Ok(_) => return Ok(Ok(())),
                Err(e) => e,
            };
            if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
                e.as_service_error()
            {
                let codes: Vec<&str> = cancelled
                    .cancellation_reasons()
                    .iter()
                    .map(|r| r.code().unwrap_or("None"))
                    .collect();
                let failed: Vec<bool> = codes
                    .iter()
                    .map(|code| *code == "ConditionalCheckFailed")
                    .collect();
                if failed.iter().any(|f| *f) {
                    return Ok(Err(failed));
                }
                if codes.is_empty() || codes.contains(&"TransactionConflict") {
                    backoff(attempt).await;
                    continue;
                }
                let message = format!("dynamodb {op}: transaction cancelled ({codes:?})");
                return Err(
                    if codes
                        .iter()
                        .any(|c| matches!(*c, "ThrottlingError" | "ProvisionedThroughputExceeded"))
                    {
                        PortError::unavailable(message)
                    } else {
                        PortError::fatal(message)
                    },
                );
            }
            if matches!(
                service_code(&e),
                Some("TransactionConflictException" | "TransactionInProgressException")
            ) {
                backoff(attempt).await;
                continue;
            }
            return Err(sdk_err(op, e));
        }
        Err(PortError::unavailable(format!(
            "dynamodb {op}: kept losing transaction conflicts"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::aws::dynamodb::table::BY_PARENT;

    fn item(pairs: &[(&str, &str)]) -> Item {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), s(*v)))
            .collect()
    }

    #[test]
    fn cursors_round_trip_and_name_their_listing_and_partition() {
        let it = item(&[
            ("PK", "WS#a#P#p"),
            ("SK", "PROJECT"),
            ("GSI1PK", "WS#a#PROJECTS"),
            ("GSI1SK", "2026#p"),
            ("data", "ignored"),
        ]);
        let cursor = encode_cursor("projects", BY_PARENT, &it).expect("encode");
        let key = decode_cursor(
            &cursor,
            "projects",
            BY_PARENT,
            |p| p == "WS#a#PROJECTS",
            &Range::All,
        )
        .expect("decode");
        assert_eq!(key.len(), 4);
        assert_eq!(string_attr(&key, "GSI1SK"), Some("2026#p"));

        let refuse = |cursor: &str, tag: &str, partition: &str, range: Range| {
            matches!(
                decode_cursor(cursor, tag, BY_PARENT, |p| p == partition, &range),
                Err(PortError::InvalidCursor)
            )
        };
        assert!(refuse(&cursor, "schedules", "WS#a#PROJECTS", Range::All));
        assert!(refuse(&cursor, "projects", "WS#b#PROJECTS", Range::All));
        assert!(refuse(
            &cursor,
            "projects",
            "WS#a#PROJECTS",
            Range::Below("2025".to_owned())
        ));
        for garbage in ["%%%not base64%%%", "bm90LWpzb24", "WzEsMiwzXQ", ""] {
            assert!(refuse(garbage, "projects", "WS#a#PROJECTS", Range::All));
        }
        // A cursor of the base table lacks the index keys.
        let table_cursor = encode_cursor("projects", TABLE, &it).expect("encode");
        assert!(refuse(
            &table_cursor,
            "projects",
            "WS#a#PROJECTS",
            Range::All
        ));
    }

    #[test]
    fn pages_carry_a_cursor_only_when_more_items_follow() {
        let items: Vec<Item> = (0..3)
            .map(|i| {
                let sk = format!("S{i}");
                item(&[("PK", "p"), ("SK", sk.as_str())])
            })
            .collect();
        let (page, cursor) = finish("t", TABLE, items.clone(), 2).expect("finish");
        assert_eq!(page.len(), 2);
        assert!(cursor.is_some());
        let (page, cursor) = finish("t", TABLE, items, 3).expect("finish");
        assert_eq!(page.len(), 3);
        assert!(cursor.is_none());
    }

    #[test]
    fn records_round_trip_through_the_data_map() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Record {
            a: String,
            b: Option<u32>,
            c: Vec<serde_json::Value>,
        }
        let record = Record {
            a: "x".to_owned(),
            b: None,
            c: vec![
                serde_json::json!(1),
                serde_json::json!(2.5),
                serde_json::json!(null),
            ],
        };
        let mut it = Item::new();
        it.insert(DATA.to_owned(), encode(&record, "record").expect("encode"));
        let back: Record = decode(it, "record").expect("decode");
        assert_eq!(back, record);
        assert!(matches!(
            decode::<Record>(Item::new(), "record"),
            Err(PortError::Unavailable {
                retryable: false,
                ..
            })
        ));
    }
}
