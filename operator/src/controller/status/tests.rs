use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::template::load_manifest;
use crate::validate::validate;

fn stack() -> DataWarehouseStack {
    let mut stack = load_manifest("kind: DataWarehouseStack\nmetadata: {name: w, namespace: ns}\nspec: {}\n").unwrap();
    stack.metadata.generation = Some(2);
    stack
}

fn at(second: i64) -> Time {
    Time(Timestamp::from_second(second).unwrap())
}

#[test]
fn transition_times_move_only_when_a_condition_changes() {
    let mut stack = stack();
    let validated = validate(&stack).unwrap();
    let first = build(&stack, Some(&validated), &Outcome::Provisioning, None, &at(100));
    assert_eq!(first.phase.as_deref(), Some("Provisioning"));
    stack.status = Some(first);
    let report = ApplyReport::default();
    let warehouse = WarehouseStatus::default();
    let second = build(
        &stack,
        Some(&validated),
        &Outcome::Converged { report: &report, nodes: None, warehouse: &warehouse, refresh_now_started: true },
        None,
        &at(200),
    );
    let times: Vec<(&str, &str, i64)> = second
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str(), c.last_transition_time.0.as_second()))
        .collect();
    assert_eq!(times, [("Ready", "True", 200), ("DatabaseAvailable", "True", 200), ("Converged", "True", 200)]);
    stack.status = Some(second);
    let third = build(
        &stack,
        Some(&validated),
        &Outcome::Converged { report: &report, nodes: None, warehouse: &warehouse, refresh_now_started: true },
        None,
        &at(300),
    );
    assert!(third.conditions.iter().all(|c| c.last_transition_time.0.as_second() == 200), "no transition, no new time");
    assert_eq!(third.observed_generation, Some(2));
}

#[test]
fn outcomes_map_to_phases() {
    assert_eq!(Outcome::Invalid("x".into()).phase(), Phase::Failed);
    assert_eq!(Outcome::DatabaseUnavailable("x".into()).phase(), Phase::Degraded);
    let report = ApplyReport {
        items: vec![ItemOutcome {
            item: ItemKind::Source,
            name: "cp".into(),
            state: ItemState::Failed,
            statements: 0,
            message: Some("boom".into()),
        }],
        ..ApplyReport::default()
    };
    let warehouse = WarehouseStatus::default();
    let outcome = Outcome::Converged { report: &report, nodes: None, warehouse: &warehouse, refresh_now_started: true };
    assert_eq!(outcome.phase(), Phase::Degraded);
    assert_eq!(outcome.message(), "1 item(s) failed: source/cp: boom");
}

#[test]
fn a_new_refresh_now_value_is_asked_once_and_recorded_when_converged() {
    let mut stack = load_manifest(
        "kind: DataWarehouseStack\nmetadata: {name: w, namespace: ns}\nspec:\n  refreshes:\n  - {name: clusters, target: t, query: SELECT 1 AS x, schedule: '*/5 * * * *'}\n",
    )
    .unwrap();
    let validated = validate(&stack).unwrap();
    assert_eq!(refresh_now_asked(&stack), None, "no annotation, nothing asked");
    stack.metadata.annotations = Some([(REFRESH_NOW.to_string(), "2026-11-25T10:00".to_string())].into());
    assert_eq!(refresh_now_asked(&stack).map(String::as_str), Some("2026-11-25T10:00"));

    let report = ApplyReport::default();
    let warehouse = WarehouseStatus {
        refreshes: vec![crate::sql::status::RefreshStatus {
            name: "clusters".into(),
            target: "public.t".into(),
            mode: "replace".into(),
            state: Some("succeeded".into()),
            last_start: None,
            duration_ms: Some(12),
            inserted: Some(1),
            updated: Some(0),
            deleted: Some(1),
            high_water: None,
            last_success: Some(chrono::Utc::now()),
            error: None,
        }],
        ..WarehouseStatus::default()
    };
    let unconverged = build(&stack, Some(&validated), &Outcome::Provisioning, None, &at(100));
    assert_eq!(unconverged.refresh_now_handled, None, "only a converged reconcile runs them");
    let busy = Outcome::Converged { report: &report, nodes: None, warehouse: &warehouse, refresh_now_started: false };
    let still_running = build(&stack, Some(&validated), &busy, None, &at(150));
    assert_eq!(still_running.refresh_now_handled, None, "not started (the earlier run goes on): asked still");
    let status = build(
        &stack,
        Some(&validated),
        &Outcome::Converged { report: &report, nodes: None, warehouse: &warehouse, refresh_now_started: true },
        None,
        &at(200),
    );
    assert_eq!(status.refresh_now_handled.as_deref(), Some("2026-11-25T10:00"));
    assert_eq!(status.ready_refreshes.as_deref(), Some("1/1"));
    let clusters = &status.refreshes[0];
    assert_eq!((clusters.rows_inserted, clusters.rows_deleted, clusters.stale), (Some(1), Some(1), false));
    stack.status = Some(status);
    assert_eq!(refresh_now_asked(&stack), None, "asked once");
}

#[test]
fn backups_fill_status_and_the_backed_up_condition_which_outlives_an_unreachable_database() {
    use crate::backup::info::{BackupSet, RepositoryInfo};
    use crate::backup::record::{Archiver, BackupState};
    let mut stack = load_manifest(
        "kind: DataWarehouseStack\nmetadata: {name: w, namespace: ns}\nspec:\n  backup:\n    repository: {volume: {}}\n",
    )
    .unwrap();
    let validated = validate(&stack).unwrap();
    let now = chrono::Utc::now();
    let full = BackupSet {
        label: "20261125-030000F".into(),
        kind: "full".into(),
        start: now - chrono::Duration::minutes(10),
        stop: now - chrono::Duration::minutes(9),
        size_bytes: 1_000_000,
        repository_bytes: 200_000,
    };
    let archived = Archiver {
        archived_count: 7,
        last_archived_wal: Some("000000010000000000000007".into()),
        last_archived_time: Some(now - chrono::Duration::minutes(1)),
        ..Archiver::default()
    };
    let warehouse = WarehouseStatus {
        backup: Some(BackupState { repository: RepositoryInfo { backups: vec![full] }, archiver: archived }),
        ..WarehouseStatus::default()
    };
    let report = ApplyReport::default();
    let status = build(
        &stack,
        Some(&validated),
        &Outcome::Converged { report: &report, nodes: None, warehouse: &warehouse, refresh_now_started: true },
        None,
        &at(100),
    );
    let backup = status.backup.clone().unwrap();
    assert_eq!(backup.repository, "/var/lib/pgbackrest");
    assert_eq!(backup.last_full.as_ref().unwrap().label, "20261125-030000F");
    assert_eq!(backup.last_full.as_ref().unwrap().duration_seconds, 60);
    assert!(backup.last_differential.is_none());
    assert_eq!(backup.archive.last_archived_wal.as_deref(), Some("000000010000000000000007"));
    assert!(!backup.archive.failing);
    assert!(backup.oldest_recovery_point.is_some() && backup.newest_recovery_point > backup.oldest_recovery_point);
    let backed_up = status.conditions.iter().find(|c| c.type_ == "BackedUp").unwrap();
    assert_eq!((backed_up.status.as_str(), backed_up.reason.as_str()), ("True", "BackedUp"));

    stack.status = Some(status);
    let later = build(&stack, Some(&validated), &Outcome::DatabaseUnavailable("refused".into()), None, &at(200));
    let kept = later.conditions.iter().find(|c| c.type_ == "BackedUp").unwrap();
    assert_eq!((kept.status.as_str(), kept.last_transition_time.0.as_second()), ("True", 100));
    assert!(later.backup.is_some(), "the last seen backups stay");
}

#[test]
fn a_restore_is_complete_once_the_restored_database_converged() {
    let mut stack = load_manifest(
        "kind: DataWarehouseStack\nmetadata: {name: w, namespace: ns}\nspec:\n  bootstrap: {restore: {repository: {volume: {}}, stack: source}}\n",
    )
    .unwrap();
    let validated = validate(&stack).unwrap();
    let starting = build(&stack, Some(&validated), &Outcome::Provisioning, None, &at(100));
    assert_eq!(starting.restored, None, "the restore step may still run");
    stack.status = Some(starting);
    assert!(!restore_completed(&stack));
    let (report, warehouse) = (ApplyReport::default(), WarehouseStatus::default());
    let converged =
        Outcome::Converged { report: &report, nodes: None, warehouse: &warehouse, refresh_now_started: false };
    stack.status = Some(build(&stack, Some(&validated), &converged, None, &at(200)));
    assert!(restore_completed(&stack));
    let later = build(&stack, Some(&validated), &Outcome::DatabaseUnavailable("x".into()), None, &at(300));
    assert_eq!(later.restored, Some(true), "kept whatever happens next");
}

#[test]
fn a_distributed_stack_reports_its_nodes_workers_and_rebalance() {
    let mut stack = load_manifest(
        "kind: DataWarehouseStack\nmetadata: {name: w, namespace: ns}\nspec: {distributed: {workers: 2}}\n",
    )
    .unwrap();
    stack.metadata.generation = Some(1);
    let validated = validate(&stack).unwrap();
    let report = ApplyReport::default();
    let node = |name: &str, coordinator: bool, shards: i64| crate::sql::status::NodeStatus {
        node: name.into(),
        coordinator,
        active: true,
        shards,
        bytes: shards * 8192,
    };
    let mut warehouse = WarehouseStatus {
        nodes: vec![node("w-0.w-headless.ns.svc:5432", true, 1), node("w-worker-0.w-workers.ns.svc:5432", false, 17)],
        ..WarehouseStatus::default()
    };
    let condition = |status: &DataWarehouseStackStatus| {
        let c = status.conditions.iter().find(|c| c.type_ == "Distributed").unwrap();
        (c.status.clone(), c.reason.clone(), c.message.clone())
    };

    let waiting = Nodes::WaitingForWorkers { ready: 1, wanted: 2 };
    let outcome = Outcome::Converged {
        report: &report,
        nodes: Some(&waiting),
        warehouse: &warehouse,
        refresh_now_started: false,
    };
    assert_eq!(outcome.phase(), Phase::Provisioning);
    let status = build(&stack, Some(&validated), &outcome, None, &at(100));
    assert_eq!(condition(&status), ("False".into(), "WorkersNotReady".into(), "1/2 worker pod(s) ready".into()));
    assert_eq!(status.conditions[0].status, "False", "not Ready while workers are missing");
    assert_eq!(status.distributed.as_ref().unwrap().ready_workers, "1/2");

    warehouse.nodes.push(node("w-worker-1.w-workers.ns.svc:5432", false, 15));
    warehouse.rebalance = Some(crate::sql::status::RebalanceStatus {
        state: "running".into(),
        started: None,
        finished: None,
        moves_done: 3,
        moves: 8,
    });
    let converged = Nodes::Converged(crate::sql::distributed::NodesReport::default());
    let outcome = Outcome::Converged {
        report: &report,
        nodes: Some(&converged),
        warehouse: &warehouse,
        refresh_now_started: false,
    };
    assert_eq!(outcome.phase(), Phase::Ready, "a rebalance moves shards while queries run");
    let status = build(&stack, Some(&validated), &outcome, None, &at(200));
    assert_eq!(
        condition(&status),
        ("True".into(), "Rebalancing".into(), "moving shards to new workers: 3/8 moves done".into())
    );
    let distributed = status.distributed.unwrap();
    assert_eq!(distributed.ready_workers, "2/2");
    assert_eq!(
        distributed.nodes.iter().map(|n| (n.role.as_str(), n.shards)).collect::<Vec<_>>(),
        [("coordinator", 1), ("worker", 17), ("worker", 15)]
    );
    assert_eq!(distributed.rebalance.unwrap().moves_done, 3);

    let failed = Nodes::Failed("worker 1: connection refused".into());
    let outcome =
        Outcome::Converged { report: &report, nodes: Some(&failed), warehouse: &warehouse, refresh_now_started: false };
    assert_eq!(outcome.phase(), Phase::Degraded);
    assert!(outcome.message().contains("Citus nodes: worker 1: connection refused"), "{}", outcome.message());
    stack.status = Some(build(&stack, Some(&validated), &outcome, None, &at(300)));
    let unreachable = build(&stack, Some(&validated), &Outcome::DatabaseUnavailable("x".into()), None, &at(400));
    assert_eq!(
        condition(&unreachable).1,
        "NodesFailed",
        "the last word on the nodes stands while the database is away"
    );
}
