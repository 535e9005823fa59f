//! Cron expressions and cadence JSON from untrusted input: parsing never panics, and
//! whatever parses yields an EventBridge expression and fire times that are strictly
//! increasing, on the schedule's rules (`matches_local`), in DST-changing timezones.
#![no_main]

use std::sync::LazyLock;

use chrono::{DateTime, Duration, TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use scheduled_runs::domain::cadence::Cadence;
use scheduled_runs::domain::fire_times::FireSpec;
use scheduled_runs::domain::zone::Zone;

static ZONES: LazyLock<Vec<Zone>> = LazyLock::new(|| {
    ["UTC", "America/New_York", "Australia/Lord_Howe", "Pacific/Chatham"]
        .into_iter()
        .map(|name| Zone::named(name).expect("a zone of the database"))
        .collect()
});

fn exercise(spec: &FireSpec, seed: u8) {
    let _ = spec.eventbridge_expression();
    let tz = &ZONES[usize::from(seed) % ZONES.len()];
    let start: DateTime<Utc> = Utc
        .with_ymd_and_hms(2026, 3, 1, 0, 0, 0)
        .single()
        .expect("valid");
    let mut after = start + Duration::days(i64::from(seed) * 3);
    for _ in 0..8 {
        match spec.next_after(tz, after) {
            Some(next) => {
                assert!(next > after, "fire times go forward");
                assert!(
                    spec.matches_local(
                        next.naive_utc() + Duration::seconds(tz.offset_at(next.timestamp()).into())
                    ),
                    "a fire time matches the rule"
                );
                after = next;
            }
            None => break,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if let Ok(spec) = FireSpec::parse_cron(text) {
        exercise(&spec, seed);
    }
    // The same bytes as a cadence object, as the API receives it.
    if let Ok(cadence) = serde_json::from_str::<Cadence>(text)
        && let Ok(spec) = cadence.compile()
    {
        exercise(&spec, seed);
    }
});
