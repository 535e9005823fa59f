//! Helpers shared by the benchmarks in `benches/benches/` (see `BENCHMARKS.md`): a wall
//! clock that can skip idle time, percentiles, resident memory, CPU time and the machine's
//! description.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use scheduled_runs::ports::Clock;
use tokio::sync::Notify;

/// Real time plus an offset that only grows. Time passes at the wall clock's pace, so
/// everything the code under test does is measured in real time; `skip_to` jumps over idle
/// stretches (the minutes between two fires) and wakes every sleeper so it re-reads the
/// time, as a sleeping process would on a real clock that got there.
#[derive(Debug, Default)]
pub struct SkippingClock {
    offset_micros: AtomicI64,
    jumped: Notify,
}

impl SkippingClock {
    /// Moves the clock forward so that `now()` reads `t` (never backwards).
    pub fn skip_to(&self, t: DateTime<Utc>) {
        let ahead = (t - self.now()).num_microseconds().unwrap_or(0);
        if ahead > 0 {
            self.offset_micros.fetch_add(ahead, Ordering::SeqCst);
            self.jumped.notify_waiters();
        }
    }
}

#[async_trait]
impl Clock for SkippingClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::microseconds(self.offset_micros.load(Ordering::SeqCst))
    }

    async fn sleep_until(&self, deadline: DateTime<Utc>) {
        loop {
            let jumped = self.jumped.notified();
            let wait = (deadline - self.now()).to_std().unwrap_or_default();
            if wait.is_zero() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = jumped => {}
            }
        }
    }
}

/// The number in the environment variable `name`, or `default` when it is unset or not a
/// number.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p`-th percentile (0..=100) of `sorted` by nearest rank.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> T {
    assert!(!sorted.is_empty(), "percentile of nothing");
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Formats a duration as milliseconds with three decimals.
pub fn ms(d: StdDuration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// Resident set size of this process, in bytes (Linux `/proc/self/statm`).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// CPU time (user + system) this process has used so far, from `/proc/self/stat`, in
/// clock ticks of 10 ms. Beside wall-clock figures, it shows what the work costs whatever
/// else the machine is running.
pub fn cpu_time() -> StdDuration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name may hold spaces; the fields that follow it do not.
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|t| t.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    StdDuration::from_millis(ticks * 10)
}

/// `nproc`, the CPU model and the memory size, for the report.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{cpus} CPUs ({model}), {:.1} GiB RAM",
        mem_kib as f64 / 1024.0 / 1024.0
    )
}

/// Waits until the process has been idle (at most 10 ms of CPU time in a second) or `limit`
/// has passed: what a benchmark's set-up left running in the background (the store's
/// checkpoint of the writes that set it up, which starts once the writer has been idle
/// for a quarter of a second) is then done, and does not take CPU time from what is
/// measured next. Returns how long it waited.
pub async fn settle(limit: StdDuration) -> StdDuration {
    let started = std::time::Instant::now();
    let mut before = cpu_time();
    while started.elapsed() < limit {
        tokio::time::sleep(StdDuration::from_secs(1)).await;
        let now = cpu_time();
        if now.saturating_sub(before) <= StdDuration::from_millis(10) {
            break;
        }
        before = now;
    }
    started.elapsed()
}
