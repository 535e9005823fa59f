//! The SQL cache's entries most recently used by this process, kept decoded in memory in
//! front of the `sql_cache` table. A hit is worth having only if it is much cheaper than
//! the query it replaces, and reading an entry back from the table means decoding up to
//! 1,000 rows of JSON, which costs as much as the cheap queries it stands for. Here a hit
//! is a hash lookup and a reference count: the rows are shared, never copied.
//!
//! It is coherent because every cache write in the embedded deployment goes through the
//! one `SqliteStore` of the serving process, which updates the table first and this memo
//! second (see docs/architecture.md, "Decisions (embedded store)"). Expiry is checked on
//! every read, as the table's reads do; memory is bounded by a byte budget, least recently
//! used entries leaving first.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::domain::model::CachedResult;

/// What the memo may hold, in (estimated) bytes of decoded results.
pub const DEFAULT_BUDGET: usize = 64 * 1024 * 1024;

/// An entry larger than this share of the budget is not kept: one huge result must not
/// push out everything else.
const LARGEST_SHARE: usize = 8;

/// Eviction frees this share of the budget below it at once, so that a memo at its
/// budget does not sort its entries on every insert.
const EVICTION_SLACK: usize = 10;

pub struct CacheMemo {
    budget: usize,
    inner: Mutex<Memo>,
}

#[derive(Default)]
struct Memo {
    /// By workspace, then key: the lookup borrows both instead of building a key.
    entries: HashMap<String, HashMap<String, Slot>>,
    bytes: usize,
    /// A logical clock: the last read or write of each entry, for eviction.
    tick: u64,
    /// Counts writes, so that an entry read from the table is kept only if no write came
    /// in between (it might be older than what that write left in the table).
    generation: u64,
}

struct Slot {
    entry: CachedResult,
    bytes: usize,
    used: u64,
}

impl CacheMemo {
    pub fn new(budget: usize) -> CacheMemo {
        CacheMemo {
            budget,
            inner: Mutex::new(Memo::default()),
        }
    }

    /// The entry, if held and still fresh at `as_of`. `None` means "ask the table", never
    /// "there is none": the memo holds only what this process wrote or read.
    pub fn get(&self, workspace_id: &str, key: &str, as_of: DateTime<Utc>) -> Option<CachedResult> {
        let mut memo = self.lock();
        memo.tick += 1;
        let tick = memo.tick;
        let workspace = memo.entries.get_mut(workspace_id)?;
        let slot = workspace.get_mut(key)?;
        if slot.entry.expires_at <= as_of {
            return None;
        }
        slot.used = tick;
        Some(slot.entry.clone())
    }

    /// What [`CacheMemo::fill`] needs: taken before reading the table.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Keeps `entry`, just written to the table (replacing any entry of its key), unless
    /// it is too large to be worth it.
    pub fn put(&self, entry: &CachedResult) {
        let bytes = entry_bytes(entry);
        let mut memo = self.lock();
        memo.generation += 1;
        memo.remove(&entry.workspace_id, &entry.key);
        memo.insert(entry, bytes, self.budget);
    }

    /// Keeps `entry`, just read from the table, if nothing was written since `generation`
    /// was taken.
    pub fn fill(&self, entry: &CachedResult, generation: u64) {
        let bytes = entry_bytes(entry);
        let mut memo = self.lock();
        if memo.generation == generation {
            memo.remove(&entry.workspace_id, &entry.key);
            memo.insert(entry, bytes, self.budget);
        }
    }

    /// Drops the entry of a key, e.g. when writing its replacement to the table failed.
    pub fn forget(&self, workspace_id: &str, key: &str) {
        let mut memo = self.lock();
        memo.generation += 1;
        memo.remove(workspace_id, key);
    }

    /// Drops everything (the table still has it all).
    pub fn clear(&self) {
        let mut memo = self.lock();
        let generation = memo.generation + 1;
        *memo = Memo {
            generation,
            ..Memo::default()
        };
    }

    /// Estimated bytes held.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memo> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Memo {
    fn insert(&mut self, entry: &CachedResult, bytes: usize, budget: usize) {
        if bytes > budget / LARGEST_SHARE {
            return;
        }
        self.tick += 1;
        let slot = Slot {
            entry: entry.clone(),
            bytes,
            used: self.tick,
        };
        self.bytes += bytes;
        self.entries
            .entry(entry.workspace_id.clone())
            .or_default()
            .insert(entry.key.clone(), slot);
        if self.bytes > budget {
            self.evict_down_to(budget - budget / EVICTION_SLACK);
        }
    }

    fn remove(&mut self, workspace_id: &str, key: &str) {
        let Some(workspace) = self.entries.get_mut(workspace_id) else {
            return;
        };
        if let Some(slot) = workspace.remove(key) {
            self.bytes -= slot.bytes;
        }
        if workspace.is_empty() {
            self.entries.remove(workspace_id);
        }
    }

    /// Removes least recently used entries until at most `target` bytes are held.
    fn evict_down_to(&mut self, target: usize) {
        let mut by_use: Vec<(u64, String, String)> = self
            .entries
            .iter()
            .flat_map(|(ws, keys)| {
                keys.iter()
                    .map(move |(key, slot)| (slot.used, ws.clone(), key.clone()))
            })
            .collect();
        by_use.sort_unstable_by_key(|(used, _, _)| *used);
        for (_, ws, key) in by_use {
            if self.bytes <= target {
                break;
            }
            self.remove(&ws, &key);
        }
    }
}

/// Roughly what an entry takes in memory: the values, their strings, the row vectors.
fn entry_bytes(entry: &CachedResult) -> usize {
    let row = std::mem::size_of::<Vec<Value>>();
    std::mem::size_of::<CachedResult>()
        + entry.workspace_id.len()
        + entry.key.len()
        + entry.columns.iter().map(|c| c.len() + 24).sum::<usize>()
        + entry
            .rows
            .iter()
            .map(|r| row + r.iter().map(value_bytes).sum::<usize>())
            .sum::<usize>()
}

fn value_bytes(value: &Value) -> usize {
    std::mem::size_of::<Value>()
        + match value {
            Value::String(s) => s.len(),
            Value::Array(items) => items.iter().map(value_bytes).sum(),
            Value::Object(fields) => fields.iter().map(|(k, v)| k.len() + value_bytes(v)).sum(),
            Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 3, 9, minute, 0)
            .single()
            .expect("valid instant")
    }

    fn entry(ws: &str, key: &str, text: &str, expires: u32) -> CachedResult {
        CachedResult {
            workspace_id: ws.to_owned(),
            key: key.to_owned(),
            columns: vec!["t".to_owned()],
            rows: vec![vec![json!(text)]].into(),
            row_count: 1,
            created_at: at(0),
            expires_at: at(expires),
        }
    }

    #[test]
    fn a_hit_is_the_entry_written_in_its_workspace_while_fresh() {
        let memo = CacheMemo::new(DEFAULT_BUDGET);
        memo.put(&entry("w1", "k", "one", 10));
        let hit = memo.get("w1", "k", at(5)).expect("a hit");
        assert_eq!(hit, entry("w1", "k", "one", 10));
        assert!(memo.get("w2", "k", at(5)).is_none(), "another workspace");
        assert!(memo.get("w1", "other", at(5)).is_none(), "another key");
        assert!(memo.get("w1", "k", at(10)).is_none(), "expired at 9:10");
    }

    #[test]
    fn a_write_replaces_the_entry_of_its_key_and_forget_drops_it() {
        let memo = CacheMemo::new(DEFAULT_BUDGET);
        memo.put(&entry("w", "k", "old", 10));
        let one = memo.bytes();
        memo.put(&entry("w", "k", "new", 20));
        assert_eq!(memo.bytes(), one, "replaced, not added");
        let hit = memo.get("w", "k", at(15)).expect("a hit");
        assert_eq!(hit.rows[0][0], json!("new"));
        memo.forget("w", "k");
        assert!(memo.get("w", "k", at(1)).is_none());
        assert_eq!(memo.bytes(), 0);
    }

    #[test]
    fn an_entry_read_from_the_table_is_kept_only_if_nothing_was_written_meanwhile() {
        let memo = CacheMemo::new(DEFAULT_BUDGET);
        let before = memo.generation();
        memo.fill(&entry("w", "k", "read", 59), before);
        assert_eq!(
            memo.get("w", "k", at(1)).expect("kept").rows[0][0],
            json!("read")
        );

        // A reader takes the generation, a writer replaces the entry, then the reader,
        // holding what the table had before, tries to keep it.
        let reading = memo.generation();
        memo.put(&entry("w", "k", "written", 59));
        memo.fill(&entry("w", "k", "read", 59), reading);
        assert_eq!(
            memo.get("w", "k", at(1)).expect("kept").rows[0][0],
            json!("written")
        );

        // Likewise after a forgotten (failed) write: the table may hold either.
        let reading = memo.generation();
        memo.forget("w", "k");
        memo.fill(&entry("w", "k", "read", 59), reading);
        assert!(memo.get("w", "k", at(1)).is_none());
    }

    #[test]
    fn over_its_budget_the_least_recently_used_entries_leave_first() {
        let size = entry_bytes(&entry("w", "k0", "x", 59));
        let memo = CacheMemo::new(size * 10);
        for i in 0..10 {
            memo.put(&entry("w", &format!("k{i}"), "x", 59));
        }
        // k0 is read, so k1 is now the least recently used.
        assert!(memo.get("w", "k0", at(1)).is_some());
        memo.put(&entry("w", "k10", "x", 59));
        assert!(memo.bytes() <= size * 9, "{} > {}", memo.bytes(), size * 9);
        assert!(memo.get("w", "k1", at(1)).is_none(), "evicted");
        for kept in ["k0", "k9", "k10"] {
            assert!(memo.get("w", kept, at(1)).is_some(), "{kept} kept");
        }
    }

    #[test]
    fn an_entry_larger_than_an_eighth_of_the_budget_is_not_kept() {
        let big = entry("w", "big", &"x".repeat(1000), 59);
        let memo = CacheMemo::new(entry_bytes(&big) * 7);
        memo.put(&entry("w", "big", "small", 59));
        memo.put(&big);
        assert!(
            memo.get("w", "big", at(1)).is_none(),
            "the old value is gone too"
        );
        assert_eq!(memo.bytes(), 0);
    }
}
