//! How values cross the SQLite boundary: timestamps as sortable text (integer nanoseconds
//! in the run table), bodies as JSON, page cursors as opaque strings. Kept in one place so
//! every table encodes the same way and a corrupt value always becomes the same error
//! instead of a panic.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ports::{Page, PageRequest, PortError};

/// The most items one page returns, whatever the caller asks for; callers follow
/// `next_cursor` for the rest.
pub(super) const MAX_PAGE: u32 = 1000;

/// RFC 3339 in UTC with exactly nine fractional digits: it round-trips every `DateTime<Utc>`
/// and, being fixed-width, sorts as text in time order, so indexes and keyset cursors on
/// these columns compare correctly.
pub(super) fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

pub(super) fn parse_ts(s: &str) -> Result<DateTime<Utc>, PortError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| PortError::fatal(format!("sqlite: corrupt timestamp {s:?}: {e}")))
}

/// Nanoseconds since the Unix epoch: the run table's time columns, where a key of eight
/// bytes instead of thirty keeps the indexes a burst of runs writes into small
/// (BENCHMARKS.md §5). Exact for every instant from 1677 to 2262; beyond, the value
/// saturates, which keeps its order against every other instant, and the run's body keeps
/// the instant itself (`run_body`).
pub(super) fn nanos(t: &DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

/// The instant of a `nanos` column.
pub(super) fn from_nanos(n: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(n)
}

pub(super) fn to_json<T: Serialize>(value: &T) -> Result<String, PortError> {
    serde_json::to_string(value)
        .map_err(|e| PortError::fatal(format!("sqlite: cannot encode body: {e}")))
}

/// A body that no longer decodes is data corruption (or a schema drift a migration missed);
/// retrying cannot help, so it is fatal.
pub(super) fn from_json<T: DeserializeOwned>(s: &str, what: &str) -> Result<T, PortError> {
    serde_json::from_str(s).map_err(|e| PortError::fatal(format!("sqlite: corrupt {what}: {e}")))
}

/// Bounds the requested page size to `1..=MAX_PAGE`, as the SQL `LIMIT` of one page.
pub(super) fn page_size(page: &PageRequest) -> u32 {
    page.limit.clamp(1, MAX_PAGE)
}

/// The cursor is the sort key of the last item returned, so the next page starts strictly
/// after it (keyset pagination): rows inserted meanwhile never shift or repeat a page.
/// Base64url of a JSON array keeps it opaque and URL-safe.
pub(super) fn encode_cursor(key: &[&str]) -> String {
    // Serialising a slice of strings cannot fail; fall back to an empty array regardless.
    let json = serde_json::to_vec(key).unwrap_or_else(|_| b"[]".to_vec());
    URL_SAFE_NO_PAD.encode(json)
}

/// Decodes a cursor of `N` key parts. A cursor this store did not issue is the caller's
/// mistake, not a backend failure.
pub(super) fn decode_cursor<const N: usize>(cursor: &str) -> Result<[String; N], PortError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| PortError::InvalidCursor)?;
    let parts: Vec<String> =
        serde_json::from_slice(&bytes).map_err(|_| PortError::InvalidCursor)?;
    <[String; N]>::try_from(parts).map_err(|_| PortError::InvalidCursor)
}

/// Keyset position of an ascending listing: after the cursor, or before everything.
/// The empty string sorts before every stored key, so one SQL shape serves both cases.
pub(super) fn after<const N: usize>(page: &PageRequest) -> Result<[String; N], PortError> {
    match &page.cursor {
        Some(c) => decode_cursor(c),
        None => Ok(std::array::from_fn(|_| String::new())),
    }
}

/// Turns the `size + 1` rows a page query fetched into a page: the extra row only proves
/// that more follow, so `next_cursor` is `None` exactly on the last page.
pub(super) fn finish_page<T, const N: usize>(
    mut items: Vec<T>,
    size: u32,
    key: impl Fn(&T) -> [String; N],
) -> Page<T> {
    let size = size as usize;
    let next_cursor = if items.len() > size {
        items.truncate(size);
        items.last().map(|last| {
            let key = key(last);
            let parts: Vec<&str> = key.iter().map(String::as_str).collect();
            encode_cursor(&parts)
        })
    } else {
        None
    };
    Page { items, next_cursor }
}

/// SQLite has no boolean type; STRICT tables store them as 0/1 integers.
pub(super) fn flag(b: bool) -> i64 {
    i64::from(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(year: i32, month: u32, day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(year, month, day, hour, minute, 0)
            .single()
            .expect("valid instant")
    }

    #[test]
    fn timestamps_round_trip_and_sort_as_text() {
        let a = utc(2026, 3, 8, 7, 30);
        let b = a + chrono::Duration::nanoseconds(1);
        let c = a + chrono::Duration::days(400);
        assert_eq!(parse_ts(&ts(&b)).expect("parses"), b);
        assert!(ts(&a) < ts(&b) && ts(&b) < ts(&c));
        assert!(String::new() < ts(&a));
    }

    #[test]
    fn nanoseconds_round_trip_and_saturate_in_order() {
        let a = utc(2026, 3, 8, 7, 30);
        let b = a + chrono::Duration::nanoseconds(1);
        assert_eq!(from_nanos(nanos(&b)), b);
        assert_eq!(nanos(&b) - nanos(&a), 1);
        let far = utc(9999, 1, 1, 0, 0);
        let early = utc(1000, 1, 1, 0, 0);
        assert_eq!(nanos(&far), i64::MAX);
        assert_eq!(nanos(&early), i64::MIN);
        assert!(nanos(&early) < nanos(&a) && nanos(&a) < nanos(&far));
    }

    #[test]
    fn cursors_round_trip_and_reject_foreign_strings() {
        let c = encode_cursor(&["2026-03-08T07:30:00.000000000Z", "p/1"]);
        let [t, id] = decode_cursor::<2>(&c).expect("own cursor decodes");
        assert_eq!(
            (t.as_str(), id.as_str()),
            ("2026-03-08T07:30:00.000000000Z", "p/1")
        );
        assert!(matches!(
            decode_cursor::<2>("%%%"),
            Err(PortError::InvalidCursor)
        ));
        assert!(matches!(
            decode_cursor::<1>(&c),
            Err(PortError::InvalidCursor)
        ));
    }

    #[test]
    fn pages_carry_a_cursor_only_when_more_rows_follow() {
        let full = finish_page(vec![1, 2, 3], 2, |n| [n.to_string()]);
        assert_eq!(full.items, vec![1, 2]);
        assert!(full.next_cursor.is_some());
        let last = finish_page(vec![1, 2], 2, |n| [n.to_string()]);
        assert_eq!(last.items, vec![1, 2]);
        assert_eq!(last.next_cursor, None);
    }
}
