//! The two cron dialects the service speaks: the 5-field Unix form users write (SPEC §4),
//! parsed into a [`FireSpec`], and the 6-field EventBridge Scheduler form the AWS deployment
//! needs, rendered back from that [`FireSpec`].
//!
//! Going through the normalised sets (rather than rewriting the text) is what makes the
//! translation safe: Unix and EventBridge disagree on weekday numbers, on `?`, and on how the
//! two day fields combine, and only the sets mean the same thing on both sides.

use super::cadence::{CadenceError, CadenceErrorCode, excerpt};
use super::fire_times::{ALL_DAYS, ALL_WEEKDAYS, DayRule, FireSpec, days_in_month};

/// Every cron error is reported against the expression as a whole; the message names the
/// cron field.
const ERROR_FIELD: &str = "cadence.expression";

const MONTH_NAMES: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
/// Index = Unix weekday number (0 = Sunday); EventBridge numbers are one higher.
const WEEKDAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CronField {
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

impl CronField {
    fn label(self) -> &'static str {
        match self {
            CronField::Minute => "minute",
            CronField::Hour => "hour",
            CronField::DayOfMonth => "day-of-month",
            CronField::Month => "month",
            CronField::DayOfWeek => "day-of-week",
        }
    }

    fn min(self) -> u32 {
        match self {
            CronField::DayOfMonth | CronField::Month => 1,
            CronField::Minute | CronField::Hour | CronField::DayOfWeek => 0,
        }
    }

    /// Day-of-week goes to 7 because Unix accepts 7 as a second spelling of Sunday.
    fn max(self) -> u32 {
        match self {
            CronField::Minute => 59,
            CronField::Hour => 23,
            CronField::DayOfMonth => 31,
            CronField::Month => 12,
            CronField::DayOfWeek => 7,
        }
    }

    fn value_of_name(self, token: &str) -> Option<u32> {
        let (names, first) = match self {
            CronField::Month => (&MONTH_NAMES[..], 1),
            CronField::DayOfWeek => (&WEEKDAY_NAMES[..], 0),
            _ => return None,
        };
        let index = names
            .iter()
            .position(|name| name.eq_ignore_ascii_case(token))?;
        u32::try_from(index).ok().map(|index| index + first)
    }

    fn error(self, message: impl std::fmt::Display) -> CadenceError {
        CadenceError::new(
            CadenceErrorCode::InvalidCron,
            ERROR_FIELD,
            format!("{}: {message}", self.label()),
        )
    }
}

/// A field's special forms, which select days in a way a plain set cannot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Special {
    LastDay,
    Nth { weekday: u8, nth: u8 },
}

struct ParsedField {
    /// Bit v = value v; in day-of-week, 7 is already folded onto 0.
    bits: u64,
    special: Option<Special>,
    /// Vixie cron decides between AND and OR of the day fields by this, not by the values.
    starts_with_star: bool,
}

impl FireSpec {
    /// Parses a 5-field Unix cron expression (`minute hour day-of-month month day-of-week`).
    ///
    /// Errors: `INVALID_CRON` for anything malformed or a day/month combination that can
    /// never fire; `CRON_UNSUPPORTED` when both day fields are restricted, which Unix cron
    /// allows but EventBridge Scheduler cannot express.
    pub fn parse_cron(expression: &str) -> Result<FireSpec, CadenceError> {
        let mut texts = [""; 5];
        let mut count = 0usize;
        for token in expression.split_whitespace() {
            if let Some(slot) = texts.get_mut(count) {
                *slot = token;
            }
            count += 1;
        }
        if count != 5 {
            return Err(field_count_error(expression, count));
        }
        let [minute, hour, day_of_month, month, day_of_week] = texts;
        let minutes = parse_field(CronField::Minute, minute)?;
        let hours = parse_field(CronField::Hour, hour)?;
        let days_of_month = parse_field(CronField::DayOfMonth, day_of_month)?;
        let months = parse_field(CronField::Month, month)?;
        let days_of_week = parse_field(CronField::DayOfWeek, day_of_week)?;

        let days = day_rule(&days_of_month, &days_of_week)?;
        // The masks below only drop bits the field ranges already exclude.
        let months = (months.bits & 0x1FFE) as u16;
        if let DayRule::DaysOfMonth(days) = days {
            check_days_exist(days, months)?;
        }
        Ok(FireSpec::new(
            minutes.bits,
            (hours.bits & 0xFF_FFFF) as u32,
            months,
            days,
        ))
    }

    /// The equivalent EventBridge Scheduler expression, e.g. `cron(30 8 ? * MON-FRI *)`.
    ///
    /// Rendered canonically from the sets, so equal specs give equal expressions: a full set
    /// is `*`, a progression running to the end of its range is `start/step`, anything else
    /// is a list of values and ranges. Months are numbers, weekdays names (which sidesteps the
    /// Unix/AWS numbering shift), except in `d#n`, where EventBridge wants its own numbers.
    pub fn eventbridge_expression(&self) -> String {
        let minutes = render_numbers(self.minutes, 0, 59);
        let hours = render_numbers(u64::from(self.hours), 0, 23);
        let months = render_numbers(u64::from(self.months), 1, 12);
        let (day_of_month, day_of_week) = match self.days {
            DayRule::EveryDay => ("*".to_owned(), "?".to_owned()),
            DayRule::DaysOfMonth(days) => (render_numbers(u64::from(days), 1, 31), "?".to_owned()),
            DayRule::LastDayOfMonth => ("L".to_owned(), "?".to_owned()),
            DayRule::Weekdays(weekdays) => ("?".to_owned(), render_weekdays(weekdays)),
            DayRule::NthWeekday { weekday, nth } => {
                ("?".to_owned(), format!("{}#{nth}", weekday + 1))
            }
        };
        format!("cron({minutes} {hours} {day_of_month} {months} {day_of_week} *)")
    }
}

fn field_count_error(expression: &str, count: usize) -> CadenceError {
    let trimmed = expression.trim();
    let hint = if trimmed.starts_with('@') {
        "; macros such as @daily are not supported"
    } else if trimmed.starts_with("cron(") || count == 6 || count == 7 {
        "; seconds and year fields (and the cron(...) wrapper) are not part of the Unix form"
    } else {
        ""
    };
    CadenceError::new(
        CadenceErrorCode::InvalidCron,
        ERROR_FIELD,
        format!(
            "expression: expected 5 fields (minute hour day-of-month month day-of-week), \
             found {count}{hint}"
        ),
    )
}

fn parse_field(field: CronField, text: &str) -> Result<ParsedField, CadenceError> {
    let alone = !text.contains(',');
    let mut parsed = ParsedField {
        bits: 0,
        special: None,
        starts_with_star: text.starts_with('*'),
    };
    for item in text.split(',') {
        if item.is_empty() {
            return Err(field.error(format!("empty item in list {}", excerpt(text))));
        }
        if field == CronField::DayOfMonth && item.eq_ignore_ascii_case("L") {
            if !alone {
                return Err(field.error("L (last day of the month) must stand alone in its field"));
            }
            parsed.special = Some(Special::LastDay);
        } else if field == CronField::DayOfWeek && item.contains('#') {
            if !alone {
                return Err(
                    field.error("d#n (n-th weekday of the month) must stand alone in its field")
                );
            }
            parsed.special = Some(parse_nth(item)?);
        } else {
            parsed.bits |= parse_item(field, item)?;
        }
    }
    if field == CronField::DayOfWeek && parsed.bits & 1 << 7 != 0 {
        parsed.bits = (parsed.bits & !(1 << 7)) | 1;
    }
    Ok(parsed)
}

/// `*`, `v`, `a-b`, each optionally followed by `/step`; `v/step` means `v-max/step`.
fn parse_item(field: CronField, item: &str) -> Result<u64, CadenceError> {
    if item.starts_with('?') {
        return Err(field.error("? is not part of the 5-field Unix form; use *"));
    }
    let (base, step) = match item.split_once('/') {
        Some((base, step)) => (base, Some(parse_step(field, item, step)?)),
        None => (item, None),
    };
    let (start, end) = if base == "*" {
        (field.min(), field.max())
    } else if let Some((first, last)) = base.split_once('-') {
        let (first, last) = (
            parse_value(field, item, first)?,
            parse_value(field, item, last)?,
        );
        if first > last {
            return Err(field.error(format!(
                "range {} runs backwards (ranges do not wrap around)",
                excerpt(base)
            )));
        }
        (first, last)
    } else {
        let value = parse_value(field, item, base)?;
        (value, if step.is_some() { field.max() } else { value })
    };
    let step = step.unwrap_or(1);
    let mut bits = 0u64;
    let mut value = start;
    while value <= end {
        bits |= 1 << value;
        value += step;
    }
    Ok(bits)
}

fn parse_step(field: CronField, item: &str, text: &str) -> Result<u32, CadenceError> {
    if text.is_empty() {
        return Err(field.error(format!("missing step after / in {}", excerpt(item))));
    }
    match parse_number(text) {
        Some(step) if (1..=field.max()).contains(&step) => Ok(step),
        Some(_) => Err(field.error(format!(
            "step {} is out of range 1-{}",
            shown(text),
            field.max()
        ))),
        None => Err(field.error(format!("step {} is not a number", excerpt(text)))),
    }
}

fn parse_value(field: CronField, item: &str, token: &str) -> Result<u32, CadenceError> {
    if token.is_empty() {
        return Err(field.error(format!("missing value in {}", excerpt(item))));
    }
    if token.bytes().all(|b| b.is_ascii_digit()) {
        return match parse_number(token) {
            Some(value) if (field.min()..=field.max()).contains(&value) => Ok(value),
            _ => Err(field.error(format!(
                "{} is out of range {}-{}",
                shown(token),
                field.min(),
                field.max()
            ))),
        };
    }
    if let Some(value) = field.value_of_name(token) {
        return Ok(value);
    }
    let upper = token.to_ascii_uppercase();
    let message = match field {
        CronField::DayOfMonth if upper == "L" => {
            "L (last day of the month) must stand alone in its field".to_owned()
        }
        CronField::DayOfMonth if upper.ends_with('W') => {
            format!("{} (nearest weekday) is not supported", excerpt(token))
        }
        CronField::DayOfWeek if upper.ends_with('L') => format!(
            "{} (last weekday of the month) is not supported; use d#n",
            excerpt(token)
        ),
        CronField::Month => format!("{} is not a month (1-12 or JAN-DEC)", excerpt(token)),
        CronField::DayOfWeek => format!("{} is not a weekday (0-7 or SUN-SAT)", excerpt(token)),
        _ => format!("{} is not a number", excerpt(token)),
    };
    Err(field.error(message))
}

/// `d#n`: the n-th (1..=5) weekday d of the month.
fn parse_nth(item: &str) -> Result<Special, CadenceError> {
    let field = CronField::DayOfWeek;
    let Some((weekday, nth)) = item.split_once('#') else {
        return Err(field.error(format!("{} is not of the form d#n", excerpt(item))));
    };
    let weekday = parse_value(field, item, weekday)? % 7;
    if nth.is_empty() {
        return Err(field.error(format!("missing occurrence after # in {}", excerpt(item))));
    }
    let nth = match parse_number(nth) {
        Some(nth @ 1..=5) => nth,
        Some(_) => {
            return Err(field.error(format!("occurrence {} is out of range 1-5", shown(nth))));
        }
        None => {
            return Err(field.error(format!("occurrence {} is not a number", excerpt(nth))));
        }
    };
    Ok(Special::Nth {
        weekday: u8::try_from(weekday).unwrap_or(0),
        nth: u8::try_from(nth).unwrap_or(1),
    })
}

/// ASCII digits only (no sign, no spaces); `None` also when it does not fit, which callers
/// report as out of range.
fn parse_number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().or(Some(u32::MAX))
}

/// A number as the user wrote it, shortened if absurdly long.
fn shown(digits: &str) -> String {
    match digits.char_indices().nth(12) {
        Some((cut, _)) => format!("{}…", &digits[..cut]),
        None => digits.to_owned(),
    }
}

/// Vixie cron: when either day field starts with `*` the two are ANDed, otherwise ORed.
/// EventBridge can restrict only one of them, so only the combinations where one side is a
/// no-op survive.
fn day_rule(
    day_of_month: &ParsedField,
    day_of_week: &ParsedField,
) -> Result<DayRule, CadenceError> {
    let dom_full =
        day_of_month.special.is_none() && day_of_month.bits as u32 & ALL_DAYS == ALL_DAYS;
    let dow_full =
        day_of_week.special.is_none() && day_of_week.bits as u8 & ALL_WEEKDAYS == ALL_WEEKDAYS;
    let dom_rule = match day_of_month.special {
        Some(Special::LastDay) => DayRule::LastDayOfMonth,
        _ => DayRule::DaysOfMonth((day_of_month.bits & u64::from(ALL_DAYS)) as u32),
    };
    let dow_rule = match day_of_week.special {
        Some(Special::Nth { weekday, nth }) => DayRule::NthWeekday { weekday, nth },
        _ => DayRule::Weekdays((day_of_week.bits & u64::from(ALL_WEEKDAYS)) as u8),
    };
    let rule = if day_of_month.starts_with_star || day_of_week.starts_with_star {
        match (dom_full, dow_full) {
            (true, true) => Some(DayRule::EveryDay),
            (true, false) => Some(dow_rule),
            (false, true) => Some(dom_rule),
            (false, false) => None,
        }
    } else if dom_full || dow_full {
        Some(DayRule::EveryDay)
    } else {
        None
    };
    rule.ok_or_else(|| {
        CadenceError::new(
            CadenceErrorCode::CronUnsupported,
            ERROR_FIELD,
            "day-of-month and day-of-week: both are restricted; EventBridge Scheduler can restrict \
             only one of them, so write * in the other",
        )
    })
}

/// Rejects day-of-month sets that no selected month contains (e.g. `30` in February), which
/// would otherwise be a schedule that silently never fires.
fn check_days_exist(days: u32, months: u16) -> Result<(), CadenceError> {
    // 2000 is a leap year: 29 February counts as existing.
    let possible = (1..=12u32)
        .filter(|month| months & 1 << month != 0)
        .any(|month| days & (u32::MAX >> (31 - days_in_month(2000, month))) != 0);
    if possible {
        Ok(())
    } else {
        Err(CronField::DayOfMonth.error(format!(
            "day {} never occurs in month {}",
            render_numbers(u64::from(days), 1, 31),
            render_numbers(u64::from(months), 1, 12)
        )))
    }
}

/// Canonical EventBridge rendering of a numeric set within `lo..=hi`.
fn render_numbers(bits: u64, lo: u32, hi: u32) -> String {
    let full = (u64::MAX >> (63 - hi)) & (u64::MAX << lo);
    let bits = bits & full;
    if bits == full {
        return "*".to_owned();
    }
    let values: Vec<u32> = (lo..=hi).filter(|v| bits & 1 << v != 0).collect();
    if let [first, second, third, ..] = values[..] {
        let step = second - first;
        let progression = step >= 2
            && third - second == step
            && values.windows(2).all(|pair| pair[1] - pair[0] == step)
            && values.last().is_some_and(|last| last + step > hi);
        if progression {
            return format!("{first}/{step}");
        }
    }
    render_runs(&values, |value| value.to_string())
}

fn render_weekdays(weekdays: u8) -> String {
    let weekdays = weekdays & ALL_WEEKDAYS;
    if weekdays == ALL_WEEKDAYS {
        return "*".to_owned();
    }
    let values: Vec<u32> = (0..7).filter(|day| weekdays & 1 << day != 0).collect();
    render_runs(&values, |day| {
        WEEKDAY_NAMES
            .get(day as usize)
            .copied()
            .unwrap_or("SUN")
            .to_owned()
    })
}

/// Ascending values as a list where runs of three or more become `a-b`.
fn render_runs(values: &[u32], name: impl Fn(u32) -> String) -> String {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for &value in values {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == value => *end = value,
            _ => runs.push((value, value)),
        }
    }
    runs.iter()
        .map(|&(start, end)| match end - start {
            0 => name(start),
            1 => format!("{},{}", name(start), name(end)),
            _ => format!("{}-{}", name(start), name(end)),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(expression: &str) -> Result<String, CadenceError> {
        FireSpec::parse_cron(expression).map(|spec| spec.eventbridge_expression())
    }

    #[test]
    fn grammar_features_translate_canonically() {
        let cases = [
            ("* * * * *", "cron(* * * * ? *)"),
            ("30 8 * * MON-FRI", "cron(30 8 ? * MON-FRI *)"),
            ("30 8 * * 1-5", "cron(30 8 ? * MON-FRI *)"),
            ("  0\t0   * * *  ", "cron(0 0 * * ? *)"),
            ("05 08 * * *", "cron(5 8 * * ? *)"),
            // steps
            ("*/15 * * * *", "cron(0/15 * * * ? *)"),
            ("10/20 * * * *", "cron(10/20 * * * ? *)"),
            ("5-20/5 * * * *", "cron(5,10,15,20 * * * ? *)"),
            ("0-59/30 * * * *", "cron(0,30 * * * ? *)"),
            ("*/1 * * * *", "cron(* * * * ? *)"),
            ("*/59 * * * *", "cron(0,59 * * * ? *)"),
            ("0 */6 * * *", "cron(0 0/6 * * ? *)"),
            ("0 0 */2 * *", "cron(0 0 1/2 * ? *)"),
            ("0 0 1 */3 *", "cron(0 0 1 1/3 ? *)"),
            // ranges and lists
            ("0 9-17 * * *", "cron(0 9-17 * * ? *)"),
            ("0 8,9 * * *", "cron(0 8,9 * * ? *)"),
            ("0 1-5,7,20-23 * * *", "cron(0 1-5,7,20-23 * * ? *)"),
            ("0 3,1,2 * * *", "cron(0 1-3 * * ? *)"),
            ("0 0 1,15 * *", "cron(0 0 1,15 * ? *)"),
            ("0 0 29 2 *", "cron(0 0 29 2 ? *)"),
            ("0 0 31 * *", "cron(0 0 31 * ? *)"),
            // names, any case
            ("0 0 * jan-MAR Mon", "cron(0 0 ? 1-3 MON *)"),
            ("0 0 * JAN,jul *", "cron(0 0 * 1,7 ? *)"),
            ("0 0 * * sun", "cron(0 0 ? * SUN *)"),
            ("0 0 * * mOn,wEd,FRI", "cron(0 0 ? * MON,WED,FRI *)"),
            // 0 and 7 are Sunday
            ("0 0 * * 0", "cron(0 0 ? * SUN *)"),
            ("0 0 * * 7", "cron(0 0 ? * SUN *)"),
            ("0 0 * * 5-7", "cron(0 0 ? * SUN,FRI,SAT *)"),
            ("0 0 * * 0-7", "cron(0 0 * * ? *)"),
            ("0 0 * * 1-7", "cron(0 0 * * ? *)"),
            ("0 12 * * 1/2", "cron(0 12 ? * SUN,MON,WED,FRI *)"),
            ("0 12 * * */2", "cron(0 12 ? * SUN,TUE,THU,SAT *)"),
            // L and #
            ("0 0 L * *", "cron(0 0 L * ? *)"),
            ("0 0 l 2 *", "cron(0 0 L 2 ? *)"),
            ("0 0 * * 2#2", "cron(0 0 ? * 3#2 *)"),
            ("0 0 * * SUN#1", "cron(0 0 ? * 1#1 *)"),
            ("0 0 * * 7#5", "cron(0 0 ? * 1#5 *)"),
            ("0 0 * * sat#3", "cron(0 0 ? * 7#3 *)"),
            ("0 0 * 2 MON#5", "cron(0 0 ? 2 2#5 *)"),
        ];
        for (expression, expected) in cases {
            assert_eq!(
                translate(expression).as_deref(),
                Ok(expected),
                "{expression}"
            );
        }
    }

    #[test]
    fn day_fields_follow_the_unix_and_or_rule() {
        let cases = [
            // AND (a field starts with *): the unrestricted side drops out.
            ("0 0 * * MON", Ok("cron(0 0 ? * MON *)")),
            ("0 0 1 * *", Ok("cron(0 0 1 * ? *)")),
            ("0 0 */1 * MON", Ok("cron(0 0 ? * MON *)")),
            ("0 0 1 * */1", Ok("cron(0 0 1 * ? *)")),
            ("0 0 */2 * *", Ok("cron(0 0 1/2 * ? *)")),
            ("0 0 * * 2#1", Ok("cron(0 0 ? * 3#1 *)")),
            ("0 0 L * *", Ok("cron(0 0 L * ? *)")),
            ("0 0 */2 * MON", Err(CadenceErrorCode::CronUnsupported)),
            ("0 0 1 * */2", Err(CadenceErrorCode::CronUnsupported)),
            // OR (neither starts with *): a full side makes every day fire.
            ("0 0 1-31 * MON", Ok("cron(0 0 * * ? *)")),
            ("0 0 1 * 0-6", Ok("cron(0 0 * * ? *)")),
            ("0 0 1-31 * 0-7", Ok("cron(0 0 * * ? *)")),
            ("0 0 1 * MON", Err(CadenceErrorCode::CronUnsupported)),
            ("0 0 1,15 * MON-FRI", Err(CadenceErrorCode::CronUnsupported)),
            ("0 0 L * MON", Err(CadenceErrorCode::CronUnsupported)),
            ("0 0 1 * MON#2", Err(CadenceErrorCode::CronUnsupported)),
            ("0 0 L * 1#1", Err(CadenceErrorCode::CronUnsupported)),
            ("0 0 L * 0-6", Ok("cron(0 0 * * ? *)")),
        ];
        for (expression, expected) in cases {
            let actual = translate(expression).map_err(|e| e.code);
            assert_eq!(actual.as_deref().map_err(|c| *c), expected, "{expression}");
        }
    }

    #[test]
    fn malformed_expressions_name_the_cron_field() {
        let cases = [
            ("", "expression: expected 5 fields"),
            ("* * * *", "expression: expected 5 fields"),
            ("0 0 * * * *", "expression: expected 5 fields"),
            ("cron(0 0 * * ? *)", "expression: expected 5 fields"),
            ("@daily", "expression: expected 5 fields"),
            ("60 * * * *", "minute: 60 is out of range 0-59"),
            (
                "99999999999999 * * * *",
                "minute: 999999999999… is out of range 0-59",
            ),
            ("x * * * *", "minute: \"x\" is not a number"),
            ("1.5 * * * *", "minute: \"1.5\" is not a number"),
            ("L * * * *", "minute: \"L\" is not a number"),
            ("-5 * * * *", "minute: missing value"),
            ("5- * * * *", "minute: missing value"),
            ("1,,2 * * * *", "minute: empty item"),
            ("1, * * * *", "minute: empty item"),
            ("5-1 * * * *", "minute: range \"5-1\" runs backwards"),
            ("*/0 * * * *", "minute: step 0 is out of range 1-59"),
            ("*/60 * * * *", "minute: step 60 is out of range 1-59"),
            ("*/ * * * *", "minute: missing step"),
            ("*/x * * * *", "minute: step \"x\" is not a number"),
            ("1/2/3 * * * *", "minute: step \"2/3\" is not a number"),
            ("* 24 * * *", "hour: 24 is out of range 0-23"),
            ("* 1-24 * * *", "hour: 24 is out of range 0-23"),
            ("* * 0 * *", "day-of-month: 0 is out of range 1-31"),
            ("* * 32 * *", "day-of-month: 32 is out of range 1-31"),
            (
                "0 0 ? * MON",
                "day-of-month: ? is not part of the 5-field Unix form",
            ),
            (
                "0 0 L,1 * *",
                "day-of-month: L (last day of the month) must stand alone",
            ),
            (
                "0 0 L-2 * *",
                "day-of-month: L (last day of the month) must stand alone",
            ),
            (
                "0 0 L/2 * *",
                "day-of-month: L (last day of the month) must stand alone",
            ),
            (
                "0 0 15W * *",
                "day-of-month: \"15W\" (nearest weekday) is not supported",
            ),
            (
                "0 0 LW * *",
                "day-of-month: \"LW\" (nearest weekday) is not supported",
            ),
            ("0 0 30 2 *", "day-of-month: day 30 never occurs in month 2"),
            (
                "0 0 30,31 2 *",
                "day-of-month: day 30,31 never occurs in month 2",
            ),
            (
                "0 0 31 4,6,9,11 *",
                "day-of-month: day 31 never occurs in month 4,6,9,11",
            ),
            ("* * * 0 *", "month: 0 is out of range 1-12"),
            ("* * * 13 *", "month: 13 is out of range 1-12"),
            (
                "* * * FOO *",
                "month: \"FOO\" is not a month (1-12 or JAN-DEC)",
            ),
            ("* * * MON *", "month: \"MON\" is not a month"),
            ("* * * JANUARY *", "month: \"JANUARY\" is not a month"),
            ("* * * * 9", "day-of-week: 9 is out of range 0-7"),
            ("* * * * 8", "day-of-week: 8 is out of range 0-7"),
            (
                "* * * * JAN",
                "day-of-week: \"JAN\" is not a weekday (0-7 or SUN-SAT)",
            ),
            (
                "* * * * FRI-MON",
                "day-of-week: range \"FRI-MON\" runs backwards",
            ),
            (
                "* * * * 5L",
                "day-of-week: \"5L\" (last weekday of the month) is not supported",
            ),
            ("* * * * 1-5/0", "day-of-week: step 0 is out of range 1-7"),
            (
                "0 0 * * MON#2,FRI",
                "day-of-week: d#n (n-th weekday of the month) must stand alone",
            ),
            (
                "0 0 * * MON#6",
                "day-of-week: occurrence 6 is out of range 1-5",
            ),
            (
                "0 0 * * MON#0",
                "day-of-week: occurrence 0 is out of range 1-5",
            ),
            ("0 0 * * MON#", "day-of-week: missing occurrence"),
            ("0 0 * * #2", "day-of-week: missing value"),
            ("0 0 * * 8#1", "day-of-week: 8 is out of range 0-7"),
            ("0 0 * * 1-2#1", "day-of-week: \"1-2\" is not a weekday"),
            (
                "0 0 * * MON#x",
                "day-of-week: occurrence \"x\" is not a number",
            ),
        ];
        for (expression, prefix) in cases {
            match FireSpec::parse_cron(expression) {
                Ok(spec) => panic!("{expression:?} parsed as {spec:?}"),
                Err(error) => {
                    assert_eq!(error.code, CadenceErrorCode::InvalidCron, "{expression:?}");
                    assert_eq!(error.field, "cadence.expression", "{expression:?}");
                    assert!(
                        error.message.starts_with(prefix),
                        "{expression:?}: {:?} does not start with {prefix:?}",
                        error.message
                    );
                }
            }
        }
    }

    #[test]
    fn unsupported_day_combinations_name_both_fields() {
        let error = FireSpec::parse_cron("0 0 1 * MON").err();
        assert_eq!(
            error.map(|e| (
                e.code,
                e.field,
                e.message.starts_with("day-of-month and day-of-week:")
            )),
            Some((
                CadenceErrorCode::CronUnsupported,
                "cadence.expression".to_owned(),
                true
            ))
        );
    }

    #[test]
    fn spellings_of_the_same_schedule_compile_equal() {
        let groups: [&[&str]; 5] = [
            &[
                "0 0 * jan-MAR Mon-fRi",
                "0 0 * 1-3 1-5",
                "0 0 */1 JAN,FEB,MAR MON,TUE,WED-FRI",
            ],
            &["0 0 * * 0", "0 0 * * 7", "0 0 * * SUN", "0 0 * * sun,0,7"],
            &[
                "* * * * *",
                "0-59 */1 1-31 * 0-7",
                "*/1 0-23 * 1-12 *",
                "* * 1-31 * MON",
            ],
            &["0 0 1/1 * *", "0 0 * * *", "0 0 1-31 * 0-6"],
            &["0 0 * * 0#1", "0 0 * * 7#1", "0 0 * * sun#1"],
        ];
        for group in groups {
            let specs: Vec<_> = group.iter().map(|e| FireSpec::parse_cron(e)).collect();
            for (expression, spec) in group.iter().zip(&specs) {
                assert!(spec.is_ok(), "{expression}: {spec:?}");
            }
            for pair in specs.windows(2) {
                assert_eq!(pair[0], pair[1], "{group:?}");
            }
        }
        assert_eq!(
            FireSpec::parse_cron("* * * * *")
                .ok()
                .map(|s| (s.minute_count(), s.hour_count())),
            Some((60, 24))
        );
        assert_eq!(
            FireSpec::parse_cron("0,30 9-17 * * *")
                .ok()
                .map(|s| (s.minute_count(), s.hour_count())),
            Some((2, 9))
        );
    }

    #[test]
    fn renders_sets_canonically() {
        assert_eq!(render_numbers(0b1010_1000, 0, 59), "3,5,7");
        assert_eq!(
            render_numbers((1 << 3) | (1 << 5) | (1 << 7) | (1 << 9), 0, 9),
            "3/2"
        );
        assert_eq!(render_numbers(0b0111_1110, 0, 59), "1-6");
        assert_eq!(render_numbers(0b110, 1, 12), "1,2");
        assert_eq!(render_numbers(u64::MAX, 1, 12), "*");
        assert_eq!(render_weekdays(0b0111_1110), "MON-SAT");
        assert_eq!(render_weekdays(0b0100_0001), "SUN,SAT");
        assert_eq!(render_weekdays(0b0110_0011), "SUN,MON,FRI,SAT");
    }
}
