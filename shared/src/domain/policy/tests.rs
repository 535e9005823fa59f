//! One table per policy row of SPEC §3 that concerns projects, members, plans and schedules.

use chrono::{TimeZone, Utc};

use super::*;
use crate::domain::model::{OverlapPolicy, WorkspaceRole};

use ProjectRole::{CanEdit, CanExplore, CanView, FullAccess};

fn cadence(json: &str) -> Cadence {
    match serde_json::from_str(json) {
        Ok(c) => c,
        Err(e) => panic!("test cadence {json} does not parse: {e}"),
    }
}

fn spec(c: &Cadence) -> FireSpec {
    match c.compile() {
        Ok(s) => s,
        Err(e) => panic!("test cadence {c:?} does not compile: {e}"),
    }
}

fn caller(workspace: &str, role: WorkspaceRole) -> Caller {
    Caller {
        user_id: "u1".into(),
        workspace_id: workspace.into(),
        workspace_role: role,
        email: None,
    }
}

fn schedule(created_by: &str, creator_role: ProjectRole) -> Schedule {
    let at = Utc
        .timestamp_opt(1_780_000_000, 0)
        .single()
        .unwrap_or_default();
    Schedule {
        schedule_id: "s1".into(),
        project_id: "p1".into(),
        workspace_id: "w1".into(),
        created_by: created_by.into(),
        creator_role,
        cadence: cadence(r#"{"kind":"DAILY","hour":9,"minute":0}"#),
        timezone: "UTC".into(),
        enabled: true,
        update_published_results: creator_role >= CanEdit,
        use_cached_sql_results: creator_role < CanEdit,
        overlap_policy: OverlapPolicy::Skip,
        hourly: false,
        created_at: at,
        updated_at: at,
        version: 1,
        notifications: Default::default(),
    }
}

const HOURLY: &str = r#"{"kind":"HOURLY","minute":15}"#;
const DAILY: &str = r#"{"kind":"DAILY","hour":9,"minute":0}"#;
const WEEKLY: &str = r#"{"kind":"WEEKLY","weekdays":["MON"],"hour":9,"minute":0}"#;
const MONTHLY: &str = r#"{"kind":"MONTHLY","dayOfMonth":"LAST","hour":9,"minute":0}"#;
const CRON_DAILY: &str = r#"{"kind":"CRON","expression":"30 8 * * MON-FRI"}"#;
const CRON_HOURLY: &str = r#"{"kind":"CRON","expression":"0 9-17 * * *"}"#;
const CRON_SUBHOURLY: &str = r#"{"kind":"CRON","expression":"*/15 * * * *"}"#;
const CRON_TWO_MINUTES: &str = r#"{"kind":"CRON","expression":"0,30 9 * * *"}"#;

#[test]
fn workspace_role_and_membership_decide_the_effective_role() {
    let cases = [
        // (caller workspace, workspace role, membership, expected)
        ("w1", WorkspaceRole::Member, Some(CanView), Some(CanView)),
        ("w1", WorkspaceRole::Member, Some(CanEdit), Some(CanEdit)),
        ("w1", WorkspaceRole::Member, None, None),
        ("w1", WorkspaceRole::Admin, None, Some(FullAccess)),
        ("w1", WorkspaceRole::Admin, Some(CanView), Some(FullAccess)),
        ("w2", WorkspaceRole::Admin, None, None),
        ("w2", WorkspaceRole::Member, Some(FullAccess), None),
    ];
    for (ws, role, membership, expected) in cases {
        assert_eq!(
            effective_role(&caller(ws, role), "w1", membership),
            expected,
            "{ws} {role:?} {membership:?}"
        );
    }
}

#[test]
fn no_role_is_not_found_and_too_little_is_forbidden() {
    assert_eq!(require_role(None, CanView), Err(Denied::NotFound));
    assert!(matches!(
        require_role(Some(CanView), CanEdit),
        Err(Denied::Forbidden { .. })
    ));
    assert_eq!(require_role(Some(CanEdit), CanEdit), Ok(CanEdit));
    assert_eq!(require_role(Some(FullAccess), CanView), Ok(FullAccess));
}

#[test]
fn viewers_may_not_create_schedules_explorers_and_above_may() {
    let cases = [
        (CanView, false),
        (CanExplore, true),
        (CanEdit, true),
        (FullAccess, true),
    ];
    for (role, allowed) in cases {
        assert_eq!(can_create_schedule(role).is_ok(), allowed, "{role:?}");
    }
}

#[test]
fn publish_first_and_archived_projects() {
    let cases = [
        // (archived, published, creating, expected)
        (false, true, true, Ok(())),
        (false, false, true, Err(Denied::ProjectNotPublished)),
        (true, true, true, Err(Denied::ProjectArchived)),
        (true, false, true, Err(Denied::ProjectArchived)),
        (true, true, false, Err(Denied::ProjectArchived)),
        (false, true, false, Ok(())),
    ];
    for (archived, published, creating, expected) in cases {
        assert_eq!(
            check_project_schedulable(
                ProjectState {
                    archived,
                    published
                },
                creating
            ),
            expected,
            "archived={archived} published={published} creating={creating}"
        );
    }
}

#[test]
fn custom_cron_by_plan_and_maximum_frequency() {
    use Plan::{Enterprise, Professional, Team};
    // (plan, role, cadence, Ok | error code)
    let cases: &[(Plan, ProjectRole, &str, &str)] = &[
        (Professional, CanEdit, HOURLY, "OK"),
        (Professional, CanEdit, DAILY, "OK"),
        (Professional, CanEdit, WEEKLY, "OK"),
        (Professional, CanEdit, MONTHLY, "OK"),
        (Professional, CanEdit, CRON_DAILY, "PLAN_LIMIT"),
        (Professional, CanExplore, CRON_DAILY, "PLAN_LIMIT"),
        (Team, CanEdit, CRON_DAILY, "OK"),
        (Enterprise, CanEdit, CRON_DAILY, "OK"),
        (Team, CanEdit, CRON_HOURLY, "OK"),
        (Team, FullAccess, CRON_SUBHOURLY, "FREQUENCY_TOO_HIGH"),
        (Team, CanEdit, CRON_TWO_MINUTES, "FREQUENCY_TOO_HIGH"),
        (Team, CanExplore, HOURLY, "FREQUENCY_TOO_HIGH"),
        (Team, CanExplore, CRON_HOURLY, "FREQUENCY_TOO_HIGH"),
        (Team, CanExplore, CRON_DAILY, "OK"),
        (Team, CanExplore, DAILY, "OK"),
        (Team, CanExplore, WEEKLY, "OK"),
        (Team, CanExplore, MONTHLY, "OK"),
    ];
    for &(plan, role, json, expected) in cases {
        let c = cadence(json);
        let got = match check_cadence(plan, role, &c, &spec(&c)) {
            Ok(()) => "OK",
            Err(Denied::PlanLimit { .. }) => "PLAN_LIMIT",
            Err(Denied::FrequencyTooHigh { .. }) => "FREQUENCY_TOO_HIGH",
            Err(other) => panic!("unexpected {other:?}"),
        };
        assert_eq!(got, expected, "{plan:?} {role:?} {json}");
    }
}

#[test]
fn editors_get_defaults_and_may_toggle_explorers_are_locked() {
    let daily = spec(&cadence(DAILY));
    let t = |u, c| RequestedToggles {
        update_published_results: u,
        use_cached_sql_results: c,
    };
    // (role, requested, expected (update, cached) or the refused field)
    type Case = (
        ProjectRole,
        RequestedToggles,
        Result<(bool, bool), &'static str>,
    );
    let cases: &[Case] = &[
        (CanEdit, t(None, None), Ok((true, false))),
        (FullAccess, t(None, None), Ok((true, false))),
        (CanEdit, t(Some(false), Some(true)), Ok((false, true))),
        (CanExplore, t(None, None), Ok((false, true))),
        (CanExplore, t(Some(false), Some(true)), Ok((false, true))),
        (
            CanExplore,
            t(Some(true), None),
            Err("updatePublishedResults"),
        ),
        (CanExplore, t(None, Some(false)), Err("useCachedSqlResults")),
    ];
    for (role, requested, expected) in cases {
        let got = settle_toggles(*role, *requested, &daily)
            .map(|s| (s.update_published_results, s.use_cached_sql_results))
            .map_err(|e| match e {
                Denied::Forbidden { field: Some(f), .. } => f,
                other => panic!("unexpected {other:?}"),
            });
        assert_eq!(&got, expected, "{role:?} {requested:?}");
    }
}

#[test]
fn updates_keep_stored_toggles_and_the_explorer_lock() {
    let daily = spec(&cadence(DAILY));
    let none = RequestedToggles::default();
    let editor_schedule = schedule("u2", CanEdit);
    let explorer_schedule = schedule("u1", CanExplore);
    let s = settle_updated_toggles(CanEdit, &editor_schedule, none, &daily);
    assert_eq!(
        s.map(|s| (s.update_published_results, s.use_cached_sql_results)),
        Ok((true, false))
    );
    let turn_on = RequestedToggles {
        update_published_results: Some(true),
        use_cached_sql_results: None,
    };
    // An explorer's schedule stays locked even when an editor changes it.
    assert!(settle_updated_toggles(FullAccess, &explorer_schedule, turn_on, &daily).is_err());
    assert!(settle_updated_toggles(CanExplore, &explorer_schedule, turn_on, &daily).is_err());
    assert!(settle_updated_toggles(CanEdit, &editor_schedule, turn_on, &daily).is_ok());
}

#[test]
fn plan_and_role_limits_for_the_store() {
    let cases = [
        (Plan::Professional, CanEdit, Some(1), None),
        (Plan::Professional, CanExplore, Some(1), Some(1)),
        (Plan::Team, CanEdit, None, None),
        (Plan::Team, FullAccess, None, None),
        (Plan::Team, CanExplore, None, Some(1)),
        (Plan::Enterprise, CanExplore, None, Some(1)),
    ];
    for (plan, role, per_project, per_creator) in cases {
        let limits = creation_limits(plan, role);
        assert_eq!(limits.max_per_project, per_project, "{plan:?} {role:?}");
        assert_eq!(limits.max_per_creator, per_creator, "{plan:?} {role:?}");
        assert_eq!(limits.max_hourly_per_project, Some(12));
    }
    assert_eq!(update_limits().max_hourly_per_project, Some(12));
    assert_eq!(update_limits().max_per_project, None);
}

#[test]
fn hourly_schedules_are_those_firing_more_than_once_a_day() {
    let cases = [
        (HOURLY, true),
        (CRON_HOURLY, true),
        (DAILY, false),
        (WEEKLY, false),
        (MONTHLY, false),
        (CRON_DAILY, false),
    ];
    for (json, hourly) in cases {
        let s = settle_toggles(CanEdit, RequestedToggles::default(), &spec(&cadence(json)));
        assert_eq!(s.map(|s| s.hourly), Ok(hourly), "{json}");
    }
}

#[test]
fn editors_change_all_explorers_their_own_viewers_none() {
    let own = schedule("u1", CanExplore);
    let other = schedule("u2", CanEdit);
    let cases = [
        (FullAccess, &other, true),
        (CanEdit, &other, true),
        (CanEdit, &own, true),
        (CanExplore, &own, true),
        (CanExplore, &other, false),
        (CanView, &own, false),
        (CanView, &other, false),
    ];
    for (role, s, allowed) in cases {
        assert_eq!(
            can_modify_schedule(role, "u1", s).is_ok(),
            allowed,
            "{role:?} on {}'s schedule",
            s.created_by
        );
        assert_eq!(can_trigger_schedule(role, "u1", s).is_ok(), allowed);
    }
}

#[test]
fn only_workspace_admins_administer() {
    assert!(require_admin(&caller("w1", WorkspaceRole::Admin)).is_ok());
    assert!(require_admin(&caller("w1", WorkspaceRole::Member)).is_err());
}

#[test]
fn the_creators_role_at_run_time() {
    let editor_schedule = schedule("u2", CanEdit);
    let explorer_schedule = schedule("u1", CanExplore);
    let run = |u, c| RunAuthority::Run {
        update_published_results: u,
        use_cached_sql_results: c,
    };
    let cases = [
        (None, &editor_schedule, RunAuthority::NoAccess),
        (Some(FullAccess), &editor_schedule, run(true, false)),
        (Some(CanEdit), &editor_schedule, run(true, false)),
        // Downgraded below CAN_EDIT: cache, no published results.
        (Some(CanExplore), &editor_schedule, run(false, true)),
        (Some(CanView), &editor_schedule, run(false, true)),
        // Explorers' schedules never update results, even after an upgrade.
        (Some(FullAccess), &explorer_schedule, run(false, true)),
        (None, &explorer_schedule, RunAuthority::NoAccess),
    ];
    for (role, s, expected) in cases {
        assert_eq!(
            run_authority(role, s),
            expected,
            "{role:?} {:?}",
            s.creator_role
        );
    }
}
