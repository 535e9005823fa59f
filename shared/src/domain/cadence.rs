//! The cadence a user asks for, exactly as the API accepts it (SPEC §4), and its validation.
//!
//! The JSON shape is a public contract, so it lives in plain serde types; everything that can
//! be wrong with the *values* is reported by [`Cadence::compile`] as a [`CadenceError`] naming
//! the offending field, which the HTTP layer maps to 422. Numeric fields are `i64` with
//! defaults for that reason: an out-of-range hour must be a validation error, not a JSON
//! decode error.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::fire_times::{ALL_DAYS, ALL_HOURS, ALL_MINUTES, ALL_MONTHS, DayRule, FireSpec};
use super::zone::Zone;

/// A day of the week in cadence JSON (`"MON"` … `"SUN"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    /// Unix cron numbering: 0 = Sunday … 6 = Saturday.
    pub(super) fn unix_number(self) -> u8 {
        match self {
            Weekday::Sun => 0,
            Weekday::Mon => 1,
            Weekday::Tue => 2,
            Weekday::Wed => 3,
            Weekday::Thu => 4,
            Weekday::Fri => 5,
            Weekday::Sat => 6,
        }
    }
}

/// `dayOfMonth` of a `MONTHLY` cadence: a JSON number (valid: 1..=31) or the string `"LAST"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DayOfMonth {
    Day(i64),
    Last,
}

impl Serialize for DayOfMonth {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            DayOfMonth::Day(day) => serializer.serialize_i64(*day),
            DayOfMonth::Last => serializer.serialize_str("LAST"),
        }
    }
}

impl<'de> Deserialize<'de> for DayOfMonth {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DayOfMonthVisitor;

        impl Visitor<'_> for DayOfMonthVisitor {
            type Value = DayOfMonth;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a day of the month (1..31) or \"LAST\"")
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<DayOfMonth, E> {
                Ok(DayOfMonth::Day(value))
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<DayOfMonth, E> {
                // Any value this large is out of range anyway; keep it a validation error.
                Ok(DayOfMonth::Day(i64::try_from(value).unwrap_or(i64::MAX)))
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<DayOfMonth, E> {
                if value == "LAST" {
                    Ok(DayOfMonth::Last)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(value), &self))
                }
            }
        }

        deserializer.deserialize_any(DayOfMonthVisitor)
    }
}

impl utoipa::PartialSchema for DayOfMonth {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                        utoipa::openapi::KnownFormat::Int64,
                    )))
                    .minimum(Some(1))
                    .maximum(Some(31)),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["LAST"])),
            )
            .description(Some(
                "Day of the month 1..31 (months without that day are skipped) or \"LAST\"",
            ))
            .into()
    }
}

impl utoipa::ToSchema for DayOfMonth {}

/// How often a schedule fires. `kind` selects the variant; times are wall-clock times in the
/// schedule's timezone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE", deny_unknown_fields)]
pub enum Cadence {
    /// Every hour at `minute`.
    Hourly {
        #[serde(default)]
        #[schema(minimum = 0, maximum = 59)]
        minute: i64,
    },
    /// Every day at `hour:minute`.
    Daily {
        #[serde(default)]
        #[schema(minimum = 0, maximum = 23)]
        hour: i64,
        #[serde(default)]
        #[schema(minimum = 0, maximum = 59)]
        minute: i64,
    },
    /// On each listed weekday at `hour:minute`.
    Weekly {
        #[serde(default)]
        #[schema(min_items = 1)]
        weekdays: Vec<Weekday>,
        #[serde(default)]
        #[schema(minimum = 0, maximum = 23)]
        hour: i64,
        #[serde(default)]
        #[schema(minimum = 0, maximum = 59)]
        minute: i64,
    },
    /// On `dayOfMonth` (or the last day) at `hour:minute`.
    Monthly {
        #[serde(rename = "dayOfMonth")]
        day_of_month: DayOfMonth,
        #[serde(default)]
        #[schema(minimum = 0, maximum = 23)]
        hour: i64,
        #[serde(default)]
        #[schema(minimum = 0, maximum = 59)]
        minute: i64,
    },
    /// A 5-field Unix cron expression (`minute hour day-of-month month day-of-week`).
    Cron { expression: String },
}

/// A cadence or timezone the API must refuse with 422; `field` is the JSON path of the
/// offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CadenceError {
    pub code: CadenceErrorCode,
    pub field: String,
    pub message: String,
}

impl CadenceError {
    pub(super) fn new(code: CadenceErrorCode, field: &str, message: impl Into<String>) -> Self {
        CadenceError {
            code,
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CadenceErrorCode {
    InvalidCadence,
    InvalidCron,
    CronUnsupported,
    InvalidTimezone,
}

impl CadenceErrorCode {
    /// The stable error code of the API.
    pub fn as_str(self) -> &'static str {
        match self {
            CadenceErrorCode::InvalidCadence => "INVALID_CADENCE",
            CadenceErrorCode::InvalidCron => "INVALID_CRON",
            CadenceErrorCode::CronUnsupported => "CRON_UNSUPPORTED",
            CadenceErrorCode::InvalidTimezone => "INVALID_TIMEZONE",
        }
    }
}

impl Cadence {
    /// Validates the cadence and turns it into the normalised form the scheduler, the
    /// EventBridge translation and `nextRuns` all work from.
    pub fn compile(&self) -> Result<FireSpec, CadenceError> {
        match self {
            Cadence::Hourly { minute } => Ok(FireSpec::new(
                minute_bit(*minute)?,
                ALL_HOURS,
                ALL_MONTHS,
                DayRule::EveryDay,
            )),
            Cadence::Daily { hour, minute } => {
                let (hour, minute) = (hour_bit(*hour)?, minute_bit(*minute)?);
                Ok(FireSpec::new(minute, hour, ALL_MONTHS, DayRule::EveryDay))
            }
            Cadence::Weekly {
                weekdays,
                hour,
                minute,
            } => {
                if weekdays.is_empty() {
                    return Err(invalid(
                        "cadence.weekdays",
                        "weekdays must name at least one day",
                    ));
                }
                let days = weekdays
                    .iter()
                    .fold(0u8, |bits, day| bits | 1 << day.unix_number());
                let (hour, minute) = (hour_bit(*hour)?, minute_bit(*minute)?);
                Ok(FireSpec::new(
                    minute,
                    hour,
                    ALL_MONTHS,
                    DayRule::Weekdays(days),
                ))
            }
            Cadence::Monthly {
                day_of_month,
                hour,
                minute,
            } => {
                let days = match day_of_month {
                    DayOfMonth::Last => DayRule::LastDayOfMonth,
                    DayOfMonth::Day(day @ 1..=31) => DayRule::DaysOfMonth(ALL_DAYS & 1 << day),
                    DayOfMonth::Day(day) => {
                        return Err(invalid(
                            "cadence.dayOfMonth",
                            format!("dayOfMonth must be 1..31 or \"LAST\", got {day}"),
                        ));
                    }
                };
                let (hour, minute) = (hour_bit(*hour)?, minute_bit(*minute)?);
                Ok(FireSpec::new(minute, hour, ALL_MONTHS, days))
            }
            Cadence::Cron { expression } => FireSpec::parse_cron(expression),
        }
    }
}

/// Resolves a schedule's `timezone`. Only IANA names are accepted, spelled exactly as tzdb
/// spells them (including its backward-compatible links such as `US/Eastern`): abbreviations
/// like `CEST` and raw offsets like `+02:00` are ambiguous or cannot follow DST.
pub fn parse_timezone(name: &str) -> Result<Zone, CadenceError> {
    Zone::named(name).ok_or_else(|| {
        CadenceError::new(
            CadenceErrorCode::InvalidTimezone,
            "timezone",
            format!(
                "{} is not an IANA timezone name (e.g. \"Europe/Berlin\", \"UTC\")",
                excerpt(name)
            ),
        )
    })
}

/// User text quoted into an error message, shortened so a huge input cannot bloat the
/// response.
pub(super) fn excerpt(text: &str) -> String {
    const LIMIT: usize = 40;
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

fn invalid(field: &str, message: impl Into<String>) -> CadenceError {
    CadenceError::new(CadenceErrorCode::InvalidCadence, field, message)
}

fn minute_bit(minute: i64) -> Result<u64, CadenceError> {
    match minute {
        0..=59 => Ok(ALL_MINUTES & 1 << minute),
        _ => Err(invalid(
            "cadence.minute",
            format!("minute must be 0..59, got {minute}"),
        )),
    }
}

fn hour_bit(hour: i64) -> Result<u32, CadenceError> {
    match hour {
        0..=23 => Ok(ALL_HOURS & 1 << hour),
        _ => Err(invalid(
            "cadence.hour",
            format!("hour must be 0..23, got {hour}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn decode(value: Value) -> Result<Cadence, serde_json::Error> {
        serde_json::from_value(value)
    }

    #[test]
    fn every_kind_round_trips_through_its_json_shape() {
        let shapes = [
            json!({"kind": "HOURLY", "minute": 15}),
            json!({"kind": "DAILY", "hour": 9, "minute": 0}),
            json!({"kind": "WEEKLY", "weekdays": ["MON", "THU"], "hour": 9, "minute": 0}),
            json!({"kind": "MONTHLY", "dayOfMonth": 1, "hour": 9, "minute": 0}),
            json!({"kind": "MONTHLY", "dayOfMonth": "LAST", "hour": 23, "minute": 59}),
            json!({"kind": "CRON", "expression": "30 8 * * MON-FRI"}),
        ];
        for shape in shapes {
            let cadence = decode(shape.clone()).unwrap_or_else(|e| panic!("{shape}: {e}"));
            assert_eq!(serde_json::to_value(&cadence).ok(), Some(shape));
        }
    }

    #[test]
    fn decodes_into_the_documented_variants() {
        assert_eq!(
            decode(json!({"kind": "MONTHLY", "dayOfMonth": "LAST", "hour": 9})).ok(),
            Some(Cadence::Monthly {
                day_of_month: DayOfMonth::Last,
                hour: 9,
                minute: 0
            })
        );
        assert_eq!(
            decode(json!({"kind": "WEEKLY", "weekdays": ["SUN", "SUN"]})).ok(),
            Some(Cadence::Weekly {
                weekdays: vec![Weekday::Sun, Weekday::Sun],
                hour: 0,
                minute: 0
            })
        );
        // Out-of-range numbers must survive decoding so that compile can name the field.
        assert_eq!(
            decode(json!({"kind": "DAILY", "hour": 99, "minute": -1})).ok(),
            Some(Cadence::Daily {
                hour: 99,
                minute: -1
            })
        );
    }

    #[test]
    fn malformed_json_shapes_are_decode_errors() {
        let rejected = [
            json!({"kind": "HOURLY", "minute": 15, "hour": 3}), // unknown field for the kind
            json!({"kind": "HOURLY", "minute": 15, "timezone": "UTC"}),
            json!({"kind": "YEARLY", "minute": 15}),
            json!({"kind": "hourly", "minute": 15}),
            json!({"minute": 15}),
            json!({"kind": "MONTHLY", "hour": 9}), // dayOfMonth has no sensible default
            json!({"kind": "MONTHLY", "dayOfMonth": "last"}),
            json!({"kind": "MONTHLY", "dayOfMonth": 1.5}),
            json!({"kind": "MONTHLY", "day_of_month": 1}),
            json!({"kind": "WEEKLY", "weekdays": ["mon"]}),
            json!({"kind": "WEEKLY", "weekdays": "MON"}),
            json!({"kind": "DAILY", "hour": "9"}),
            json!({"kind": "CRON"}),
        ];
        for shape in rejected {
            assert!(decode(shape.clone()).is_err(), "{shape} should not decode");
        }
    }

    #[test]
    fn validation_errors_name_the_field() {
        let cases = [
            (json!({"kind": "HOURLY", "minute": 60}), "cadence.minute"),
            (json!({"kind": "HOURLY", "minute": -1}), "cadence.minute"),
            (json!({"kind": "DAILY", "hour": 24}), "cadence.hour"),
            (
                json!({"kind": "DAILY", "hour": -5, "minute": 99}),
                "cadence.hour",
            ),
            (
                json!({"kind": "DAILY", "hour": 5, "minute": 99}),
                "cadence.minute",
            ),
            (
                json!({"kind": "WEEKLY", "weekdays": []}),
                "cadence.weekdays",
            ),
            (json!({"kind": "WEEKLY", "hour": 9}), "cadence.weekdays"),
            (
                json!({"kind": "WEEKLY", "weekdays": ["MON"], "hour": 25}),
                "cadence.hour",
            ),
            (
                json!({"kind": "MONTHLY", "dayOfMonth": 0}),
                "cadence.dayOfMonth",
            ),
            (
                json!({"kind": "MONTHLY", "dayOfMonth": 32}),
                "cadence.dayOfMonth",
            ),
            (
                json!({"kind": "MONTHLY", "dayOfMonth": 18446744073709551615u64}),
                "cadence.dayOfMonth",
            ),
            (
                json!({"kind": "MONTHLY", "dayOfMonth": "LAST", "minute": 60}),
                "cadence.minute",
            ),
        ];
        for (shape, field) in cases {
            let cadence = decode(shape.clone()).unwrap_or_else(|e| panic!("{shape}: {e}"));
            let error = cadence
                .compile()
                .err()
                .unwrap_or_else(|| panic!("{shape} compiled"));
            assert_eq!(error.code, CadenceErrorCode::InvalidCadence, "{shape}");
            assert_eq!(error.field, field, "{shape}");
            assert!(!error.message.is_empty());
        }
    }

    #[test]
    fn cron_errors_surface_through_compile() {
        let bad = Cadence::Cron {
            expression: "* * * * 9".into(),
        };
        let error = bad.compile().err();
        assert_eq!(
            error.map(|e| (e.code, e.field, e.message)),
            Some((
                CadenceErrorCode::InvalidCron,
                "cadence.expression".to_owned(),
                "day-of-week: 9 is out of range 0-7".to_owned()
            ))
        );
        let unsupported = Cadence::Cron {
            expression: "0 0 1 * MON".into(),
        };
        assert_eq!(
            unsupported.compile().err().map(|e| e.code),
            Some(CadenceErrorCode::CronUnsupported)
        );
    }

    #[test]
    fn every_kind_translates_to_eventbridge() {
        let cases = [
            (
                json!({"kind": "HOURLY", "minute": 15}),
                "cron(15 * * * ? *)",
            ),
            (
                json!({"kind": "DAILY", "hour": 9, "minute": 5}),
                "cron(5 9 * * ? *)",
            ),
            (
                json!({"kind": "WEEKLY", "weekdays": ["THU", "MON"], "hour": 9}),
                "cron(0 9 ? * MON,THU *)",
            ),
            (
                json!({"kind": "WEEKLY", "weekdays": ["SAT", "SUN"], "hour": 9}),
                "cron(0 9 ? * SUN,SAT *)",
            ),
            (
                json!({"kind": "MONTHLY", "dayOfMonth": 1, "hour": 9}),
                "cron(0 9 1 * ? *)",
            ),
            (
                json!({"kind": "MONTHLY", "dayOfMonth": 31, "hour": 9}),
                "cron(0 9 31 * ? *)",
            ),
            (
                json!({"kind": "MONTHLY", "dayOfMonth": "LAST", "hour": 18, "minute": 30}),
                "cron(30 18 L * ? *)",
            ),
            (
                json!({"kind": "CRON", "expression": "30 8 * * MON-FRI"}),
                "cron(30 8 ? * MON-FRI *)",
            ),
        ];
        for (shape, expected) in cases {
            let spec = decode(shape.clone()).ok().and_then(|c| c.compile().ok());
            assert_eq!(
                spec.map(|s| s.eventbridge_expression()).as_deref(),
                Some(expected),
                "{shape}"
            );
        }
    }

    #[test]
    fn equivalent_cadences_compile_to_equal_specs() {
        let all_week = Cadence::Weekly {
            weekdays: vec![
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
                Weekday::Sat,
                Weekday::Sun,
            ],
            hour: 9,
            minute: 0,
        };
        let daily = Cadence::Daily { hour: 9, minute: 0 };
        let cron = Cadence::Cron {
            expression: "0 9 * * *".into(),
        };
        assert_eq!(all_week.compile(), daily.compile());
        assert_eq!(cron.compile(), daily.compile());
        let weekly = Cadence::Weekly {
            weekdays: vec![Weekday::Mon, Weekday::Thu, Weekday::Mon],
            hour: 9,
            minute: 0,
        };
        let cron = Cadence::Cron {
            expression: "0 9 * * 1,4".into(),
        };
        assert_eq!(weekly.compile(), cron.compile());
        let last = Cadence::Monthly {
            day_of_month: DayOfMonth::Last,
            hour: 0,
            minute: 0,
        };
        let cron = Cadence::Cron {
            expression: "0 0 L * *".into(),
        };
        assert_eq!(last.compile(), cron.compile());
    }

    #[test]
    fn hourly_and_daily_counts() {
        let hourly = Cadence::Hourly { minute: 7 }.compile().ok();
        assert_eq!(
            hourly.as_ref().map(|s| (s.minute_count(), s.hour_count())),
            Some((1, 24))
        );
        let daily = Cadence::Daily { hour: 7, minute: 7 }.compile().ok();
        assert_eq!(
            daily.map(|s| (s.minute_count(), s.hour_count())),
            Some((1, 1))
        );
    }

    #[test]
    fn timezones_are_exact_iana_names() {
        for name in [
            "UTC",
            "Europe/Berlin",
            "America/Argentina/Buenos_Aires",
            "Australia/Lord_Howe",
            "Etc/GMT+5",
            "US/Eastern",
        ] {
            assert_eq!(
                parse_timezone(name).map(|tz| tz.name().to_owned()),
                Ok(name.to_owned())
            );
        }
        for name in [
            "",
            "utc",
            "europe/berlin",
            "Europe/Berlin ",
            " UTC",
            "+02:00",
            "UTC+2",
            "CEST",
            "Mars/Olympus_Mons",
            "Europe/Berlin/Mitte",
        ] {
            let error = parse_timezone(name).err();
            assert_eq!(
                error.as_ref().map(|e| (e.code, e.field.as_str())),
                Some((CadenceErrorCode::InvalidTimezone, "timezone")),
                "{name:?}"
            );
        }
    }

    #[test]
    fn error_messages_do_not_echo_unbounded_input() {
        let long = "x".repeat(10_000);
        let error = parse_timezone(&long)
            .err()
            .map(|e| e.message)
            .unwrap_or_default();
        assert!(error.len() < 200, "{}", error.len());
    }

    #[test]
    fn error_codes_are_stable() {
        assert_eq!(CadenceErrorCode::InvalidCadence.as_str(), "INVALID_CADENCE");
        assert_eq!(CadenceErrorCode::InvalidCron.as_str(), "INVALID_CRON");
        assert_eq!(
            CadenceErrorCode::CronUnsupported.as_str(),
            "CRON_UNSUPPORTED"
        );
        assert_eq!(
            CadenceErrorCode::InvalidTimezone.as_str(),
            "INVALID_TIMEZONE"
        );
    }

    #[test]
    fn openapi_schema_describes_the_json_shape() {
        use utoipa::PartialSchema;
        let cadence = serde_json::to_string(&Cadence::schema()).unwrap_or_default();
        for needle in [
            "\"kind\"",
            "\"HOURLY\"",
            "\"CRON\"",
            "\"dayOfMonth\"",
            "\"expression\"",
        ] {
            assert!(cadence.contains(needle), "{needle} missing from {cadence}");
        }
        let day = serde_json::to_string(&DayOfMonth::schema()).unwrap_or_default();
        assert!(day.contains("\"LAST\"") && day.contains("31"), "{day}");
    }
}
