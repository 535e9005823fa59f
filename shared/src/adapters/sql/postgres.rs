//! The PostgreSQL connector (tokio-postgres). One client per run, opened from the
//! connection's URL.
//!
//! Binds (`$N` placeholders) are declared to the server when the statement is prepared:
//! `Int` as `int8`, `Float` as `float8`, `Bool` as `bool`; `Text` and `Null` as `unknown`,
//! so the server infers their type from the context the way it does for a quoted literal,
//! and text values travel in text format for the server's own input function to parse
//! (`WHERE day = {{ day }}` works against a `date` column with a `"2024-01-31"` input).
//! Where the context gives no type (`SELECT {{ region }}`), the parameter is re-declared as
//! `text`, as an untyped literal would be.
//!
//! Result columns become JSON: `int2/4/8`, `oid`, `float4/8` → numbers (non-finite floats →
//! `"NaN"`/`"Infinity"`/`"-Infinity"`), `numeric` → its exact decimal string, `bool`,
//! text types, enums and `"char"` → strings, `date` → `YYYY-MM-DD`, `timestamp` →
//! `YYYY-MM-DDTHH:MM:SS[.ffffff]` (no offset: the value has none), `timestamptz` → RFC 3339
//! in UTC, `time` → `HH:MM:SS[.ffffff]`, `json/jsonb` → the JSON itself, `uuid` → its
//! hyphenated form, `bytea` → base64, one-dimensional arrays of these → JSON arrays,
//! domains as their base type. Any other type (intervals, geometric, network, ranges, …)
//! comes back as `null`: results arrive in binary form and decoding every type is out of
//! scope; cast such a column to text in the SQL (`col::text`) to see it.
//!
//! The URL holds the password, so no error message or log line built here contains it:
//! messages are assembled from the error's parts and then scrubbed of the URL and the
//! password. TLS is not implemented yet (`NoTls`): a URL with `sslmode=require` fails to
//! connect rather than falling back to plaintext.

use std::error::Error as StdError;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::BytesMut;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use futures_util::TryStreamExt;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, IsNull, Kind, ToSql, Type, to_sql_checked};
use tokio_postgres::{CancelToken, Client, Config, NoTls};
use tokio_util::sync::CancellationToken;

use super::sqlite::float_json;
use crate::ports::sql::{BoundSql, Dialect, QueryError, QueryOutput, SqlConnector, SqlValue};

/// How long connecting may take when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the server to acknowledge a cancellation.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// A PostgreSQL database for one run.
pub struct PostgresConnector {
    client: Client,
    cancel_token: CancelToken,
    scrub: Scrubber,
}

impl PostgresConnector {
    /// Connects to `url` (`postgres://user:password@host:port/db?…`).
    pub async fn connect(url: &str) -> Result<Self, QueryError> {
        let scrub = Scrubber::new(url);
        let mut config: Config = url.parse().map_err(|e: tokio_postgres::Error| {
            QueryError::Unavailable(
                scrub.clean(&format!("invalid PostgreSQL URL: {}", describe(&e))),
            )
        })?;
        let scrub = scrub.with_password(config.get_password());
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let (client, connection) = config.connect(NoTls).await.map_err(|e| {
            QueryError::Unavailable(
                scrub.clean(&format!("cannot connect to PostgreSQL: {}", describe(&e))),
            )
        })?;
        let task_scrub = scrub.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %task_scrub.clean(&describe(&e)), "PostgreSQL connection ended with an error");
            }
        });
        let cancel_token = client.cancel_token();
        Ok(PostgresConnector {
            client,
            cancel_token,
            scrub,
        })
    }

    async fn run(&self, sql: &BoundSql, max_rows: usize) -> Result<QueryOutput, QueryError> {
        let types: Vec<Type> = sql
            .binds
            .iter()
            .map(|b| match b {
                SqlValue::Int(_) => Type::INT8,
                SqlValue::Float(_) => Type::FLOAT8,
                SqlValue::Bool(_) => Type::BOOL,
                SqlValue::Text(_) | SqlValue::Null => Type::UNKNOWN,
            })
            .collect();
        let mut types = types;
        let stmt = loop {
            match self.client.prepare_typed(&sql.sql, &types).await {
                Ok(stmt) => break stmt,
                Err(e) => match undetermined_parameter(&e, &types) {
                    // Each retry turns one `unknown` into `text`, so this ends.
                    Some(i) => types[i] = Type::TEXT,
                    None => return Err(self.query_error(&e)),
                },
            }
        };
        if stmt.params().len() != sql.binds.len() {
            return Err(QueryError::Failed(format!(
                "the statement has {} parameter(s) but {} value(s) were bound",
                stmt.params().len(),
                sql.binds.len()
            )));
        }
        let columns: Vec<String> = stmt.columns().iter().map(|c| c.name().to_owned()).collect();
        let column_types: Vec<Type> = stmt.columns().iter().map(|c| c.type_().clone()).collect();
        let params = sql.binds.iter().map(Bind);
        let stream = self
            .client
            .query_raw(&stmt, params)
            .await
            .map_err(|e| self.query_error(&e))?;
        futures_util::pin_mut!(stream);
        let mut rows = Vec::new();
        let mut row_count: u64 = 0;
        while let Some(row) = stream.try_next().await.map_err(|e| self.query_error(&e))? {
            row_count += 1;
            if rows.len() < max_rows {
                let mut values = Vec::with_capacity(column_types.len());
                for (i, ty) in column_types.iter().enumerate() {
                    let raw: Raw<'_> = row.try_get(i).map_err(|e| self.query_error(&e))?;
                    values.push(match raw.0 {
                        None => serde_json::Value::Null,
                        Some(bytes) => decode(ty, bytes),
                    });
                }
                rows.push(values);
            }
        }
        Ok(QueryOutput {
            columns,
            rows,
            row_count,
        })
    }

    fn query_error(&self, e: &tokio_postgres::Error) -> QueryError {
        let message = self.scrub.clean(&describe(e));
        if e.is_closed()
            || (e.as_db_error().is_none() && e.source().is_some_and(|s| s.is::<std::io::Error>()))
        {
            QueryError::Unavailable(message)
        } else {
            QueryError::Failed(message)
        }
    }
}

#[async_trait]
impl SqlConnector for PostgresConnector {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn query(
        &self,
        sql: &BoundSql,
        max_rows: usize,
        cancel: &CancellationToken,
    ) -> Result<QueryOutput, QueryError> {
        if cancel.is_cancelled() {
            return Err(QueryError::Cancelled);
        }
        let run = self.run(sql, max_rows);
        tokio::pin!(run);
        tokio::select! {
            out = &mut run => return out,
            () = cancel.cancelled() => {}
        }
        // Ask the server to stop the statement (over a separate connection, as the
        // protocol requires), then let the query observe its cancellation so the client
        // is left in a clean state; either wait is bounded.
        match tokio::time::timeout(CANCEL_GRACE, self.cancel_token.cancel_query(NoTls)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %self.scrub.clean(&describe(&e)), "PostgreSQL cancel request failed");
            }
            Err(_) => tracing::warn!("PostgreSQL cancel request timed out"),
        }
        let _ = tokio::time::timeout(CANCEL_GRACE, &mut run).await;
        Err(QueryError::Cancelled)
    }
}

/// Where the server could not infer an `unknown` parameter's type (`SELECT $1`: a bare
/// parameter in the select list), the index of the parameter to declare as `text` instead,
/// which is what an unknown-typed literal would have become. The server names the
/// parameter in its message; if that cannot be read (a localised message), the first
/// parameter still `unknown` is chosen.
fn undetermined_parameter(e: &tokio_postgres::Error, types: &[Type]) -> Option<usize> {
    let db = e.as_db_error()?;
    if *db.code() != SqlState::AMBIGUOUS_PARAMETER && *db.code() != SqlState::INDETERMINATE_DATATYPE
    {
        return None;
    }
    let named = db
        .message()
        .rsplit('$')
        .next()
        .and_then(|n| n.trim().parse::<usize>().ok())
        .and_then(|n| n.checked_sub(1))
        .filter(|&i| types.get(i) == Some(&Type::UNKNOWN));
    named.or_else(|| types.iter().position(|t| *t == Type::UNKNOWN))
}

/// A tokio-postgres error in words: the server's own message for database errors
/// (`ERROR 42P01: relation "x" does not exist`), else the error and its causes.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut message = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
        if let Some(detail) = db.detail() {
            message.push_str(&format!(" ({detail})"));
        }
        return message;
    }
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Removes the URL and the password from messages, however they were spelled.
#[derive(Clone)]
struct Scrubber {
    secrets: Vec<String>,
}

impl Scrubber {
    fn new(url: &str) -> Self {
        let mut secrets = vec![url.to_owned()];
        // The password as written in the URL (possibly percent-encoded).
        if let Some(rest) = url.split_once("://").map(|(_, r)| r) {
            let authority = rest.split(['/', '?']).next().unwrap_or_default();
            if let Some((userinfo, _)) = authority.rsplit_once('@')
                && let Some((_, password)) = userinfo.split_once(':')
            {
                secrets.push(password.to_owned());
            }
        }
        Scrubber { secrets }
    }

    fn with_password(mut self, password: Option<&[u8]>) -> Self {
        if let Some(p) = password {
            self.secrets.push(String::from_utf8_lossy(p).into_owned());
        }
        self
    }

    fn clean(&self, message: &str) -> String {
        let mut out = message.to_owned();
        // Longest first, so the URL goes before the password inside it. Very short
        // secrets are left alone: scrubbing "a" from every message would make them
        // unreadable, and such a password is no secret anyway.
        let mut secrets: Vec<&String> = self.secrets.iter().filter(|s| s.len() >= 3).collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for secret in secrets {
            out = out.replace(secret.as_str(), "***");
        }
        out
    }
}

/// A bind parameter as tokio-postgres sends it.
#[derive(Debug)]
struct Bind<'a>(&'a SqlValue);

impl ToSql for Bind<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self.0 {
            SqlValue::Null => Ok(IsNull::Yes),
            SqlValue::Bool(b) => b.to_sql(ty, out),
            SqlValue::Int(i) => i.to_sql(ty, out),
            SqlValue::Float(f) => f.to_sql(ty, out),
            // Text format: the server parses it as the type it inferred.
            SqlValue::Text(t) => {
                out.extend_from_slice(t.as_bytes());
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> tokio_postgres::types::Format {
        match self.0 {
            SqlValue::Text(_) => tokio_postgres::types::Format::Text,
            _ => tokio_postgres::types::Format::Binary,
        }
    }

    to_sql_checked!();
}

/// A column value's raw binary representation, decoded by [`decode`].
struct Raw<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(_ty: &Type) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

/// One column value as JSON; `null` for types this connector does not decode.
fn decode(ty: &Type, raw: &[u8]) -> serde_json::Value {
    decode_known(ty, raw).unwrap_or(serde_json::Value::Null)
}

fn decode_known(ty: &Type, raw: &[u8]) -> Option<serde_json::Value> {
    use serde_json::Value as J;
    let text = |raw: &[u8]| J::String(String::from_utf8_lossy(raw).into_owned());
    Some(match *ty {
        Type::BOOL => J::Bool(bool::from_sql(ty, raw).ok()?),
        Type::INT2 => i16::from_sql(ty, raw).ok()?.into(),
        Type::INT4 => i32::from_sql(ty, raw).ok()?.into(),
        Type::INT8 => i64::from_sql(ty, raw).ok()?.into(),
        Type::OID => u32::from_sql(ty, raw).ok()?.into(),
        Type::FLOAT4 => float_json(f64::from(f32::from_sql(ty, raw).ok()?)),
        Type::FLOAT8 => float_json(f64::from_sql(ty, raw).ok()?),
        Type::NUMERIC => J::String(numeric_to_string(raw)?),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => text(raw),
        Type::CHAR => J::String(char::from(*raw.first()?).to_string()),
        Type::DATE => match i32::from_sql(ty, raw).ok()? {
            i32::MAX => J::from("infinity"),
            i32::MIN => J::from("-infinity"),
            _ => J::String(
                NaiveDate::from_sql(ty, raw)
                    .ok()?
                    .format("%Y-%m-%d")
                    .to_string(),
            ),
        },
        Type::TIMESTAMP => match i64::from_sql(ty, raw).ok()? {
            i64::MAX => J::from("infinity"),
            i64::MIN => J::from("-infinity"),
            _ => J::String(
                NaiveDateTime::from_sql(ty, raw)
                    .ok()?
                    .format("%Y-%m-%dT%H:%M:%S%.f")
                    .to_string(),
            ),
        },
        Type::TIMESTAMPTZ => match i64::from_sql(ty, raw).ok()? {
            i64::MAX => J::from("infinity"),
            i64::MIN => J::from("-infinity"),
            _ => J::String(
                DateTime::<Utc>::from_sql(ty, raw)
                    .ok()?
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            ),
        },
        Type::TIME => J::String(
            NaiveTime::from_sql(ty, raw)
                .ok()?
                .format("%H:%M:%S%.f")
                .to_string(),
        ),
        Type::JSON | Type::JSONB => serde_json::Value::from_sql(ty, raw).ok()?,
        Type::UUID => J::String(uuid_string(raw)?),
        Type::BYTEA => J::String(base64::engine::general_purpose::STANDARD.encode(raw)),
        _ => match ty.kind() {
            Kind::Enum(_) => text(raw),
            Kind::Domain(inner) => return decode_known(inner, raw),
            Kind::Array(member) => {
                // Multi-dimensional arrays are refused by the decoder and come out null.
                let items = Vec::<Raw<'_>>::from_sql(ty, raw).ok()?;
                J::Array(
                    items
                        .into_iter()
                        .map(|item| match item.0 {
                            None => J::Null,
                            Some(bytes) => decode(member, bytes),
                        })
                        .collect(),
                )
            }
            _ if ty.name() == "citext" => text(raw),
            _ => return None,
        },
    })
}

fn uuid_string(raw: &[u8]) -> Option<String> {
    if raw.len() != 16 {
        return None;
    }
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// The exact decimal text of a binary `numeric`: a header (digit count, weight of the first
/// base-10000 digit, sign, display scale) followed by the base-10000 digits.
fn numeric_to_string(raw: &[u8]) -> Option<String> {
    let word = |i: usize| -> Option<u16> {
        Some(u16::from_be_bytes([*raw.get(2 * i)?, *raw.get(2 * i + 1)?]))
    };
    let ndigits = usize::from(word(0)?);
    let weight = i64::from(word(1)? as i16);
    let sign = word(2)?;
    let dscale = usize::from(word(3)?);
    if raw.len() != 8 + 2 * ndigits {
        return None;
    }
    match sign {
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        0x0000 | 0x4000 => {}
        _ => return None,
    }
    let digits: Vec<u16> = (0..ndigits).map(|i| word(4 + i)).collect::<Option<_>>()?;
    if digits.iter().any(|&d| d > 9999) {
        return None;
    }
    // Digit `i` of the array is worth 10000^(weight - i); missing ones are zero.
    let digit = |i: i64| -> u16 {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for i in 0..=weight {
            if i == 0 {
                out.push_str(&digit(i).to_string());
            } else {
                out.push_str(&format!("{:04}", digit(i)));
            }
        }
    }
    if dscale > 0 {
        let mut fraction = String::with_capacity(dscale + 4);
        let mut i = weight + 1;
        while fraction.len() < dscale {
            fraction.push_str(&format!("{:04}", digit(i)));
            i += 1;
        }
        fraction.truncate(dscale);
        out.push('.');
        out.push_str(&fraction);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn numeric(ndigits: u16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut raw = Vec::new();
        for w in [ndigits, weight as u16, sign, dscale] {
            raw.extend_from_slice(&w.to_be_bytes());
        }
        for d in digits {
            raw.extend_from_slice(&d.to_be_bytes());
        }
        raw
    }

    #[test]
    fn numerics_decode_exactly() {
        // 1234.5678
        assert_eq!(
            numeric_to_string(&numeric(2, 0, 0, 4, &[1234, 5678])).as_deref(),
            Some("1234.5678")
        );
        // -0.001
        assert_eq!(
            numeric_to_string(&numeric(1, -1, 0x4000, 3, &[10])).as_deref(),
            Some("-0.001")
        );
        // 100000000 (weight 2, trailing zero digits omitted)
        assert_eq!(
            numeric_to_string(&numeric(1, 2, 0, 0, &[1])).as_deref(),
            Some("100000000")
        );
        // 0.00000001 (weight -2)
        assert_eq!(
            numeric_to_string(&numeric(1, -2, 0, 8, &[1])).as_deref(),
            Some("0.00000001")
        );
        // 0 with scale 2
        assert_eq!(
            numeric_to_string(&numeric(0, 0, 0, 2, &[])).as_deref(),
            Some("0.00")
        );
        assert_eq!(
            numeric_to_string(&numeric(0, 0, 0xC000, 0, &[])).as_deref(),
            Some("NaN")
        );
        assert_eq!(numeric_to_string(&[0, 1]), None);
        assert_eq!(numeric_to_string(&numeric(2, 0, 0, 0, &[1])), None);
    }

    #[test]
    fn scalars_decode() {
        assert_eq!(decode(&Type::INT4, &7i32.to_be_bytes()), json!(7));
        assert_eq!(decode(&Type::FLOAT8, &f64::NAN.to_be_bytes()), json!("NaN"));
        assert_eq!(decode(&Type::BOOL, &[1]), json!(true));
        assert_eq!(decode(&Type::TEXT, b"hi"), json!("hi"));
        assert_eq!(decode(&Type::BYTEA, &[0, 255]), json!("AP8="));
        assert_eq!(
            decode(&Type::UUID, &[0x12; 16]),
            json!("12121212-1212-1212-1212-121212121212")
        );
        // 2000-01-02 is day 1 of PostgreSQL's epoch.
        assert_eq!(
            decode(&Type::DATE, &1i32.to_be_bytes()),
            json!("2000-01-02")
        );
        assert_eq!(
            decode(&Type::DATE, &i32::MAX.to_be_bytes()),
            json!("infinity")
        );
        assert_eq!(
            decode(&Type::TIMESTAMPTZ, &1_500_000i64.to_be_bytes()),
            json!("2000-01-01T00:00:01.500Z")
        );
        assert_eq!(
            decode(&Type::TIMESTAMP, &0i64.to_be_bytes()),
            json!("2000-01-01T00:00:00")
        );
        assert_eq!(decode(&Type::INTERVAL, &[0; 16]), json!(null));
        // A truncated value decodes to null rather than failing the query.
        assert_eq!(decode(&Type::INT8, &[1, 2]), json!(null));
    }

    #[test]
    fn scrubber_hides_url_and_password() {
        let url = "postgres://app:s%40cret-pw@db.internal:5432/wh";
        let s = Scrubber::new(url).with_password(Some(b"s@cret-pw"));
        let cleaned = s.clean(&format!(
            "failed for {url}: password s@cret-pw or s%40cret-pw rejected"
        ));
        assert!(!cleaned.contains("cret-pw"), "{cleaned}");
        assert!(!cleaned.contains("db.internal:5432/wh"), "{cleaned}");
    }
}
