//! `DeliveryStore`: one item per delivery of a run's notifications, in the run's own
//! partition (`WS#w#R#r` / `DELIVERY#d`). A run's deliveries are then one strongly
//! consistent `Query`, the workspace is part of every key (a run cannot be reached through
//! another workspace), and each delivery carries the run's TTL so it expires with the run.
//!
//! Claims are conditional `PutItem`s, never read-then-write: a new delivery is written
//! only if none exists (`attribute_not_exists`), a claim whose lease ran out is taken over
//! only if the stored claim is still the one the claimant saw (`claimToken` and `PENDING`).
//! A refused write returns the stored delivery (`ReturnValuesOnConditionCheckFailure`),
//! which is all the claimant needs to tell `Done` from `Busy` or to try the takeover —
//! so of any number of concurrent claimants exactly one holds the delivery.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Utc};

use super::DynamoStore;
use super::codec::{Item, Listing, Range, decode, encode, key, s, sdk_err};
use super::table::{DATA, DELIVERY_PREFIX, EXPIRES_AT, PK, RUN_SK, TABLE, delivery_sk, run_pk};
use crate::domain::model::{DeliveryRecord, DeliveryStatus};
use crate::ports::{DeliveryClaim, DeliveryStore, PortError};

/// Top-level copies of the record fields the conditions compare.
const STATUS: &str = "status";
const CLAIM_TOKEN: &str = "claimToken";

/// Rounds of "write refused, look at what is stored, try again" before giving up. Each
/// round means another claimant changed the delivery meanwhile; two are the usual most.
const CLAIM_ROUNDS: u32 = 8;

fn delivery_key(workspace_id: &str, run_id: &str, record: &DeliveryRecord) -> Item {
    key(
        run_pk(workspace_id, run_id),
        delivery_sk(&record.delivery_id),
    )
}

fn delivery_item(
    workspace_id: &str,
    run_id: &str,
    record: &DeliveryRecord,
    expires_at: Option<&AttributeValue>,
) -> Result<Item, PortError> {
    let mut item = delivery_key(workspace_id, run_id, record);
    item.insert(STATUS.to_owned(), s(record.status.as_str()));
    if let Some(token) = &record.claim_token {
        item.insert(CLAIM_TOKEN.to_owned(), s(token.clone()));
    }
    if let Some(expires_at) = expires_at {
        item.insert(EXPIRES_AT.to_owned(), expires_at.clone());
    }
    item.insert(DATA.to_owned(), encode(record, "delivery")?);
    Ok(item)
}

/// What a claimant does about the stored delivery it found.
enum Next {
    Answer(DeliveryClaim),
    /// Take the delivery over with this record (the stored one, with the new claim).
    TakeOver(DeliveryRecord),
}

/// The claim rules of the port (`DeliveryStore::claim_delivery`), for a stored delivery.
fn decide(stored: DeliveryRecord, claim: &DeliveryRecord, now: DateTime<Utc>) -> Next {
    if stored.status.is_final() {
        return Next::Answer(DeliveryClaim::Done(stored));
    }
    // This very claim (its token is made for it), written by an attempt whose answer was
    // lost: the SDK's retry was refused by the item it had written itself. Seen as
    // someone else's, the delivery would wait out its own lease (two Lambda retries).
    if stored.claim_token.is_some() && stored.claim_token == claim.claim_token {
        return Next::Answer(DeliveryClaim::Claimed(stored));
    }
    if stored.lease_until.is_some_and(|lease| lease > now) {
        return Next::Answer(DeliveryClaim::Busy(stored));
    }
    // The last claimant's lease ran out: it died. Take over, keeping its attempts.
    Next::TakeOver(DeliveryRecord {
        claim_token: claim.claim_token.clone(),
        lease_until: claim.lease_until,
        updated_at: claim.updated_at,
        ..stored
    })
}

impl DynamoStore {
    /// The run's TTL attribute, `None` inside when the run has none; `NotFound` when
    /// there is no such run in the workspace. Strongly consistent: a claim may follow the
    /// run's creation closely.
    async fn run_expiry(
        &self,
        workspace_id: &str,
        run_id: &str,
    ) -> Result<Option<AttributeValue>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(run_pk(workspace_id, run_id), RUN_SK)))
            .consistent_read(true)
            // The key too, so an existing run never comes back as an empty projection.
            .projection_expression("#pk, #expires")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#expires", EXPIRES_AT)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem", e))?;
        match out.item {
            Some(mut item) => Ok(item.remove(EXPIRES_AT)),
            None => Err(PortError::NotFound),
        }
    }
}

#[async_trait]
impl DeliveryStore for DynamoStore {
    async fn claim_delivery(
        &self,
        workspace_id: &str,
        run_id: &str,
        record: &DeliveryRecord,
        now: DateTime<Utc>,
    ) -> Result<DeliveryClaim, PortError> {
        let expires_at = self.run_expiry(workspace_id, run_id).await?;
        // What to write, and the claim token the stored delivery must still have (`None`
        // while no delivery is stored).
        let mut candidate = record.clone();
        let mut seen: Option<Option<String>> = None;
        for _ in 0..CLAIM_ROUNDS {
            let mut put = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(delivery_item(
                    workspace_id,
                    run_id,
                    &candidate,
                    expires_at.as_ref(),
                )?))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                );
            put = match &seen {
                None => put
                    .condition_expression("attribute_not_exists(#pk)")
                    .expression_attribute_names("#pk", PK),
                Some(token) => {
                    let put = put
                        .expression_attribute_names("#status", STATUS)
                        .expression_attribute_names("#claim", CLAIM_TOKEN)
                        .expression_attribute_values(
                            ":pending",
                            s(DeliveryStatus::Pending.as_str()),
                        );
                    match token {
                        Some(token) => put
                            .condition_expression("#status = :pending AND #claim = :seen")
                            .expression_attribute_values(":seen", s(token.clone())),
                        None => put.condition_expression(
                            "#status = :pending AND attribute_not_exists(#claim)",
                        ),
                    }
                }
            };
            let e = match put.send().await {
                Ok(_) => return Ok(DeliveryClaim::Claimed(candidate)),
                Err(e) => e,
            };
            let Some(PutItemError::ConditionalCheckFailedException(failed)) = e.as_service_error()
            else {
                return Err(sdk_err("PutItem", e));
            };
            // The refusal carries the stored delivery; read it should it not.
            let stored = match failed.item() {
                Some(item) => Some(item.clone()),
                None => {
                    self.get_item(delivery_key(workspace_id, run_id, record))
                        .await?
                }
            };
            let Some(item) = stored else {
                // The delivery we meant to take over is gone (it expired with its run
                // between two requests): claim it as a new one.
                candidate = record.clone();
                seen = None;
                continue;
            };
            let stored: DeliveryRecord = decode(item, "delivery")?;
            let token = stored.claim_token.clone();
            match decide(stored, record, now) {
                Next::Answer(answer) => return Ok(answer),
                Next::TakeOver(next) => {
                    candidate = next;
                    seen = Some(token);
                }
            }
        }
        Err(PortError::unavailable(
            "dynamodb claim_delivery: the delivery kept changing under the claim",
        ))
    }

    async fn save_delivery(
        &self,
        workspace_id: &str,
        run_id: &str,
        record: &DeliveryRecord,
    ) -> Result<(), PortError> {
        // An update, not a put: the item keeps its TTL (the run's) without another read.
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(delivery_key(workspace_id, run_id, record)))
            .update_expression("SET #d = :d, #status = :status")
            .expression_attribute_names("#d", DATA)
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#claim", CLAIM_TOKEN)
            .expression_attribute_values(":d", encode(record, "delivery")?)
            .expression_attribute_values(":status", s(record.status.as_str()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        update = match &record.claim_token {
            Some(token) => update
                .condition_expression("attribute_exists(#pk) AND #claim = :claim")
                .expression_attribute_values(":claim", s(token.clone())),
            None => update
                .condition_expression("attribute_exists(#pk) AND attribute_not_exists(#claim)"),
        };
        let e = match update.send().await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let Some(UpdateItemError::ConditionalCheckFailedException(failed)) = e.as_service_error()
        else {
            return Err(sdk_err("UpdateItem", e));
        };
        // Stored under another claim: it was taken over. Not stored at all: unknown.
        let exists = match failed.item() {
            Some(_) => true,
            None => self
                .get_item(delivery_key(workspace_id, run_id, record))
                .await?
                .is_some(),
        };
        Err(if exists {
            PortError::VersionMismatch
        } else {
            PortError::NotFound
        })
    }

    async fn list_deliveries(
        &self,
        workspace_id: &str,
        run_id: &str,
    ) -> Result<Vec<DeliveryRecord>, PortError> {
        // A run has a handful of deliveries (one per recipient and channel, bounded by the
        // notification limits): one unpaged, strongly consistent Query of its partition.
        let mut listing = Listing::new("deliveries", TABLE, run_pk(workspace_id, run_id));
        listing.range = Range::Prefix(DELIVERY_PREFIX.to_owned());
        let mut records = self
            .query_items(&listing, None, usize::MAX)
            .await?
            .into_iter()
            .map(|item| decode(item, "delivery"))
            .collect::<Result<Vec<DeliveryRecord>, _>>()?;
        records.sort_by(|a, b| (a.channel, &a.target).cmp(&(b.channel, &b.target)));
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::DeliveryChannel;
    use chrono::{Duration, TimeZone};

    fn record(token: &str, status: DeliveryStatus, lease: Option<DateTime<Utc>>) -> DeliveryRecord {
        let at = Utc
            .with_ymd_and_hms(2026, 6, 1, 9, 0, 0)
            .single()
            .expect("valid");
        DeliveryRecord {
            delivery_id: "d-1".into(),
            channel: DeliveryChannel::Email,
            target: "a***@example.com".into(),
            status,
            attempts: 0,
            error: None,
            reasons: Vec::new(),
            created_at: at,
            updated_at: at,
            claim_token: Some(token.into()),
            lease_until: lease,
        }
    }

    #[test]
    fn a_refusal_by_the_claim_s_own_write_is_the_claim() {
        let now = Utc
            .with_ymd_and_hms(2026, 6, 1, 9, 0, 1)
            .single()
            .expect("valid");
        let lease = Some(now + Duration::seconds(150));
        let mine = record("mine", DeliveryStatus::Pending, lease);
        match decide(mine.clone(), &mine, now) {
            Next::Answer(DeliveryClaim::Claimed(claimed)) => {
                assert_eq!(claimed.claim_token.as_deref(), Some("mine"));
            }
            _ => panic!("our own stored claim is ours"),
        }
        // Another claimant's live claim is busy, its finished delivery done.
        let theirs = record("theirs", DeliveryStatus::Pending, lease);
        assert!(matches!(
            decide(theirs, &mine, now),
            Next::Answer(DeliveryClaim::Busy(_))
        ));
        let done = record("mine", DeliveryStatus::Delivered, None);
        assert!(matches!(
            decide(done, &mine, now),
            Next::Answer(DeliveryClaim::Done(_))
        ));
    }
}
