//! `DeliveryStore` over `deliveries`: one row per delivery of a run's notifications. The
//! claim reads and writes inside one `BEGIN IMMEDIATE` transaction, so of any number of
//! handlers of the same run event exactly one holds a delivery at a time.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::Row;

use super::codec::{from_json, to_json};
use super::{SqliteStore, db_err, exec, query_all, query_opt};
use crate::domain::model::DeliveryRecord;
use crate::ports::{DeliveryClaim, DeliveryStore, PortError};

fn delivery_from_row(row: &Row<'_>) -> Result<DeliveryRecord, PortError> {
    from_json(&row.get::<_, String>(0).map_err(db_err)?, "delivery")
}

const GET: &str = "SELECT body FROM deliveries
     WHERE workspace_id = ?1 AND run_id = ?2 AND delivery_id = ?3";

#[async_trait]
impl DeliveryStore for SqliteStore {
    async fn claim_delivery(
        &self,
        workspace_id: &str,
        run_id: &str,
        record: &DeliveryRecord,
        now: DateTime<Utc>,
    ) -> Result<DeliveryClaim, PortError> {
        let (ws, run) = (workspace_id.to_owned(), run_id.to_owned());
        let record = record.clone();
        self.write(move |tx| {
            let run_exists = query_opt(
                tx,
                "SELECT 1 FROM runs WHERE workspace_id = ?1 AND run_id = ?2",
                (&ws, &run),
                |_| Ok(()),
            )?;
            if run_exists.is_none() {
                return Err(PortError::NotFound);
            }
            let stored = query_opt(tx, GET, (&ws, &run, &record.delivery_id), delivery_from_row)?;
            let claimed = match stored {
                None => record,
                Some(stored) if stored.status.is_final() => return Ok(DeliveryClaim::Done(stored)),
                Some(stored) if stored.lease_until.is_some_and(|l| l > now) => {
                    return Ok(DeliveryClaim::Busy(stored));
                }
                // The last claimant's lease ran out: it died. Take over, keeping its attempts.
                Some(stored) => DeliveryRecord {
                    claim_token: record.claim_token,
                    lease_until: record.lease_until,
                    updated_at: record.updated_at,
                    ..stored
                },
            };
            exec(
                tx,
                "INSERT INTO deliveries (run_id, delivery_id, workspace_id, body)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (run_id, delivery_id) DO UPDATE SET body = excluded.body",
                (&run, &claimed.delivery_id, &ws, to_json(&claimed)?),
            )?;
            Ok(DeliveryClaim::Claimed(claimed))
        })
        .await
    }

    async fn save_delivery(
        &self,
        workspace_id: &str,
        run_id: &str,
        record: &DeliveryRecord,
    ) -> Result<(), PortError> {
        let (ws, run) = (workspace_id.to_owned(), run_id.to_owned());
        let record = record.clone();
        self.write(move |tx| {
            let stored = query_opt(tx, GET, (&ws, &run, &record.delivery_id), delivery_from_row)?
                .ok_or(PortError::NotFound)?;
            if stored.claim_token != record.claim_token {
                return Err(PortError::VersionMismatch);
            }
            exec(
                tx,
                "UPDATE deliveries SET body = ?4
                 WHERE workspace_id = ?1 AND run_id = ?2 AND delivery_id = ?3",
                (&ws, &run, &record.delivery_id, to_json(&record)?),
            )?;
            Ok(())
        })
        .await
    }

    async fn list_deliveries(
        &self,
        workspace_id: &str,
        run_id: &str,
    ) -> Result<Vec<DeliveryRecord>, PortError> {
        let (ws, run) = (workspace_id.to_owned(), run_id.to_owned());
        let mut records = self
            .read(move |conn| {
                query_all(
                    conn,
                    "SELECT body FROM deliveries WHERE run_id = ?1 AND workspace_id = ?2",
                    (&run, &ws),
                    delivery_from_row,
                )
            })
            .await?;
        records.sort_by(|a, b| (a.channel, &a.target).cmp(&(b.channel, &b.target)));
        Ok(records)
    }
}
