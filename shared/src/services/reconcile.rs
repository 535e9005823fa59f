//! `reconcile` (SPEC §5 operator CLI, §8): repairs drift between the stored schedules and
//! the trigger backend. The schedule services keep the two in step, in the order that never
//! leaves a trigger firing without a stored schedule, but a crash or a failed trigger call
//! between the two writes can still leave:
//!
//! * a stored schedule without a trigger (it would silently never fire) → put it;
//! * a trigger whose state, expression or timezone disagrees with the store (active =
//!   enabled and project not archived) → put it again;
//! * a trigger without a stored schedule (it would fire for nothing) → delete it.
//!
//! Triggers are listed *before* the store: a schedule is always stored before its trigger is
//! put and deleted only after its trigger is, so a trigger seen first has its stored schedule
//! in the later listing unless the schedule is really gone. Before each repair the schedule
//! is read again; one created, changed or deleted while reconcile ran is left to the request
//! that changed it (reported as skipped), so reconcile never undoes a concurrent change.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::domain::cadence::Cadence;
use crate::domain::model::{OverlapPolicy, ProjectRole, Schedule};
use crate::ports::{PageRequest, PortError, ScheduleStore, TriggerListing, TriggerState};

use super::ServiceError;

/// Page sizes of the two listings.
const SCHEDULE_PAGE: u32 = 500;
const TRIGGER_PAGE: u32 = 100;

/// One schedule's trigger.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerRef {
    pub workspace_id: String,
    pub schedule_id: String,
}

/// A trigger that disagreed with its stored schedule, and in what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftedTrigger {
    #[serde(flatten)]
    pub trigger: TriggerRef,
    /// Which of `active`, `expression`, `timezone` differed.
    pub fields: Vec<&'static str>,
}

/// What kind of drift a failure was about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DriftKind {
    Missing,
    Drifted,
    Orphaned,
    /// The stored schedule no longer compiles; nothing can be put for it.
    Invalid,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepairFailure {
    #[serde(flatten)]
    pub trigger: TriggerRef,
    pub kind: DriftKind,
    pub error: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileCounts {
    pub missing: usize,
    pub drifted: usize,
    pub orphaned: usize,
    pub skipped: usize,
    pub failed: usize,
}

/// What reconcile found and did. `missing`, `drifted` and `orphaned` list the drift found
/// (repaired unless `dry_run`); the repairs that failed are listed again in `failed`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReport {
    pub dry_run: bool,
    pub schedules_checked: usize,
    pub triggers_checked: usize,
    pub counts: ReconcileCounts,
    /// Stored schedules without a trigger: put.
    pub missing: Vec<TriggerRef>,
    /// Triggers disagreeing with the store: put again.
    pub drifted: Vec<DriftedTrigger>,
    /// Triggers without a stored schedule: deleted.
    pub orphaned: Vec<TriggerRef>,
    /// Drift left alone because the schedule was created, changed or deleted meanwhile.
    pub skipped: Vec<TriggerRef>,
    pub failed: Vec<RepairFailure>,
}

impl ReconcileReport {
    /// Whether store and triggers agreed (nothing found, nothing failed).
    pub fn is_clean(&self) -> bool {
        self.counts == ReconcileCounts::default()
    }

    fn fail(&mut self, trigger: TriggerRef, kind: DriftKind, error: impl std::fmt::Display) {
        tracing::warn!(workspace_id = %trigger.workspace_id, schedule_id = %trigger.schedule_id,
            kind = ?kind, error = %error, "reconcile could not repair a trigger");
        self.failed.push(RepairFailure {
            trigger,
            kind,
            error: error.to_string(),
        });
    }
}

type Key = (String, String);

pub struct ReconcileService {
    pub schedules: Arc<dyn ScheduleStore>,
    pub triggers: Arc<dyn TriggerListing>,
}

impl ReconcileService {
    pub fn new(
        schedules: Arc<dyn ScheduleStore>,
        triggers: Arc<dyn TriggerListing>,
    ) -> ReconcileService {
        ReconcileService {
            schedules,
            triggers,
        }
    }

    /// Compares every stored schedule with every trigger and, unless `dry_run`, repairs the
    /// drift. Fails only when a listing fails; a failed repair is reported and the others
    /// still run.
    pub async fn reconcile(&self, dry_run: bool) -> Result<ReconcileReport, ServiceError> {
        let triggers = self.all_triggers().await?;
        let stored = self.all_schedules().await?;
        let mut report = ReconcileReport {
            dry_run,
            schedules_checked: stored.len(),
            triggers_checked: triggers.len(),
            ..ReconcileReport::default()
        };

        // Orphans first: a backend that keys triggers by schedule id alone (the local timer)
        // would otherwise delete a trigger just put for the same id in the right workspace.
        for (key, trigger) in &triggers {
            if stored.contains_key(key) {
                continue;
            }
            let id = trigger_ref(key);
            match self
                .schedules
                .get_schedule(&id.workspace_id, &id.schedule_id)
                .await
            {
                Ok(None) => {}
                Ok(Some(_)) => {
                    // Created meanwhile: its creator puts the trigger.
                    report.skipped.push(id);
                    continue;
                }
                Err(e) => {
                    report.fail(id, DriftKind::Orphaned, e);
                    continue;
                }
            }
            report.orphaned.push(id.clone());
            if dry_run {
                continue;
            }
            match self.triggers.delete_trigger(&orphan(trigger)).await {
                Ok(()) => tracing::info!(workspace_id = %id.workspace_id,
                    schedule_id = %id.schedule_id, "reconcile deleted an orphan trigger"),
                Err(e) => report.fail(id, DriftKind::Orphaned, e),
            }
        }

        for (key, (schedule, active)) in &stored {
            let id = trigger_ref(key);
            let expected = match expected_trigger(schedule, *active) {
                Ok(expected) => expected,
                Err(e) => {
                    report.fail(id, DriftKind::Invalid, e);
                    continue;
                }
            };
            let kind = match triggers.get(key) {
                None => DriftKind::Missing,
                Some(actual) => {
                    let fields = differences(&expected, actual);
                    if fields.is_empty() {
                        continue;
                    }
                    report.drifted.push(DriftedTrigger {
                        trigger: id.clone(),
                        fields,
                    });
                    DriftKind::Drifted
                }
            };
            match self
                .schedules
                .get_schedule(&id.workspace_id, &id.schedule_id)
                .await
            {
                Ok(Some(current)) if current.version == schedule.version => {}
                Ok(_) => {
                    // Changed or deleted meanwhile: its own request mirrors the change.
                    if kind == DriftKind::Drifted {
                        report.drifted.pop();
                    }
                    report.skipped.push(id);
                    continue;
                }
                Err(e) => {
                    report.fail(id, kind, e);
                    continue;
                }
            }
            if kind == DriftKind::Missing {
                report.missing.push(id.clone());
            }
            if dry_run {
                continue;
            }
            match self.triggers.put_trigger(schedule, *active).await {
                Ok(()) => tracing::info!(workspace_id = %id.workspace_id,
                    schedule_id = %id.schedule_id, kind = ?kind, active, "reconcile put a trigger"),
                Err(e) => report.fail(id, kind, e),
            }
        }

        report.counts = ReconcileCounts {
            missing: report.missing.len(),
            drifted: report.drifted.len(),
            orphaned: report.orphaned.len(),
            skipped: report.skipped.len(),
            failed: report.failed.len(),
        };
        Ok(report)
    }

    async fn all_triggers(&self) -> Result<BTreeMap<Key, TriggerState>, PortError> {
        let mut all = BTreeMap::new();
        let mut page = PageRequest::first(TRIGGER_PAGE);
        loop {
            let batch = self.triggers.list_triggers(&page).await?;
            for trigger in batch.items {
                all.insert(
                    (trigger.workspace_id.clone(), trigger.schedule_id.clone()),
                    trigger,
                );
            }
            match batch.next_cursor {
                Some(cursor) => page.cursor = Some(cursor),
                None => return Ok(all),
            }
        }
    }

    async fn all_schedules(&self) -> Result<BTreeMap<Key, (Schedule, bool)>, PortError> {
        let mut all = BTreeMap::new();
        let mut page = PageRequest::first(SCHEDULE_PAGE);
        loop {
            let batch = self.schedules.list_all_schedules(&page).await?;
            for (schedule, active) in batch.items {
                all.insert(
                    (schedule.workspace_id.clone(), schedule.schedule_id.clone()),
                    (schedule, active),
                );
            }
            match batch.next_cursor {
                Some(cursor) => page.cursor = Some(cursor),
                None => return Ok(all),
            }
        }
    }
}

fn trigger_ref((workspace_id, schedule_id): &Key) -> TriggerRef {
    TriggerRef {
        workspace_id: workspace_id.clone(),
        schedule_id: schedule_id.clone(),
    }
}

/// The trigger the store says should exist.
fn expected_trigger(schedule: &Schedule, active: bool) -> Result<TriggerState, ServiceError> {
    let spec = schedule.cadence.compile()?;
    Ok(TriggerState {
        workspace_id: schedule.workspace_id.clone(),
        schedule_id: schedule.schedule_id.clone(),
        active,
        expression: spec.eventbridge_expression(),
        timezone: schedule.timezone.clone(),
    })
}

fn differences(expected: &TriggerState, actual: &TriggerState) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if expected.active != actual.active {
        fields.push("active");
    }
    if expected.expression != actual.expression {
        fields.push("expression");
    }
    if expected.timezone != actual.timezone {
        fields.push("timezone");
    }
    fields
}

/// `delete_trigger` takes a schedule but backends use only its workspace and id; an orphan
/// has no stored schedule, so this stands in for it.
fn orphan(trigger: &TriggerState) -> Schedule {
    let epoch = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    Schedule {
        schedule_id: trigger.schedule_id.clone(),
        project_id: String::new(),
        workspace_id: trigger.workspace_id.clone(),
        created_by: String::new(),
        creator_role: ProjectRole::CanView,
        cadence: Cadence::Hourly { minute: 0 },
        timezone: trigger.timezone.clone(),
        enabled: false,
        update_published_results: false,
        use_cached_sql_results: true,
        overlap_policy: OverlapPolicy::Skip,
        hourly: true,
        created_at: epoch,
        updated_at: epoch,
        version: 0,
        notifications: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::adapters::local::clock::ManualClock;
    use crate::adapters::local::timer::{LocalTimer, TimerSettings};
    use crate::domain::cadence::Weekday;
    use crate::ports::{Page, ScheduleFilter, ScheduleLimits, TriggerBackend};

    /// The store as reconcile sees it: a list of schedules with their `active` flag. What
    /// `get_schedule` returns can differ, to stand for a change made while reconcile runs.
    #[derive(Default)]
    struct FakeStore {
        listed: Mutex<Vec<(Schedule, bool)>>,
        /// `get_schedule` answers from here when set for the id.
        current: Mutex<BTreeMap<String, Option<Schedule>>>,
    }

    impl FakeStore {
        fn with(schedules: Vec<(Schedule, bool)>) -> Arc<FakeStore> {
            Arc::new(FakeStore {
                listed: Mutex::new(schedules),
                current: Mutex::default(),
            })
        }

        fn set_current(&self, schedule_id: &str, schedule: Option<Schedule>) {
            self.current
                .lock()
                .expect("lock")
                .insert(schedule_id.to_owned(), schedule);
        }
    }

    fn unused() -> PortError {
        PortError::fatal("not used by reconcile")
    }

    #[async_trait]
    impl ScheduleStore for FakeStore {
        async fn insert_schedule(&self, _: &Schedule, _: &ScheduleLimits) -> Result<(), PortError> {
            Err(unused())
        }
        async fn get_schedule(
            &self,
            workspace_id: &str,
            schedule_id: &str,
        ) -> Result<Option<Schedule>, PortError> {
            if let Some(current) = self.current.lock().expect("lock").get(schedule_id) {
                return Ok(current.clone());
            }
            Ok(self
                .listed
                .lock()
                .expect("lock")
                .iter()
                .map(|(s, _)| s)
                .find(|s| s.workspace_id == workspace_id && s.schedule_id == schedule_id)
                .cloned())
        }
        async fn list_project_schedules(
            &self,
            _: &str,
            _: &str,
            _: &PageRequest,
        ) -> Result<Page<Schedule>, PortError> {
            Err(unused())
        }
        async fn list_workspace_schedules(
            &self,
            _: &str,
            _: &ScheduleFilter,
            _: &PageRequest,
        ) -> Result<Page<Schedule>, PortError> {
            Err(unused())
        }
        async fn update_schedule(
            &self,
            _: &Schedule,
            _: u64,
            _: &ScheduleLimits,
        ) -> Result<(), PortError> {
            Err(unused())
        }
        async fn delete_schedule(&self, _: &str, _: &str) -> Result<(), PortError> {
            Err(unused())
        }
        /// Pages by position, to exercise the cursor loop.
        async fn list_all_schedules(
            &self,
            page: &PageRequest,
        ) -> Result<Page<(Schedule, bool)>, PortError> {
            let all = self.listed.lock().expect("lock").clone();
            let start: usize = match &page.cursor {
                Some(c) => c.parse().map_err(|_| PortError::InvalidCursor)?,
                None => 0,
            };
            let end = (start + page.limit as usize).min(all.len());
            Ok(Page {
                items: all.get(start..end).unwrap_or_default().to_vec(),
                next_cursor: (end < all.len()).then(|| end.to_string()),
            })
        }
    }

    fn at() -> chrono::DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0)
            .single()
            .expect("valid")
    }

    fn schedule(workspace_id: &str, schedule_id: &str) -> Schedule {
        Schedule {
            schedule_id: schedule_id.into(),
            project_id: "proj-1".into(),
            workspace_id: workspace_id.into(),
            created_by: "user-1".into(),
            creator_role: ProjectRole::CanEdit,
            cadence: Cadence::Weekly {
                weekdays: vec![Weekday::Mon, Weekday::Thu],
                hour: 9,
                minute: 30,
            },
            timezone: "Europe/Berlin".into(),
            enabled: true,
            update_published_results: true,
            use_cached_sql_results: false,
            overlap_policy: OverlapPolicy::Skip,
            hourly: false,
            created_at: at(),
            updated_at: at(),
            version: 3,
            notifications: Default::default(),
        }
    }

    fn timer() -> LocalTimer {
        LocalTimer::new(Arc::new(ManualClock::new(at())), TimerSettings::default())
    }

    fn service(store: &Arc<FakeStore>, timer: &LocalTimer) -> ReconcileService {
        ReconcileService::new(store.clone(), Arc::new(timer.clone()))
    }

    async fn triggers(timer: &LocalTimer) -> Vec<TriggerState> {
        let mut all = Vec::new();
        let mut page = PageRequest::first(7);
        loop {
            let batch = timer.list_triggers(&page).await.expect("list");
            all.extend(batch.items);
            match batch.next_cursor {
                Some(c) => page.cursor = Some(c),
                None => return all,
            }
        }
    }

    fn id(workspace_id: &str, schedule_id: &str) -> TriggerRef {
        TriggerRef {
            workspace_id: workspace_id.into(),
            schedule_id: schedule_id.into(),
        }
    }

    #[tokio::test]
    async fn stored_schedules_without_a_trigger_get_one() {
        // More than a page of each listing.
        let mut stored: Vec<(Schedule, bool)> = (0..620)
            .map(|i| (schedule("ws-1", &format!("s-{i:04}")), true))
            .collect();
        let mut disabled = schedule("ws-2", "s-disabled");
        disabled.enabled = false;
        stored.push((disabled, false));
        let store = FakeStore::with(stored);
        let timer = timer();
        // One already correct.
        timer
            .put_trigger(&schedule("ws-1", "s-0000"), true)
            .await
            .expect("put");

        let report = service(&store, &timer)
            .reconcile(false)
            .await
            .expect("reconcile");
        assert_eq!(report.schedules_checked, 621);
        assert_eq!(report.triggers_checked, 1);
        assert_eq!(report.counts.missing, 620);
        assert!(report.missing.contains(&id("ws-2", "s-disabled")));
        assert!(!report.missing.contains(&id("ws-1", "s-0000")));
        assert!(report.failed.is_empty() && report.orphaned.is_empty());

        let all = triggers(&timer).await;
        assert_eq!(all.len(), 621);
        let disabled = all
            .iter()
            .find(|t| t.schedule_id == "s-disabled")
            .expect("disabled schedule has a trigger");
        assert!(!disabled.active);
        assert_eq!(disabled.expression, "cron(30 9 ? * MON,THU *)");
        assert_eq!(disabled.timezone, "Europe/Berlin");
        assert_eq!(timer.len(), 620, "only active triggers fire");

        let again = service(&store, &timer)
            .reconcile(false)
            .await
            .expect("reconcile");
        assert!(again.is_clean(), "{again:?}");
    }

    #[tokio::test]
    async fn drifted_triggers_are_put_again() {
        let mut archived = schedule("ws-1", "s-archived");
        archived.enabled = true;
        let mut moved = schedule("ws-1", "s-tz");
        moved.timezone = "America/New_York".into();
        let recadenced = schedule("ws-1", "s-cron");
        let store = FakeStore::with(vec![
            (archived.clone(), false),
            (moved.clone(), true),
            (recadenced.clone(), true),
        ]);
        let timer = timer();
        // What the triggers were left at by failed trigger calls.
        timer.put_trigger(&archived, true).await.expect("put");
        timer
            .put_trigger(&schedule("ws-1", "s-tz"), true)
            .await
            .expect("put");
        let mut old = recadenced.clone();
        old.cadence = Cadence::Daily { hour: 7, minute: 0 };
        timer.put_trigger(&old, true).await.expect("put");

        let report = service(&store, &timer)
            .reconcile(false)
            .await
            .expect("reconcile");
        let mut drifted = report.drifted.clone();
        drifted.sort_by(|a, b| a.trigger.cmp(&b.trigger));
        assert_eq!(
            drifted,
            vec![
                DriftedTrigger {
                    trigger: id("ws-1", "s-archived"),
                    fields: vec!["active"]
                },
                DriftedTrigger {
                    trigger: id("ws-1", "s-cron"),
                    fields: vec!["expression"]
                },
                DriftedTrigger {
                    trigger: id("ws-1", "s-tz"),
                    fields: vec!["timezone"]
                },
            ]
        );
        assert_eq!(report.counts.drifted, 3);
        assert!(report.missing.is_empty() && report.orphaned.is_empty());

        let all = triggers(&timer).await;
        let get = |sid: &str| {
            all.iter()
                .find(|t| t.schedule_id == sid)
                .cloned()
                .expect("trigger")
        };
        assert!(!get("s-archived").active);
        assert_eq!(
            timer.next_fire("s-archived"),
            None,
            "archived: no longer fires"
        );
        assert_eq!(get("s-tz").timezone, "America/New_York");
        assert_eq!(get("s-cron").expression, "cron(30 9 ? * MON,THU *)");
        assert!(
            service(&store, &timer)
                .reconcile(false)
                .await
                .expect("again")
                .is_clean()
        );
    }

    #[tokio::test]
    async fn orphan_triggers_are_deleted() {
        let store = FakeStore::with(vec![(schedule("ws-1", "s-kept"), true)]);
        let timer = timer();
        timer
            .put_trigger(&schedule("ws-1", "s-kept"), true)
            .await
            .expect("put");
        timer
            .put_trigger(&schedule("ws-1", "s-orphan"), true)
            .await
            .expect("put");
        let report = service(&store, &timer)
            .reconcile(false)
            .await
            .expect("reconcile");
        assert_eq!(report.orphaned, vec![id("ws-1", "s-orphan")]);
        assert_eq!(report.counts.orphaned, 1);
        let all = triggers(&timer).await;
        assert_eq!(
            all.iter()
                .map(|t| t.schedule_id.as_str())
                .collect::<Vec<_>>(),
            ["s-kept"]
        );
        assert_eq!(timer.next_fire("s-orphan"), None);
    }

    #[tokio::test]
    async fn a_dry_run_reports_and_changes_nothing() {
        let mut disabled = schedule("ws-1", "s-disabled");
        disabled.enabled = false;
        let store = FakeStore::with(vec![
            (schedule("ws-1", "s-missing"), true),
            (disabled.clone(), false),
        ]);
        let timer = timer();
        timer.put_trigger(&disabled, true).await.expect("put");
        timer
            .put_trigger(&schedule("ws-1", "s-orphan"), true)
            .await
            .expect("put");
        let before = triggers(&timer).await;

        let report = service(&store, &timer)
            .reconcile(true)
            .await
            .expect("dry run");
        assert!(report.dry_run);
        assert_eq!(report.missing, vec![id("ws-1", "s-missing")]);
        assert_eq!(report.drifted.len(), 1);
        assert_eq!(report.orphaned, vec![id("ws-1", "s-orphan")]);
        assert_eq!(triggers(&timer).await, before);
    }

    #[tokio::test]
    async fn schedules_changed_meanwhile_are_left_to_their_request() {
        let store = FakeStore::with(vec![
            (schedule("ws-1", "s-updated"), true),
            (schedule("ws-1", "s-deleted"), true),
        ]);
        let mut newer = schedule("ws-1", "s-updated");
        newer.version += 1;
        store.set_current("s-updated", Some(newer));
        store.set_current("s-deleted", None);
        // A trigger whose schedule is created after the store was listed.
        store.set_current("s-created", Some(schedule("ws-1", "s-created")));
        let timer = timer();
        timer
            .put_trigger(&schedule("ws-1", "s-created"), true)
            .await
            .expect("put");

        let report = service(&store, &timer)
            .reconcile(false)
            .await
            .expect("reconcile");
        let mut skipped = report.skipped.clone();
        skipped.sort();
        assert_eq!(
            skipped,
            vec![
                id("ws-1", "s-created"),
                id("ws-1", "s-deleted"),
                id("ws-1", "s-updated")
            ]
        );
        assert!(report.missing.is_empty() && report.orphaned.is_empty());
        let all = triggers(&timer).await;
        assert_eq!(all.len(), 1, "nothing put, the new schedule's trigger kept");
        assert_eq!(all[0].schedule_id, "s-created");
    }

    #[tokio::test]
    async fn a_trigger_in_the_wrong_workspace_is_replaced() {
        let store = FakeStore::with(vec![(schedule("ws-right", "s-1"), true)]);
        let timer = timer();
        timer
            .put_trigger(&schedule("ws-wrong", "s-1"), true)
            .await
            .expect("put");
        let report = service(&store, &timer)
            .reconcile(false)
            .await
            .expect("reconcile");
        assert_eq!(report.missing, vec![id("ws-right", "s-1")]);
        assert_eq!(report.orphaned, vec![id("ws-wrong", "s-1")]);
        let all = triggers(&timer).await;
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].workspace_id, "ws-right");
        let again = service(&store, &timer)
            .reconcile(false)
            .await
            .expect("again");
        assert!(again.is_clean(), "{again:?}");
    }

    #[tokio::test]
    async fn an_invalid_stored_schedule_is_reported_not_fatal() {
        let mut broken = schedule("ws-1", "s-broken");
        broken.cadence = Cadence::Cron {
            expression: "not cron".into(),
        };
        let store = FakeStore::with(vec![(broken, true), (schedule("ws-1", "s-ok"), true)]);
        let timer = timer();
        let report = service(&store, &timer)
            .reconcile(false)
            .await
            .expect("reconcile");
        assert_eq!(report.missing, vec![id("ws-1", "s-ok")]);
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].trigger, id("ws-1", "s-broken"));
        assert_eq!(report.failed[0].kind, DriftKind::Invalid);
        assert!(!report.is_clean());
    }
}
