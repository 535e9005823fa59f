//! `result_rows`: a query result's rows stored once, under the result's identity
//! (`Rows::id`), and referenced by the runs and SQL-cache entries that show it (migration
//! 5). A run answered from the cache shows the very rows of the entry, so its write is a
//! reference and a longer expiry, not up to 1,000 rows encoded and written again.
//!
//! Writers prepare outside the writer lock (encoding rows no store has seen) and keep
//! inside the transaction that writes the referencing record, so a record is never
//! visible without its rows. Readers hydrate with the same connection they read the
//! record with.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use rusqlite::{Connection, Transaction};
use uuid::Uuid;

use super::codec::{from_json, to_json, ts};
use super::{db_err, exec, query_opt};
use crate::domain::model::Rows;
use crate::ports::PortError;

/// Results of fewer rows stay inside the record's body: for them a second row costs more
/// than the bytes it saves.
pub(super) const SHARED_MIN_ROWS: usize = 16;

/// Rows to keep in `result_rows`, prepared before the writer is taken.
pub(super) struct PreparedRows {
    id: Uuid,
    rows: Rows,
    /// The encoding of rows that have never had an identity, so no store can have them:
    /// they will certainly be inserted. `None` for rows that may be stored already.
    json: Option<String>,
}

impl PreparedRows {
    pub(super) fn id(&self) -> Uuid {
        self.id
    }
}

/// `Some` when `rows` are to be stored apart from their record's body.
pub(super) fn prepare(rows: &Rows) -> Result<Option<PreparedRows>, PortError> {
    if rows.len() < SHARED_MIN_ROWS {
        return Ok(None);
    }
    let json = if rows.has_id() {
        None
    } else {
        Some(to_json(rows)?)
    };
    Ok(Some(PreparedRows {
        id: rows.id(),
        rows: rows.clone(),
        json,
    }))
}

/// Inside the transaction writing a record that references `prepared`, expiring at
/// `expires_at`: the rows are stored for the workspace until at least then.
///
/// Rows are kept to the whole hour (UTC) at or after the expiry of the longest-lived
/// record that references them, so the other records of that hour that show the same
/// result find them kept long enough already and only read their expiry: the runs of a
/// burst answered from the same cache entries write no rows (BENCHMARKS.md §7). Rows
/// outlive their records by less than an hour.
pub(super) fn keep(
    tx: &Transaction<'_>,
    workspace_id: &str,
    expires_at: &DateTime<Utc>,
    prepared: &PreparedRows,
) -> Result<(), PortError> {
    let id = prepared.id.to_string();
    let until = ts(&whole_hour_at_or_after(expires_at));
    let json = match &prepared.json {
        Some(json) => json,
        None => {
            let stored: Option<String> = query_opt(
                tx,
                "SELECT expires_at FROM result_rows WHERE id = ?1 AND workspace_id = ?2",
                (&id, workspace_id),
                |row| row.get(0).map_err(db_err),
            )?;
            match stored {
                // Timestamps are fixed-width text: comparing them compares the instants.
                Some(kept) if kept >= until => return Ok(()),
                Some(_) => {
                    exec(
                        tx,
                        "UPDATE result_rows SET expires_at = max(expires_at, ?3)
                         WHERE id = ?1 AND workspace_id = ?2",
                        (&id, workspace_id, &until),
                    )?;
                    return Ok(());
                }
                // Known to some store, not to this one (or reclaimed): store them here.
                None => &to_json(&prepared.rows)?,
            }
        }
    };
    exec(
        tx,
        "INSERT INTO result_rows (id, workspace_id, expires_at, rows) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)
             WHERE workspace_id = excluded.workspace_id",
        (&id, workspace_id, &until, json),
    )?;
    Ok(())
}

/// `t` rounded up to a whole hour (UTC); a whole hour stays as it is. An instant too far
/// out to round (past 2262) is kept as it is: the rows then live exactly as long as it.
fn whole_hour_at_or_after(t: &DateTime<Utc>) -> DateTime<Utc> {
    t.duration_round_up(TimeDelta::hours(1)).unwrap_or(*t)
}

/// The rows stored under `id` for the workspace. A missing row (which the expiry rule
/// prevents) reads as no rows rather than failing every read of its record.
pub(super) fn load(conn: &Connection, workspace_id: &str, id: &str) -> Result<Rows, PortError> {
    let parsed = Uuid::parse_str(id)
        .map_err(|e| PortError::fatal(format!("stored result id {id:?}: {e}")))?;
    let values = query_opt(
        conn,
        "SELECT rows FROM result_rows WHERE id = ?1 AND workspace_id = ?2",
        (id, workspace_id),
        |row| from_json(&row.get::<_, String>(0).map_err(db_err)?, "result rows"),
    )?;
    match values {
        Some(values) => Ok(Rows::stored(values, parsed)),
        None => {
            tracing::error!(
                workspace_id,
                result_id = id,
                "stored result rows are missing"
            );
            Ok(Rows::default())
        }
    }
}

/// Deletes up to `limit` rows no record needs any more.
pub(super) fn purge(tx: &Transaction<'_>, as_of: &str, limit: u32) -> Result<usize, PortError> {
    exec(
        tx,
        "DELETE FROM result_rows WHERE rowid IN (
             SELECT rowid FROM result_rows WHERE expires_at <= ?1 LIMIT ?2)",
        (as_of, limit),
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn an_expiry_rounds_up_to_the_whole_hour() {
        let at = |h, m, s, nanos| {
            Utc.with_ymd_and_hms(2026, 12, 31, h, m, s)
                .single()
                .expect("valid instant")
                + TimeDelta::nanoseconds(nanos)
        };
        assert_eq!(whole_hour_at_or_after(&at(9, 0, 0, 0)), at(9, 0, 0, 0));
        assert_eq!(whole_hour_at_or_after(&at(9, 0, 0, 1)), at(10, 0, 0, 0));
        assert_eq!(
            whole_hour_at_or_after(&at(9, 59, 59, 999_999_999)),
            at(10, 0, 0, 0)
        );
        assert_eq!(whole_hour_at_or_after(&at(9, 30, 0, 0)), at(10, 0, 0, 0));
        assert_eq!(
            whole_hour_at_or_after(&at(23, 0, 1, 0)),
            at(0, 0, 0, 0) + TimeDelta::days(1),
            "into the next day, and year"
        );
    }
}
