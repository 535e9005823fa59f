//! Requirement 4: `FireSpec::next_after` against `croner`'s `find_next_occurrence` on the
//! same cadences, zone and start instants, in the same run.
//!
//! `cargo bench -p scheduled-runs-benches --bench fire_times`
//!
//! Each iteration asks for the next fire after one of 256 start instants spread over 2026
//! (deterministic, arbitrary seconds), in `America/New_York` so that both DST transitions
//! lie in the range. Parsing is outside the measured loop for both.

use std::hint::black_box;
use std::str::FromStr;

use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;
use criterion::{Criterion, criterion_group, criterion_main};
use scheduled_runs::domain::cadence::Cadence;
use scheduled_runs::domain::fire_times::FireSpec;
use scheduled_runs::domain::zone::Zone;

/// (name, cadence JSON, the same cadence as a cron expression for croner)
const CASES: &[(&str, &str, &str)] = &[
    ("hourly", r#"{"kind":"HOURLY","minute":15}"#, "15 * * * *"),
    (
        "daily",
        r#"{"kind":"DAILY","hour":9,"minute":0}"#,
        "0 9 * * *",
    ),
    (
        "weekly",
        r#"{"kind":"WEEKLY","weekdays":["MON","THU"],"hour":9,"minute":0}"#,
        "0 9 * * MON,THU",
    ),
    (
        "monthly",
        r#"{"kind":"MONTHLY","dayOfMonth":1,"hour":9,"minute":0}"#,
        "0 9 1 * *",
    ),
    (
        "monthly_last",
        r#"{"kind":"MONTHLY","dayOfMonth":"LAST","hour":18,"minute":30}"#,
        "30 18 L * *",
    ),
    (
        "cron_lists",
        r#"{"kind":"CRON","expression":"30 8,12,17 * * MON-FRI"}"#,
        "30 8,12,17 * * MON-FRI",
    ),
    (
        "cron_quarterly",
        r#"{"kind":"CRON","expression":"0 6 1,15 1,4,7,10 *"}"#,
        "0 6 1,15 1,4,7,10 *",
    ),
    // Not a typical cadence: the rarest day that is still accepted, for scale.
    (
        "cron_feb29",
        r#"{"kind":"CRON","expression":"0 0 29 2 *"}"#,
        "0 0 29 2 *",
    ),
];

const STARTS: usize = 256;

fn starts() -> Vec<DateTime<Utc>> {
    let base = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..STARTS)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            base + Duration::seconds(((state >> 33) % (365 * 86_400)) as i64)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let tz: Tz = "America/New_York".parse().unwrap();
    let zone = Zone::named("America/New_York").unwrap();
    let starts = starts();
    for (name, json, expression) in CASES {
        let cadence: Cadence = serde_json::from_str(json).unwrap();
        let spec: FireSpec = cadence.compile().unwrap();
        let cron = croner::Cron::from_str(expression).unwrap();
        // Same answers where croner's semantics agree with ours (no start near a DST gap
        // fires into it for these cadences), so both do the same work.
        for start in &starts {
            let ours = spec.next_after(&zone, *start).unwrap();
            let theirs = cron
                .find_next_occurrence(&start.with_timezone(&tz), false)
                .unwrap()
                .with_timezone(&Utc);
            assert_eq!(ours, theirs, "{name} after {start}");
        }

        let mut group = c.benchmark_group(format!("next_after/{name}"));
        let mut i = 0;
        group.bench_function("scheduled-runs", |b| {
            b.iter(|| {
                i = (i + 1) % STARTS;
                spec.next_after(black_box(&zone), black_box(starts[i]))
            })
        });
        let zoned: Vec<_> = starts.iter().map(|s| s.with_timezone(&tz)).collect();
        group.bench_function("croner", |b| {
            b.iter(|| {
                i = (i + 1) % STARTS;
                cron.find_next_occurrence(black_box(&zoned[i]), false)
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
