//! The compiled form every cadence becomes, and the search for the instants it fires.
//!
//! SPEC §4 promises EventBridge Scheduler's time semantics in the local engine and in
//! `nextRuns`: candidates are wall-clock times in the schedule's zone, a wall time inside a
//! spring-forward gap is skipped (never shifted), and a wall time that occurs twice fires once,
//! at its first occurrence. No cron crate we measured does all of that (see
//! `docs/time-semantics.md`), so the evaluator lives here. It is on the hot path of the local
//! timer and of every schedule response, hence bitsets, whole-month jumps and no allocation in
//! [`FireSpec::next_after`].

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, Timelike, Utc};

use super::zone::Zone;

pub(super) const ALL_MINUTES: u64 = (1 << 60) - 1;
pub(super) const ALL_HOURS: u32 = (1 << 24) - 1;
/// Bits 1..=12; bit 0 is unused so that a month number is its own bit index.
pub(super) const ALL_MONTHS: u16 = 0x1FFE;
/// Bits 1..=31; bit 0 is unused so that a day number is its own bit index.
pub(super) const ALL_DAYS: u32 = !1;
/// Bit 0 is Sunday, as in Unix cron.
pub(super) const ALL_WEEKDAYS: u8 = 0x7F;

/// How far ahead a search looks before giving up. The rarest cadence that can still fire is a
/// fifth weekday of February, which recurs at most every 28 years.
const SEARCH_YEARS: i32 = 30;

/// Which days of a month may fire. EventBridge can restrict only one of the two Unix day
/// fields, so after compilation exactly one kind of restriction (or none) remains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum DayRule {
    EveryDay,
    /// Bit d set = day d of the month (1..=31).
    DaysOfMonth(u32),
    LastDayOfMonth,
    /// Bit w set = weekday w, 0 = Sunday.
    Weekdays(u8),
    /// The `nth` (1..=5) `weekday` (0 = Sunday) of the month.
    NthWeekday {
        weekday: u8,
        nth: u8,
    },
}

/// A normalised cadence: the sets of minutes, hours, months and the day rule it fires on.
///
/// Different spellings of the same cadence compile to equal values (e.g. a `WEEKLY` on all
/// seven days equals a `DAILY`, and `0 9 * * 7` equals `0 9 * * SUN`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FireSpec {
    /// Bit m set = minute m (0..=59).
    pub(super) minutes: u64,
    /// Bit h set = hour h (0..=23).
    pub(super) hours: u32,
    /// Bit m set = month m (1..=12).
    pub(super) months: u16,
    pub(super) days: DayRule,
}

/// A position in local (wall-clock) time. `minute` may be 60 and the search treats it as "past
/// the end of this hour", which lets callers step forward without carrying into hours, days
/// and months themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cursor {
    year: i32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
}

impl Cursor {
    fn at(local: NaiveDateTime) -> Cursor {
        Cursor {
            year: local.year(),
            month: local.month(),
            day: local.day(),
            hour: local.hour(),
            minute: local.minute(),
        }
    }

    fn naive(self) -> Option<NaiveDateTime> {
        NaiveDate::from_ymd_opt(self.year, self.month, self.day)?.and_hms_opt(
            self.hour,
            self.minute,
            0,
        )
    }
}

impl FireSpec {
    /// Builds a spec, folding day restrictions that restrict nothing into `EveryDay` so that
    /// equality and the EventBridge rendering do not depend on how the cadence was spelled.
    pub(super) fn new(minutes: u64, hours: u32, months: u16, days: DayRule) -> FireSpec {
        let days = match days {
            DayRule::DaysOfMonth(d) if d & ALL_DAYS == ALL_DAYS => DayRule::EveryDay,
            DayRule::Weekdays(w) if w & ALL_WEEKDAYS == ALL_WEEKDAYS => DayRule::EveryDay,
            other => other,
        };
        FireSpec {
            minutes: minutes & ALL_MINUTES,
            hours: hours & ALL_HOURS,
            months: months & ALL_MONTHS,
            days,
        }
    }

    /// Number of distinct minute values (1 for anything at most hourly).
    pub fn minute_count(&self) -> u32 {
        self.minutes.count_ones()
    }

    /// Number of distinct hour values.
    pub fn hour_count(&self) -> u32 {
        self.hours.count_ones()
    }

    /// Whether `local` is one of this spec's wall-clock fire times. Fire times are whole
    /// minutes, so a time with seconds or a fraction never matches.
    pub fn matches_local(&self, local: NaiveDateTime) -> bool {
        if local.second() != 0 || local.nanosecond() != 0 {
            return false;
        }
        let (year, month, day) = (local.year(), local.month(), local.day());
        self.months & (1 << month) != 0
            && self.hours & (1 << local.hour()) != 0
            && self.minutes & (1 << local.minute()) != 0
            && self.day_mask(year, month) & (1 << day) != 0
    }

    /// The first fire instant strictly after `after`, or `None` if there is none within
    /// about 30 years.
    ///
    /// Mapping a wall time to its earliest instant is strictly increasing, so the answer is
    /// the first candidate wall time at or after the wall clock at `after` whose earliest
    /// instant is later than `after`. Candidates that do not exist (gap) are skipped; those
    /// whose first occurrence already passed (we are in the repeated hour) are too.
    pub fn next_after(&self, tz: &Zone, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.is_empty() {
            return None;
        }
        let offset = chrono::FixedOffset::east_opt(tz.offset_at(after.timestamp()))?;
        let wall = after.naive_utc().checked_add_offset(offset)?;
        let last_year = wall.year().saturating_add(SEARCH_YEARS);
        let mut from = Cursor::at(wall);
        loop {
            let candidate = self.first_candidate(from, last_year)?;
            if let Some(instant) = earliest_instant(tz, candidate.naive()?)
                && instant > after
            {
                return Some(instant);
            }
            from = Cursor {
                minute: candidate.minute + 1,
                ..candidate
            };
        }
    }

    /// The next `n` fire instants after `after`, ascending (fewer if the search runs out).
    pub fn upcoming(&self, tz: &Zone, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        // `n` may come from a request; do not let it size an allocation up front.
        let mut out = Vec::with_capacity(n.min(16));
        let mut cursor = after;
        while out.len() < n {
            match self.next_after(tz, cursor) {
                Some(next) => {
                    out.push(next);
                    cursor = next;
                }
                None => break,
            }
        }
        out
    }

    /// The wall-clock fire times that fall into a gap of `tz` whose clock change happens in
    /// `(from, until]`, ascending. These are the fires EventBridge silently skips, which the
    /// API reports as the `DST_SKIP` warning.
    ///
    /// Only the zone's forward clock changes are examined (a few a year, read from the
    /// time zone database), regardless of how often the cadence fires.
    pub fn dst_skips(
        &self,
        tz: &Zone,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Vec<NaiveDateTime> {
        let mut skipped = Vec::new();
        if self.is_empty() || until <= from {
            return skipped;
        }
        for change in tz.offset_changes(from.timestamp(), until.timestamp()) {
            if change.after > change.before {
                self.collect_gap(tz, change.at, change.before, change.after, &mut skipped);
            }
        }
        skipped
    }

    /// Pushes the candidates of the local gap `[change + before, change + after)`.
    fn collect_gap(
        &self,
        tz: &Zone,
        change: i64,
        before: i32,
        after: i32,
        out: &mut Vec<NaiveDateTime>,
    ) {
        let (Some(gap_start), Some(gap_end)) = (
            DateTime::from_timestamp(change.saturating_add(i64::from(before)), 0),
            DateTime::from_timestamp(change.saturating_add(i64::from(after)), 0),
        ) else {
            return;
        };
        let (gap_start, gap_end) = (gap_start.naive_utc(), gap_end.naive_utc());
        // A gap starting mid-minute would make its first minute boundary exist; start at the
        // next whole minute in that case.
        let mut from = Cursor::at(gap_start);
        if gap_start.second() != 0 {
            from.minute += 1;
        }
        let last_year = gap_end.year();
        while let Some(candidate) = self.first_candidate(from, last_year) {
            let Some(local) = candidate.naive() else {
                return;
            };
            if local >= gap_end {
                return;
            }
            if matches!(tz.instants_of(local), LocalResult::None) {
                out.push(local);
            }
            from = Cursor {
                minute: candidate.minute + 1,
                ..candidate
            };
        }
    }

    /// The first wall time at or after `from` that matches, ignoring the time zone.
    fn first_candidate(&self, from: Cursor, last_year: i32) -> Option<Cursor> {
        let Cursor {
            mut year,
            mut month,
            mut day,
            mut hour,
            mut minute,
        } = from;
        loop {
            if year > last_year {
                return None;
            }
            if self.months & (1 << month) != 0 {
                let mut days = self.day_mask(year, month) & (u32::MAX << day);
                while days != 0 {
                    let candidate_day = days.trailing_zeros();
                    let time = if candidate_day == day {
                        self.first_time_from(hour, minute)
                    } else {
                        self.first_time_from(0, 0)
                    };
                    if let Some((h, m)) = time {
                        return Some(Cursor {
                            year,
                            month,
                            day: candidate_day,
                            hour: h,
                            minute: m,
                        });
                    }
                    days &= days - 1;
                }
            }
            let later_months = self.months & (u16::MAX << (month + 1));
            if later_months != 0 {
                month = later_months.trailing_zeros();
            } else {
                year += 1;
                month = self.months.trailing_zeros();
            }
            (day, hour, minute) = (1, 0, 0);
        }
    }

    /// The first (hour, minute) of a day at or after `hour:minute`; `minute` may be 60.
    fn first_time_from(&self, hour: u32, minute: u32) -> Option<(u32, u32)> {
        if self.hours & (1 << hour) != 0 {
            let minutes = self.minutes & (u64::MAX << minute);
            if minutes != 0 {
                return Some((hour, minutes.trailing_zeros()));
            }
        }
        let later_hours = self.hours & (u32::MAX << (hour + 1));
        if later_hours != 0 {
            return Some((later_hours.trailing_zeros(), self.minutes.trailing_zeros()));
        }
        None
    }

    /// The days of `year`-`month` that may fire, as a bitset (bit d = day d).
    fn day_mask(&self, year: i32, month: u32) -> u32 {
        let length = days_in_month(year, month);
        let existing = ALL_DAYS & (u32::MAX >> (31 - length));
        match self.days {
            DayRule::EveryDay => existing,
            DayRule::DaysOfMonth(days) => days & existing,
            DayRule::LastDayOfMonth => 1 << length,
            DayRule::Weekdays(weekdays) => {
                // Lay the weekday pattern out over six weeks, then slide it so that bit 0 is the
                // weekday of the 1st: bit i is then day i + 1.
                let week = u64::from(weekdays & ALL_WEEKDAYS);
                let pattern = week | week << 7 | week << 14 | week << 21 | week << 28 | week << 35;
                let first = first_weekday(year, month);
                let by_day = ((pattern >> first) & 0x7FFF_FFFF) << 1;
                (by_day as u32) & existing
            }
            DayRule::NthWeekday { weekday, nth } => {
                let first = first_weekday(year, month);
                let day =
                    1 + (u32::from(weekday) + 7 - first) % 7 + 7 * (u32::from(nth).max(1) - 1);
                if day <= length { 1 << day } else { 0 }
            }
        }
    }

    /// A spec built by the parsers always has every set non-empty; this guards the bit
    /// arithmetic of the search against a hand-made one.
    fn is_empty(&self) -> bool {
        self.minutes == 0
            || self.hours == 0
            || self.months == 0
            || matches!(self.days, DayRule::DaysOfMonth(0) | DayRule::Weekdays(0))
    }
}

/// The earliest instant whose wall clock in `tz` reads `local`, or `None` inside a gap.
fn earliest_instant(tz: &Zone, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.instants_of(local) {
        LocalResult::Single(instant) | LocalResult::Ambiguous(instant, _) => Some(instant),
        LocalResult::None => None,
    }
}

fn is_leap_year(year: i32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

pub(super) fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Weekday of the 1st of the month, 0 = Sunday. Computed arithmetically (days since the
/// civil epoch) because it runs once per month visited by the search.
fn first_weekday(year: i32, month: u32) -> u32 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let march_based_month = i64::from((month + 9) % 12);
    let day_of_year = (153 * march_based_month + 2) / 5;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days_since_1970 = era * 146_097 + day_of_era - 719_468;
    // 1970-01-01 was a Thursday.
    (days_since_1970 + 4).rem_euclid(7) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::cadence::{Cadence, DayOfMonth, Weekday};
    use chrono::Duration;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
    }

    fn local(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M")
            .unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn zone(name: &str) -> Zone {
        Zone::named(name).unwrap_or_else(|| panic!("{name} is not in the database"))
    }

    fn cron(expression: &str) -> FireSpec {
        FireSpec::parse_cron(expression).unwrap_or_else(|e| panic!("{expression}: {e}"))
    }

    fn daily(hour: i64, minute: i64) -> FireSpec {
        Cadence::Daily { hour, minute }
            .compile()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn times(list: &[&str]) -> Vec<DateTime<Utc>> {
        list.iter().map(|t| at(t)).collect()
    }

    #[test]
    fn first_weekday_agrees_with_chrono() {
        for year in 1600..2500 {
            for month in 1..=12 {
                let first = NaiveDate::from_ymd_opt(year, month, 1)
                    .map(|d| d.weekday().num_days_from_sunday());
                assert_eq!(Some(first_weekday(year, month)), first, "{year}-{month}");
                let next = if month == 12 {
                    NaiveDate::from_ymd_opt(year + 1, 1, 1)
                } else {
                    NaiveDate::from_ymd_opt(year, month + 1, 1)
                };
                let length = next.and_then(|n| n.pred_opt()).map(|d| d.day());
                assert_eq!(Some(days_in_month(year, month)), length, "{year}-{month}");
            }
        }
    }

    #[test]
    fn utc_basics() {
        let utc = Zone::utc();
        assert_eq!(
            daily(9, 0).upcoming(&utc, at("2026-01-01T09:00:00Z"), 2),
            times(&["2026-01-02T09:00:00Z", "2026-01-03T09:00:00Z"])
        );
        assert_eq!(
            daily(9, 0).next_after(&utc, at("2026-01-01T08:59:59.999Z")),
            Some(at("2026-01-01T09:00:00Z"))
        );
        assert_eq!(
            cron("*/20 * * * *").upcoming(&utc, at("2026-12-31T23:30:00Z"), 3),
            times(&[
                "2026-12-31T23:40:00Z",
                "2027-01-01T00:00:00Z",
                "2027-01-01T00:20:00Z"
            ])
        );
        // Days beyond a month's length are skipped, LAST is not.
        assert_eq!(
            cron("0 0 31 * *").upcoming(&utc, at("2026-01-31T00:00:00Z"), 3),
            times(&[
                "2026-03-31T00:00:00Z",
                "2026-05-31T00:00:00Z",
                "2026-07-31T00:00:00Z"
            ])
        );
        assert_eq!(
            cron("0 0 L * *").upcoming(&utc, at("2028-01-31T00:00:00Z"), 3),
            times(&[
                "2028-02-29T00:00:00Z",
                "2028-03-31T00:00:00Z",
                "2028-04-30T00:00:00Z"
            ])
        );
        assert_eq!(
            cron("0 0 29 2 *").upcoming(&utc, at("2096-03-01T00:00:00Z"), 1),
            times(&["2104-02-29T00:00:00Z"])
        );
        assert_eq!(
            cron("0 8 * * MON#5").upcoming(&utc, at("2026-01-01T00:00:00Z"), 3),
            times(&[
                "2026-03-30T08:00:00Z",
                "2026-06-29T08:00:00Z",
                "2026-08-31T08:00:00Z"
            ])
        );
        let weekly = Cadence::Weekly {
            weekdays: vec![Weekday::Sun, Weekday::Wed],
            hour: 12,
            minute: 0,
        };
        assert_eq!(
            weekly
                .compile()
                .ok()
                .map(|s| s.upcoming(&utc, at("2026-01-01T00:00:00Z"), 3)),
            Some(times(&[
                "2026-01-04T12:00:00Z",
                "2026-01-07T12:00:00Z",
                "2026-01-11T12:00:00Z"
            ]))
        );
        assert!(
            daily(9, 0)
                .upcoming(&utc, at("2026-01-01T00:00:00Z"), 0)
                .is_empty()
        );
    }

    #[test]
    fn matches_local_only_whole_minutes() {
        let spec = daily(9, 30);
        assert!(spec.matches_local(local("2026-05-05 09:30")));
        assert!(!spec.matches_local(local("2026-05-05 09:31")));
        let with_seconds = local("2026-05-05 09:30").with_second(1);
        assert_eq!(with_seconds.map(|t| spec.matches_local(t)), Some(false));
        let monthly = Cadence::Monthly {
            day_of_month: DayOfMonth::Last,
            hour: 0,
            minute: 0,
        }
        .compile()
        .ok();
        assert_eq!(
            monthly
                .as_ref()
                .map(|s| s.matches_local(local("2026-02-28 00:00"))),
            Some(true)
        );
        assert_eq!(
            monthly
                .as_ref()
                .map(|s| s.matches_local(local("2028-02-28 00:00"))),
            Some(false)
        );
    }

    #[test]
    fn search_gives_up_after_about_thirty_years() {
        // 5th Monday of February: only when 29 February is a Monday. 2044, then 2072; 2100 is not
        // a leap year, which pushes the next one past the horizon.
        let spec = cron("0 0 * 2 MON#5");
        assert_eq!(
            spec.next_after(&Zone::utc(), at("2026-01-01T00:00:00Z")),
            Some(at("2044-02-29T00:00:00Z"))
        );
        assert_eq!(
            spec.next_after(&Zone::utc(), at("2045-01-01T00:00:00Z")),
            Some(at("2072-02-29T00:00:00Z"))
        );
        assert_eq!(
            spec.next_after(&Zone::utc(), at("2073-01-01T00:00:00Z")),
            None
        );
        // The ends of chrono's range are not a panic.
        for tz in [
            Zone::utc(),
            zone("Pacific/Kiritimati"),
            zone("Pacific/Niue"),
        ] {
            assert_eq!(daily(0, 0).next_after(&tz, DateTime::<Utc>::MAX_UTC), None);
            let _ = daily(0, 0).next_after(&tz, DateTime::<Utc>::MIN_UTC);
            let (min, max) = (DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC);
            assert!(
                daily(0, 0)
                    .dst_skips(&tz, min, min + Duration::days(400))
                    .is_empty()
            );
            assert!(
                daily(0, 0)
                    .dst_skips(&tz, max - Duration::days(400), max)
                    .is_empty()
            );
        }
    }

    #[test]
    fn new_york_spring_gap_is_skipped() {
        let ny = zone("America/New_York");
        assert_eq!(
            daily(2, 30).upcoming(&ny, at("2026-03-06T12:00:00Z"), 3),
            times(&[
                "2026-03-07T07:30:00Z",
                "2026-03-09T06:30:00Z",
                "2026-03-10T06:30:00Z"
            ])
        );
        assert_eq!(
            cron("30 * * * *").upcoming(&ny, at("2026-03-08T05:00:00Z"), 3),
            times(&[
                "2026-03-08T05:30:00Z",
                "2026-03-08T06:30:00Z",
                "2026-03-08T07:30:00Z"
            ])
        );
        // 03:00 exists (it is where the clock lands) and fires normally.
        assert_eq!(
            daily(3, 0).next_after(&ny, at("2026-03-08T06:59:00Z")),
            Some(at("2026-03-08T07:00:00Z"))
        );
    }

    #[test]
    fn new_york_fall_back_fires_once_at_the_first_occurrence() {
        let ny = zone("America/New_York");
        let spec = daily(1, 30);
        assert_eq!(
            spec.upcoming(&ny, at("2026-10-31T12:00:00Z"), 2),
            times(&["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"])
        );
        for after in [
            "2026-11-01T05:30:00Z",
            "2026-11-01T06:00:00Z",
            "2026-11-01T06:30:00Z",
        ] {
            assert_eq!(
                spec.next_after(&ny, at(after)),
                Some(at("2026-11-02T06:30:00Z")),
                "{after}"
            );
        }
        assert_eq!(
            spec.next_after(&ny, at("2026-11-01T05:29:59Z")),
            Some(at("2026-11-01T05:30:00Z"))
        );
        // Hourly: 01:30 EST would repeat 01:30 EDT, so that hour has no fire.
        assert_eq!(
            cron("30 * * * *").upcoming(&ny, at("2026-11-01T04:00:00Z"), 3),
            times(&[
                "2026-11-01T04:30:00Z",
                "2026-11-01T05:30:00Z",
                "2026-11-01T07:30:00Z"
            ])
        );
    }

    #[test]
    fn london_transitions() {
        let london = zone("Europe/London");
        assert_eq!(
            daily(1, 30).upcoming(&london, at("2026-03-27T12:00:00Z"), 2),
            times(&["2026-03-28T01:30:00Z", "2026-03-30T00:30:00Z"])
        );
        assert_eq!(
            daily(1, 30).upcoming(&london, at("2026-10-24T12:00:00Z"), 2),
            times(&["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"])
        );
    }

    #[test]
    fn lord_howe_half_hour_transitions() {
        let lord_howe = zone("Australia/Lord_Howe");
        // 02:00 -> 02:30 on 4 October 2026: 02:15 does not exist, 02:45 does.
        assert_eq!(
            daily(2, 15).upcoming(&lord_howe, at("2026-10-02T00:00:00Z"), 2),
            times(&["2026-10-02T15:45:00Z", "2026-10-04T15:15:00Z"])
        );
        assert_eq!(
            daily(2, 45).next_after(&lord_howe, at("2026-10-03T12:00:00Z")),
            Some(at("2026-10-03T15:45:00Z"))
        );
        // 02:00 -> 01:30 on 5 April 2026: 01:45 happens twice and fires at +11:00.
        assert_eq!(
            daily(1, 45).upcoming(&lord_howe, at("2026-04-04T12:00:00Z"), 2),
            times(&["2026-04-04T14:45:00Z", "2026-04-05T15:15:00Z"])
        );
    }

    #[test]
    fn midnight_transitions() {
        let havana = zone("America/Havana");
        assert_eq!(
            daily(0, 30).upcoming(&havana, at("2026-03-06T12:00:00Z"), 2),
            times(&["2026-03-07T05:30:00Z", "2026-03-09T04:30:00Z"])
        );
        // Cuba keeps summer time through the winter of 2026-27 (tzdb 2026f).
        assert_eq!(
            daily(0, 30).upcoming(&havana, at("2027-11-06T12:00:00Z"), 2),
            times(&["2027-11-07T04:30:00Z", "2027-11-08T05:30:00Z"])
        );
        // Santiago: midnight of 6 September 2026 does not exist; 23:xx of 4 April repeats.
        let santiago = zone("America/Santiago");
        assert_eq!(
            daily(0, 0).upcoming(&santiago, at("2026-09-04T12:00:00Z"), 2),
            times(&["2026-09-05T04:00:00Z", "2026-09-07T03:00:00Z"])
        );
        assert_eq!(
            daily(23, 30).upcoming(&santiago, at("2026-04-04T12:00:00Z"), 2),
            times(&["2026-04-05T02:30:00Z", "2026-04-06T03:30:00Z"])
        );
        // A monthly on the 6th at midnight loses September 2026 entirely.
        let sixth = cron("0 0 6 * *");
        assert_eq!(
            sixth.upcoming(&santiago, at("2026-08-07T00:00:00Z"), 1),
            times(&["2026-10-06T03:00:00Z"])
        );
        // Nuuk springs forward at 23:00 the evening before.
        let nuuk = zone("America/Nuuk");
        assert_eq!(
            daily(23, 30).upcoming(&nuuk, at("2026-03-27T12:00:00Z"), 2),
            times(&["2026-03-28T01:30:00Z", "2026-03-30T00:30:00Z"])
        );
    }

    #[test]
    fn dst_skips_finds_the_gap_fires() {
        let year = (at("2026-01-01T00:00:00Z"), at("2027-01-01T00:00:00Z"));
        let cases: [(&str, FireSpec, &[&str]); 12] = [
            ("America/New_York", daily(2, 30), &["2026-03-08 02:30"]),
            (
                "America/New_York",
                cron("30 * * * *"),
                &["2026-03-08 02:30"],
            ),
            ("America/New_York", daily(3, 0), &[]),
            ("America/New_York", cron("0 2 * * MON-SAT"), &[]),
            ("Europe/London", daily(1, 0), &["2026-03-29 01:00"]),
            (
                "Antarctica/Troll",
                cron("0 * * * *"),
                &["2026-03-29 01:00", "2026-03-29 02:00"],
            ),
            (
                "Australia/Lord_Howe",
                cron("*/15 * * * *"),
                &["2026-10-04 02:00", "2026-10-04 02:15"],
            ),
            ("America/Havana", daily(0, 0), &["2026-03-08 00:00"]),
            ("America/Santiago", cron("0 0 6 * *"), &["2026-09-06 00:00"]),
            ("America/Nuuk", daily(23, 59), &["2026-03-28 23:59"]),
            ("Pacific/Chatham", daily(3, 0), &["2026-09-27 03:00"]),
            ("UTC", cron("* * * * *"), &[]),
        ];
        for (name, spec, expected) in cases {
            let skipped = spec.dst_skips(&zone(name), year.0, year.1);
            let expected: Vec<_> = expected.iter().map(|t| local(t)).collect();
            assert_eq!(
                skipped,
                expected,
                "{name} {}",
                spec.eventbridge_expression()
            );
        }
        let every_minute = cron("* * * * *").dst_skips(&zone("America/New_York"), year.0, year.1);
        assert_eq!(every_minute.len(), 60);
        assert_eq!(every_minute.first(), Some(&local("2026-03-08 02:00")));
        assert_eq!(every_minute.last(), Some(&local("2026-03-08 02:59")));
    }

    #[test]
    fn dst_skips_window_is_half_open_on_the_change_instant() {
        let ny = zone("America/New_York");
        let change = at("2026-03-08T07:00:00Z");
        let gap = vec![local("2026-03-08 02:30")];
        let second = Duration::seconds(1);
        assert_eq!(daily(2, 30).dst_skips(&ny, change - second, change), gap);
        assert_eq!(
            daily(2, 30).dst_skips(&ny, change, change + Duration::days(300)),
            vec![]
        );
        assert_eq!(
            daily(2, 30).dst_skips(&ny, change - Duration::days(300), change - second),
            vec![]
        );
        assert_eq!(daily(2, 30).dst_skips(&ny, change, change - second), vec![]);
        // Several years find every spring gap.
        let skips =
            daily(2, 30).dst_skips(&ny, at("2026-01-01T00:00:00Z"), at("2031-01-01T00:00:00Z"));
        assert_eq!(skips.len(), 5);
    }

    /// Property tests against independent models: Unix cron semantics evaluated straight from
    /// the generated expression's structure, and a minute-by-minute walk over UTC.
    mod properties {
        use super::*;
        use proptest::prelude::*;
        use proptest::sample::Index;
        use std::sync::OnceLock;

        const ZONES: [&str; 23] = [
            "UTC",
            "Europe/London",
            "Europe/Berlin",
            "Europe/Dublin",
            "America/New_York",
            "America/Los_Angeles",
            "America/Santiago",
            "America/Havana",
            "America/St_Johns",
            "America/Nuuk",
            "Australia/Sydney",
            "Australia/Lord_Howe",
            "Pacific/Auckland",
            "Pacific/Chatham",
            "Asia/Kolkata",
            "Asia/Kathmandu",
            "Asia/Beirut",
            "Africa/Cairo",
            "Africa/Casablanca",
            "Antarctica/Troll",
            "Asia/Tehran",
            "Asia/Gaza",
            "Pacific/Kiritimati",
        ];

        /// How far the brute-force reference looks ahead of each start.
        const REFERENCE_MINUTES: i64 = 3 * 24 * 60;

        fn offset_seconds(tz: &Zone, t: i64) -> i32 {
            tz.offset_at(t)
        }

        /// Every offset change of each zone in 2026..2031, found by scanning every six hours
        /// and bisecting to the second.
        fn transitions() -> &'static [(Zone, Vec<i64>)] {
            static TRANSITIONS: OnceLock<Vec<(Zone, Vec<i64>)>> = OnceLock::new();
            TRANSITIONS.get_or_init(|| {
                let (start, end) = (
                    at("2026-01-01T00:00:00Z").timestamp(),
                    at("2031-01-01T00:00:00Z").timestamp(),
                );
                ZONES
                    .iter()
                    .map(|name| {
                        let tz = zone(name);
                        let mut found = Vec::new();
                        let mut t = start;
                        while t < end {
                            let next = t + 6 * 3600;
                            if offset_seconds(&tz, t) != offset_seconds(&tz, next) {
                                let (mut lo, mut hi) = (t, next);
                                while hi - lo > 1 {
                                    let mid = (lo + hi) / 2;
                                    if offset_seconds(&tz, mid) == offset_seconds(&tz, lo) {
                                        lo = mid;
                                    } else {
                                        hi = mid;
                                    }
                                }
                                found.push(hi);
                            }
                            t = next;
                        }
                        (tz, found)
                    })
                    .collect()
            })
        }

        /// The scan that picks the transitions to aim at finds exactly the clock changes the
        /// database lists, and the chosen zones give it plenty to aim at.
        #[test]
        fn the_scan_finds_every_listed_clock_change() {
            let (start, end) = (
                at("2026-01-01T00:00:00Z").timestamp(),
                at("2031-01-01T00:00:00Z").timestamp(),
            );
            for (tz, found) in transitions() {
                let listed: Vec<i64> = tz.offset_changes(start, end).iter().map(|c| c.at).collect();
                assert_eq!(found, &listed, "{tz}");
            }
            let changing = transitions()
                .iter()
                .filter(|(_, found)| found.len() >= 8)
                .count();
            assert!(
                changing >= 15,
                "only {changing} zones change their clocks regularly"
            );
        }

        // ---- the cron model -------------------------------------------------------------

        #[derive(Clone, Debug)]
        enum Item {
            Star,
            StarStep(u32),
            Value(u32),
            Range(u32, u32),
            RangeStep(u32, u32, u32),
            ValueStep(u32, u32),
        }

        impl Item {
            fn contains(&self, v: u32, min: u32, max: u32) -> bool {
                match *self {
                    Item::Star => true,
                    Item::StarStep(n) => (v - min).is_multiple_of(n),
                    Item::Value(a) => v == a,
                    Item::Range(a, b) => a <= v && v <= b,
                    Item::RangeStep(a, b, n) => a <= v && v <= b && (v - a).is_multiple_of(n),
                    Item::ValueStep(a, n) => a <= v && v <= max && (v - a).is_multiple_of(n),
                }
            }

            fn render(&self, name: &dyn Fn(u32) -> String) -> String {
                match *self {
                    Item::Star => "*".to_owned(),
                    Item::StarStep(n) => format!("*/{n}"),
                    Item::Value(a) => name(a),
                    Item::Range(a, b) => format!("{}-{}", name(a), name(b)),
                    Item::RangeStep(a, b, n) => format!("{}-{}/{n}", name(a), name(b)),
                    Item::ValueStep(a, n) => format!("{}/{n}", name(a)),
                }
            }

            fn is_star(&self) -> bool {
                matches!(self, Item::Star | Item::StarStep(_))
            }
        }

        #[derive(Clone, Debug)]
        enum DomModel {
            Items(Vec<Item>),
            Last,
        }

        #[derive(Clone, Debug)]
        enum DowModel {
            Items(Vec<Item>),
            Nth(u32, u32),
        }

        #[derive(Clone, Debug)]
        struct CronModel {
            minute: Vec<Item>,
            hour: Vec<Item>,
            dom: DomModel,
            month: Vec<Item>,
            dow: DowModel,
            /// Spell months and weekdays as names, in this case style (0 = numbers).
            names: u8,
        }

        fn spell(name: &str, style: u8) -> String {
            match style {
                1 => name.to_owned(),
                2 => name.to_ascii_lowercase(),
                _ => {
                    let lower = name.to_ascii_lowercase();
                    lower[..1].to_ascii_uppercase() + &lower[1..]
                }
            }
        }

        fn has(items: &[Item], v: u32, min: u32, max: u32) -> bool {
            items.iter().any(|item| item.contains(v, min, max))
        }

        fn join(items: &[Item], name: &dyn Fn(u32) -> String) -> String {
            items
                .iter()
                .map(|i| i.render(name))
                .collect::<Vec<_>>()
                .join(",")
        }

        impl CronModel {
            fn expression(&self) -> String {
                let number = |v: u32| v.to_string();
                let month_name = |v: u32| match self.names {
                    0 => v.to_string(),
                    style => spell(MONTHS[(v - 1) as usize], style),
                };
                let weekday_name = |v: u32| match (self.names, v) {
                    (0, _) | (_, 7) => v.to_string(),
                    (style, v) => spell(WEEKDAYS[v as usize], style),
                };
                let dom = match &self.dom {
                    DomModel::Items(items) => join(items, &number),
                    DomModel::Last => "L".to_owned(),
                };
                let dow = match &self.dow {
                    DowModel::Items(items) => join(items, &weekday_name),
                    DowModel::Nth(d, n) => format!("{}#{n}", weekday_name(*d)),
                };
                format!(
                    "{} {} {dom} {} {dow}",
                    join(&self.minute, &number),
                    join(&self.hour, &number),
                    join(&self.month, &month_name)
                )
            }

            fn dom_star(&self) -> bool {
                matches!(&self.dom, DomModel::Items(items) if items[0].is_star())
            }

            fn dow_star(&self) -> bool {
                matches!(&self.dow, DowModel::Items(items) if items[0].is_star())
            }

            fn dom_full(&self) -> bool {
                match &self.dom {
                    DomModel::Items(items) => (1..=31).all(|d| has(items, d, 1, 31)),
                    DomModel::Last => false,
                }
            }

            fn dow_full(&self) -> bool {
                match &self.dow {
                    DowModel::Items(_) => (0..7).all(|d| self.dow_has(d)),
                    DowModel::Nth(..) => false,
                }
            }

            fn dow_has(&self, weekday: u32) -> bool {
                match &self.dow {
                    DowModel::Items(items) => {
                        has(items, weekday, 0, 7) || (weekday == 0 && has(items, 7, 0, 7))
                    }
                    DowModel::Nth(..) => false,
                }
            }

            /// Unix (Vixie) semantics, straight from the structure.
            fn matches(&self, t: NaiveDateTime) -> bool {
                let day = t.day();
                let last_day = t
                    .date()
                    .succ_opt()
                    .is_none_or(|next| next.month() != t.month());
                let dom = match &self.dom {
                    DomModel::Items(items) => has(items, day, 1, 31),
                    DomModel::Last => last_day,
                };
                let weekday = t.weekday().num_days_from_sunday();
                let dow = match &self.dow {
                    DowModel::Items(_) => self.dow_has(weekday),
                    DowModel::Nth(d, n) => weekday == d % 7 && (day - 1) / 7 + 1 == *n,
                };
                let days = if self.dom_star() || self.dow_star() {
                    dom && dow
                } else {
                    dom || dow
                };
                t.second() == 0
                    && has(&self.minute, t.minute(), 0, 59)
                    && has(&self.hour, t.hour(), 0, 23)
                    && has(&self.month, t.month(), 1, 12)
                    && days
            }

            /// What compiling must say, derived from the model alone.
            fn expected_error(&self) -> Option<CadenceErrorCode> {
                if !self.dom_full() && !self.dow_full() {
                    return Some(CadenceErrorCode::CronUnsupported);
                }
                let only_dom =
                    (self.dom_star() || self.dow_star()) && self.dow_full() && !self.dom_full();
                if let (true, DomModel::Items(items)) = (only_dom, &self.dom) {
                    let possible = (1..=12)
                        .filter(|m| has(&self.month, *m, 1, 12))
                        .any(|m| (1..=days_in_month(2000, m)).any(|d| has(items, d, 1, 31)));
                    if !possible {
                        return Some(CadenceErrorCode::InvalidCron);
                    }
                }
                None
            }
        }

        const MONTHS: [&str; 12] = [
            "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
        ];
        const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

        fn item(min: u32, max: u32) -> impl Strategy<Value = Item> {
            let step = 1..=max;
            prop_oneof![
                2 => Just(Item::Star),
                1 => step.clone().prop_map(Item::StarStep),
                4 => (min..=max).prop_map(Item::Value),
                2 => (min..=max, min..=max).prop_map(|(a, b)| Item::Range(a.min(b), a.max(b))),
                1 => (min..=max, min..=max, step.clone())
                    .prop_map(|(a, b, n)| Item::RangeStep(a.min(b), a.max(b), n)),
                1 => (min..=max, step).prop_map(|(a, n)| Item::ValueStep(a, n)),
            ]
        }

        fn items(min: u32, max: u32) -> impl Strategy<Value = Vec<Item>> {
            prop::collection::vec(item(min, max), 1..=3)
        }

        fn star_led(min: u32, max: u32) -> impl Strategy<Value = Vec<Item>> {
            let lead = prop_oneof![3 => Just(Item::Star), 1 => (1..=max).prop_map(Item::StarStep)];
            (lead, prop::collection::vec(item(min, max), 0..=1)).prop_map(|(lead, rest)| {
                let mut all = vec![lead];
                all.extend(rest);
                all
            })
        }

        fn dom_any() -> impl Strategy<Value = DomModel> {
            prop_oneof![
                3 => items(1, 31).prop_map(DomModel::Items),
                1 => Just(DomModel::Last),
            ]
        }

        fn dow_any() -> impl Strategy<Value = DowModel> {
            prop_oneof![
                3 => items(0, 7).prop_map(DowModel::Items),
                1 => (0..=7u32, 1..=5u32).prop_map(|(d, n)| DowModel::Nth(d, n)),
            ]
        }

        /// Hours near midnight and the usual change times are where DST bites.
        fn hour_items() -> impl Strategy<Value = Vec<Item>> {
            prop_oneof![
                1 => items(0, 23),
                1 => prop::sample::select(vec![0u32, 1, 2, 3, 22, 23])
                    .prop_map(|h| vec![Item::Value(h)]),
            ]
        }

        fn minute_items() -> impl Strategy<Value = Vec<Item>> {
            prop_oneof![
                3 => prop::sample::select(vec![0u32, 15, 30, 45, 59])
                    .prop_map(|m| vec![Item::Value(m)]),
                2 => items(0, 59),
            ]
        }

        fn cron_model() -> impl Strategy<Value = CronModel> {
            let days = prop_oneof![
                2 => (star_led(1, 31).prop_map(DomModel::Items), dow_any()),
                2 => (dom_any(), star_led(0, 7).prop_map(DowModel::Items)),
                1 => (dom_any(), dow_any()),
            ];
            let month = prop_oneof![3 => Just(vec![Item::Star]), 1 => items(1, 12)];
            (minute_items(), hour_items(), days, month, 0..4u8).prop_map(
                |(minute, hour, (dom, dow), month, names)| CronModel {
                    minute,
                    hour,
                    dom,
                    month,
                    dow,
                    names,
                },
            )
        }

        fn weekday() -> impl Strategy<Value = Weekday> {
            prop::sample::select(vec![
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
                Weekday::Sat,
                Weekday::Sun,
            ])
        }

        fn cadence() -> impl Strategy<Value = Cadence> {
            let hour = prop_oneof![0..24i64, prop::sample::select(vec![0i64, 1, 2, 3, 23])];
            let minute = prop_oneof![0..60i64, prop::sample::select(vec![0i64, 30, 45, 59])];
            prop_oneof![
                minute.clone().prop_map(|minute| Cadence::Hourly { minute }),
                (hour.clone(), minute.clone())
                    .prop_map(|(hour, minute)| Cadence::Daily { hour, minute }),
                (
                    prop::collection::vec(weekday(), 1..=4),
                    hour.clone(),
                    minute.clone()
                )
                    .prop_map(|(weekdays, hour, minute)| Cadence::Weekly {
                        weekdays,
                        hour,
                        minute
                    }),
                (
                    prop_oneof![
                        (1..=31i64).prop_map(DayOfMonth::Day),
                        Just(DayOfMonth::Last)
                    ],
                    hour,
                    minute
                )
                    .prop_map(|(day_of_month, hour, minute)| Cadence::Monthly {
                        day_of_month,
                        hour,
                        minute
                    }),
            ]
        }

        /// A cadence kind's meaning, written independently of the compiler.
        fn cadence_matches(cadence: &Cadence, t: NaiveDateTime) -> bool {
            let at = |hour: i64, minute: i64| {
                i64::from(t.hour()) == hour && i64::from(t.minute()) == minute && t.second() == 0
            };
            match cadence {
                Cadence::Hourly { minute } => i64::from(t.minute()) == *minute && t.second() == 0,
                Cadence::Daily { hour, minute } => at(*hour, *minute),
                Cadence::Weekly {
                    weekdays,
                    hour,
                    minute,
                } => {
                    let today = match t.weekday() {
                        chrono::Weekday::Mon => Weekday::Mon,
                        chrono::Weekday::Tue => Weekday::Tue,
                        chrono::Weekday::Wed => Weekday::Wed,
                        chrono::Weekday::Thu => Weekday::Thu,
                        chrono::Weekday::Fri => Weekday::Fri,
                        chrono::Weekday::Sat => Weekday::Sat,
                        chrono::Weekday::Sun => Weekday::Sun,
                    };
                    weekdays.contains(&today) && at(*hour, *minute)
                }
                Cadence::Monthly {
                    day_of_month,
                    hour,
                    minute,
                } => {
                    let day_ok = match day_of_month {
                        DayOfMonth::Day(d) => i64::from(t.day()) == *d,
                        DayOfMonth::Last => {
                            t.date().succ_opt().is_none_or(|n| n.month() != t.month())
                        }
                    };
                    day_ok && at(*hour, *minute)
                }
                Cadence::Cron { .. } => false,
            }
        }

        #[derive(Clone, Debug)]
        enum Model {
            Cadence(Cadence),
            Cron(CronModel),
        }

        impl Model {
            fn matches(&self, t: NaiveDateTime) -> bool {
                match self {
                    Model::Cadence(cadence) => cadence_matches(cadence, t),
                    Model::Cron(cron) => cron.matches(t),
                }
            }

            fn compile(&self) -> Result<FireSpec, CadenceError> {
                match self {
                    Model::Cadence(cadence) => cadence.compile(),
                    Model::Cron(cron) => FireSpec::parse_cron(&cron.expression()),
                }
            }
        }

        use crate::domain::cadence::{CadenceError, CadenceErrorCode};

        fn model() -> impl Strategy<Value = Model> {
            prop_oneof![
                2 => cadence().prop_map(Model::Cadence),
                3 => cron_model().prop_map(Model::Cron),
            ]
        }

        /// The wall clock at `t`, from the zone's UTC offset alone (the engine maps wall
        /// times to instants, the other direction).
        fn wall(tz: &Zone, t: DateTime<Utc>) -> NaiveDateTime {
            t.naive_utc() + Duration::seconds(i64::from(tz.offset_at(t.timestamp())))
        }

        /// No earlier minute within the widest repeated stretch (three hours) reads the
        /// same wall time.
        fn is_first_occurrence(tz: &Zone, t: DateTime<Utc>) -> bool {
            let local = wall(tz, t);
            !(1..=180).any(|k| wall(tz, t - Duration::minutes(k)) == local)
        }

        /// Minute u fires iff its wall time matches and u is the earliest instant with that
        /// wall time.
        fn reference_next(
            model: &Model,
            tz: &Zone,
            after: DateTime<Utc>,
            minutes: i64,
        ) -> Option<DateTime<Utc>> {
            let first = DateTime::from_timestamp(after.timestamp().div_euclid(60) * 60 + 60, 0)?;
            (0..minutes)
                .map(|k| first + Duration::minutes(k))
                .find(|u| model.matches(wall(tz, *u)) && is_first_occurrence(tz, *u))
        }

        /// Wall times that match but are jumped over by a forward change at a minute in
        /// `(from, until]`.
        fn reference_skips(
            model: &Model,
            tz: &Zone,
            from: DateTime<Utc>,
            until: DateTime<Utc>,
        ) -> Vec<NaiveDateTime> {
            let mut skipped = Vec::new();
            let Some(mut u) =
                DateTime::from_timestamp(from.timestamp().div_euclid(60) * 60 + 60, 0)
            else {
                return skipped;
            };
            while u <= until {
                let (before, now) = (wall(tz, u - Duration::minutes(1)), wall(tz, u));
                let mut missing = before + Duration::minutes(1);
                while missing < now {
                    if model.matches(missing) {
                        skipped.push(missing);
                    }
                    missing += Duration::minutes(1);
                }
                u += Duration::minutes(1);
            }
            skipped
        }

        fn start_instant(
            zone: Index,
            transition: Index,
            shift: i64,
            anywhere: i64,
        ) -> (Zone, DateTime<Utc>) {
            let zones = transitions();
            let (tz, found) = &zones[zone.index(zones.len())];
            let t = if found.is_empty() {
                at("2026-01-01T00:00:00Z").timestamp() + anywhere
            } else {
                found[transition.index(found.len())] + shift
            };
            (
                tz.clone(),
                DateTime::from_timestamp(t, 0).unwrap_or_default(),
            )
        }

        fn shift() -> impl Strategy<Value = i64> {
            prop_oneof![
                -172_800i64..172_800,
                (-2_880i64..2_880).prop_map(|m| m * 60),
                Just(0i64),
                Just(-1i64),
            ]
        }

        fn cases(default: u32) -> ProptestConfig {
            let cases = std::env::var("FIRE_TIMES_CASES")
                .ok()
                .and_then(|c| c.parse().ok())
                .unwrap_or(default);
            ProptestConfig {
                cases,
                failure_persistence: None,
                ..ProptestConfig::default()
            }
        }

        proptest! {
            #![proptest_config(cases(3000))]

            /// The parser against Unix semantics, at random wall times (no zone involved).
            #[test]
            fn cron_compiles_to_unix_semantics(
                cron in cron_model(),
                probes in prop::collection::vec((0i64..400 * 24 * 60, any::<bool>()), 32),
            ) {
                let expression = cron.expression();
                let compiled = FireSpec::parse_cron(&expression);
                match (cron.expected_error(), &compiled) {
                    (None, Ok(_)) => {}
                    (Some(code), Err(error)) => {
                        prop_assert_eq!(code, error.code, "{} {}", expression, error);
                        prop_assert_eq!(error.field.as_str(), "cadence.expression");
                    }
                    (expected, actual) => {
                        prop_assert!(
                            false, "{}: expected {:?}, got {:?}", expression, expected, actual
                        );
                    }
                }
                let Ok(spec) = compiled else { return Ok(()) };
                let base = local("2027-12-01 00:00");
                for (minutes, on_hit) in probes {
                    let mut t = base + Duration::minutes(minutes);
                    // Half the probes start from an actual fire, so both answers get exercised.
                    if on_hit && let Some(hit) = spec.next_after(&Zone::utc(), t.and_utc()) {
                        t = hit.naive_utc();
                    }
                    prop_assert_eq!(
                        spec.matches_local(t), cron.matches(t), "{} at {}", expression, t
                    );
                }
                // The search against a day-by-day walk of the model (UTC: no gaps, no repeats).
                for minutes in [0, 1_000_003, 7_777_777] {
                    let after = (base + Duration::minutes(minutes)).and_utc();
                    prop_assert_eq!(
                        spec.next_after(&Zone::utc(), after),
                        walk_days(&cron, after, 30 * 365),
                        "{} after {}", expression, after
                    );
                }
                // The EventBridge rendering, read back as Unix cron, is the same schedule.
                let rendered = spec.eventbridge_expression();
                let unix = eventbridge_to_unix(&rendered);
                let reparsed = FireSpec::parse_cron(&unix);
                prop_assert_eq!(
                    reparsed.as_ref(), Ok(&spec), "{} -> {} -> {}", expression, rendered, unix
                );
            }
        }

        /// The first whole minute after `after` that the model accepts, walking whole days:
        /// a day is tried only if the model accepts its first candidate time of day.
        fn walk_days(cron: &CronModel, after: DateTime<Utc>, days: i64) -> Option<DateTime<Utc>> {
            let first = after.naive_utc().date();
            let times: Vec<(u32, u32)> = (0..24)
                .flat_map(|h| (0..60).map(move |m| (h, m)))
                .filter(|(h, m)| has(&cron.hour, *h, 0, 23) && has(&cron.minute, *m, 0, 59))
                .collect();
            let &(first_hour, first_minute) = times.first()?;
            (0..days)
                .map(|k| first + Duration::days(k))
                .find_map(|date| {
                    if !cron.matches(date.and_hms_opt(first_hour, first_minute, 0)?) {
                        return None;
                    }
                    times
                        .iter()
                        .filter_map(|(h, m)| date.and_hms_opt(*h, *m, 0))
                        .map(|t| t.and_utc())
                        .find(|t| *t > after)
                })
        }

        /// Converts our own EventBridge output back to the Unix form (test helper only).
        fn eventbridge_to_unix(expression: &str) -> String {
            let inner = expression.trim_start_matches("cron(").trim_end_matches(')');
            let fields: Vec<&str> = inner.split(' ').collect();
            assert_eq!(fields.len(), 6, "{expression}");
            assert_eq!(fields[5], "*", "{expression}");
            assert!(
                (fields[2] == "?") != (fields[4] == "?"),
                "exactly one ? in {expression}"
            );
            let dom = if fields[2] == "?" { "*" } else { fields[2] };
            let dow = match fields[4].split_once('#') {
                Some((d, n)) => format!("{}#{n}", d.parse::<u32>().map(|d| d - 1).unwrap_or(99)),
                None if fields[4] == "?" => "*".to_owned(),
                None => fields[4].to_owned(),
            };
            format!("{} {} {dom} {} {dow}", fields[0], fields[1], fields[3])
        }

        proptest! {
            #![proptest_config(cases(2000))]

            /// Chains of next_after around every DST transition of 2026-2030 against the
            /// minute-by-minute reference.
            #[test]
            fn next_after_matches_the_reference_around_transitions(
                model in model(),
                zone in any::<Index>(),
                transition in any::<Index>(),
                shift in shift(),
                anywhere in 0i64..5 * 365 * 86_400,
                steps in 1usize..6,
            ) {
                let Ok(spec) = model.compile() else { return Ok(()) };
                let (tz, start) = start_instant(zone, transition, shift, anywhere);
                let tz = &tz;
                let mut chain = Vec::new();
                let mut t = start;
                for _ in 0..steps {
                    let got = spec.next_after(tz, t);
                    match reference_next(&model, tz, t, REFERENCE_MINUTES) {
                        Some(want) => {
                            prop_assert_eq!(got, Some(want), "{:?} in {} after {}", model, tz, t);
                        }
                        None => prop_assert!(
                            got.is_none_or(|g| g >= t + Duration::minutes(REFERENCE_MINUTES)),
                            "{:?} in {} after {}: engine {:?}, reference none", model, tz, t, got
                        ),
                    }
                    let Some(next) = got else { break };
                    prop_assert!(next > t);
                    prop_assert_eq!(next.timestamp() % 60, 0);
                    let local = wall(tz, next);
                    prop_assert!(model.matches(local), "{:?}: {} is not a fire time", model, local);
                    prop_assert!(spec.matches_local(local));
                    prop_assert!(
                        is_first_occurrence(tz, next),
                        "{:?}: {} repeats an earlier {}", model, next, local
                    );
                    chain.push(next);
                    t = next;
                }
                prop_assert_eq!(spec.upcoming(tz, start, chain.len()), chain);

                let (from, until) = (start - Duration::days(2), start + Duration::days(2));
                prop_assert_eq!(
                    spec.dst_skips(tz, from, until),
                    reference_skips(&model, tz, from, until),
                    "{:?} in {} around {}", model, tz, start
                );
            }
        }

        /// A wall time inside a specific gap or overlap, and the change that causes it.
        struct Change {
            tz: Zone,
            instant: i64,
            before: i32,
            after: i32,
            wall: NaiveDateTime,
        }

        fn pick_change(zone: Index, transition: Index, minute: Index) -> Option<Change> {
            let zones: Vec<_> = transitions()
                .iter()
                .filter(|(_, found)| !found.is_empty())
                .collect();
            let (tz, found) = zones[zone.index(zones.len())];
            let instant = found[transition.index(found.len())];
            let (before, after) = (offset_seconds(tz, instant - 1), offset_seconds(tz, instant));
            let width_minutes = i64::from((after - before).abs() / 60);
            let start = instant + i64::from(before.min(after));
            let wall = DateTime::from_timestamp(start, 0)?.naive_utc()
                + Duration::minutes(minute.index(usize::try_from(width_minutes).ok()?) as i64);
            Some(Change {
                tz: tz.clone(),
                instant,
                before,
                after,
                wall,
            })
        }

        proptest! {
            #![proptest_config(cases(600))]

            /// Cadences aimed right into a gap (never fire there, reported by dst_skips) or an
            /// overlap (fire once, at the first occurrence).
            #[test]
            fn cadences_aimed_at_gaps_and_overlaps(
                zone in any::<Index>(),
                transition in any::<Index>(),
                minute in any::<Index>(),
                kind in 0..3u8,
            ) {
                let Some(change) = pick_change(zone, transition, minute) else { return Ok(()) };
                let Change { tz, instant, before, after, wall: target } = change;
                let tz = &tz;
                let (hour, minute) = (i64::from(target.hour()), i64::from(target.minute()));
                let cadence = match kind {
                    0 => Cadence::Daily { hour, minute },
                    1 => Cadence::Hourly { minute },
                    _ => Cadence::Cron {
                        expression: format!("{minute} {hour} {} * *", target.day()),
                    },
                };
                let spec = cadence.compile().map_err(|e| TestCaseError::fail(e.to_string()))?;
                let start = DateTime::from_timestamp(instant - 86_400, 0).unwrap_or_default();
                let fires = spec.upcoming(tz, start, 60);
                let model = Model::Cadence(cadence.clone());
                let mut t = start;
                for fire in &fires {
                    if *fire > start + Duration::days(2) {
                        break;
                    }
                    let want = match &cadence {
                        Cadence::Cron { .. } => Some(*fire),
                        _ => reference_next(&model, tz, t, REFERENCE_MINUTES),
                    };
                    prop_assert_eq!(Some(*fire), want);
                    t = *fire;
                }
                let walls: Vec<_> = fires.iter().map(|f| wall(tz, *f)).collect();
                let skipped = spec.dst_skips(tz, start, start + Duration::days(2));
                if after > before {
                    prop_assert!(!walls.contains(&target), "{} fired in the gap of {}", target, tz);
                    prop_assert!(
                        skipped.contains(&target), "{} not reported in {:?}", target, skipped
                    );
                } else {
                    let first = (target - Duration::seconds(i64::from(before))).and_utc();
                    let second = (target - Duration::seconds(i64::from(after))).and_utc();
                    prop_assert!(
                        fires.contains(&first), "{} in {} did not fire at {}", target, tz, first
                    );
                    prop_assert!(
                        !fires.contains(&second), "{} in {} fired again at {}", target, tz, second
                    );
                    prop_assert!(skipped.is_empty());
                }
            }
        }
    }
}
