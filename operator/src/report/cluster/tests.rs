use chrono::TimeZone;

use super::*;

const STACK: &str = r#"
apiVersion: pgwarehouse.dev/v1alpha1
kind: DataWarehouseStack
metadata: {name: analytics, namespace: data, generation: 4}
spec:
  template: datawarehouse
  sources:
    - {name: control_plane, wrapper: postgres_fdw, options: {host: cp}}
    - {name: clerk, wrapper: clerk_fdw}
  schedules:
    - {name: update-clusters, schedule: "*/5 * * * *", command: SELECT 1}
    - {name: nightly, schedule: "0 3 * * *", command: SELECT 2, active: false}
  partitions:
    - {table: metric_values, column: time, interval: 1 day, epoch: seconds, retention: 30 days}
  roles:
    - {name: analyst, passwordSecretRef: {name: analyst, key: password}}
status:
  observedGeneration: 3
  phase: Degraded
  conditions:
    - {type: Ready, status: "False", reason: ItemsFailed, message: "1 item(s) failed", lastTransitionTime: "2026-11-25T10:00:00Z"}
  endpoint: {host: analytics.data.svc, port: 5432, database: warehouse, secretName: analytics-superuser}
  sources:
    - {name: control_plane, state: Converged, foreignTables: 3}
    - {name: clerk, state: Failed, message: "clerk_fdw: 401 Unauthorized", foreignTables: 0}
  schedules:
    - {name: update-clusters, state: Converged, jobId: 7, lastRunStart: "2026-11-25T11:55:00+00:00", lastRunStatus: succeeded}
    - {name: nightly, state: Converged, jobId: 8}
  partitions:
    - {name: public.metric_values, state: Converged, partitions: 9, oldest: metric_values_p2026_11_21, newest: metric_values_p2026_11_29}
"#;

fn report() -> StackReport {
    let stack: DataWarehouseStack = serde_saphyr::from_str(STACK).unwrap();
    cluster_report(&stack, Utc.with_ymd_and_hms(2026, 11, 25, 12, 1, 0).unwrap())
}

#[test]
fn the_cluster_report_reads_like_local_status() {
    let mut text = Vec::new();
    report().print(&mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    let expected = r#"
Warehouse "analytics" in namespace data: postgres://postgres@analytics.data.svc:5432/warehouse
  superuser password: Secret data/analytics-superuser, key password
  phase: Degraded (generation 4 not yet observed; this is generation 3)
  Ready=False (ItemsFailed): 1 item(s) failed

SOURCES
  control_plane            postgres_fdw     3 foreign table(s)
  clerk                    clerk_fdw        0 foreign table(s)  FAILED: clerk_fdw: 401 Unauthorized

JOBS
  update-clusters                  */5 * * * *    active   last: succeeded at 2026-11-25 11:55:00 UTC; next: 2026-11-25 12:05:00 UTC
  nightly                          0 3 * * *      paused   last: not run yet; next: 2026-11-26 03:00:00 UTC

PARTITIONS
  public.metric_values             9 partition(s), metric_values_p2026_11_21 .. metric_values_p2026_11_29; retention 30 days

FOR BI TOOLS
  postgres://analyst@analytics.data.svc:5432/warehouse (password: Secret analyst/password)
"#;
    assert_eq!(text, expected);
}

#[test]
fn the_json_report_has_the_same_facts() {
    let json = serde_json::to_value(report()).unwrap();
    assert_eq!(json["sources"][1]["failure"], "clerk_fdw: 401 Unauthorized");
    assert_eq!(json["jobs"][0]["nextRun"], "2026-11-25T12:05:00Z");
    assert_eq!(json["conditions"][0]["type"], "Ready");
    assert_eq!(json["partitions"][0]["retention"], "30 days");
}

#[test]
fn a_stack_the_operator_has_not_seen_says_so() {
    let stack: DataWarehouseStack = serde_saphyr::from_str(
        "apiVersion: pgwarehouse.dev/v1alpha1\nkind: DataWarehouseStack\nmetadata: {name: w}\nspec: {}\n",
    )
    .unwrap();
    let report = cluster_report(&stack, Utc::now());
    assert_eq!(report.phase.as_deref(), Some("Pending (the operator has not reported yet)"));
    assert_eq!(report.url, "(not provisioned yet)");
}

#[test]
fn a_distributed_stack_lists_its_nodes() {
    let stack: DataWarehouseStack = serde_saphyr::from_str(
        "apiVersion: pgwarehouse.dev/v1alpha1\nkind: DataWarehouseStack\nmetadata: {name: w, namespace: ns}\n\
         spec: {distributed: {workers: 1}}\nstatus:\n  phase: Ready\n  distributed:\n    readyWorkers: 1/1\n    nodes:\n\
         \x20   - {name: 'w-0.w-headless.ns.svc:5432', role: coordinator, active: true, shards: 0, bytes: 0}\n\
         \x20   - {name: 'w-worker-0.w-workers.ns.svc:5432', role: worker, active: true, shards: 32, bytes: 262144}\n",
    )
    .unwrap();
    let mut text = Vec::new();
    cluster_report(&stack, Utc::now()).print(&mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains(
            "\nNODES\n  w-0.w-headless.ns.svc:5432   coordinator  active    0 shard(s), 0 bytes\n  \
             w-worker-0.w-workers.ns.svc:5432 worker       active    32 shard(s), 262144 bytes\n"
        ),
        "{text}"
    );
}

#[test]
fn partition_storage_comes_from_the_status() {
    let mut stack: DataWarehouseStack = serde_saphyr::from_str(STACK).unwrap();
    let partitions = &mut stack.status.as_mut().unwrap().partitions[0];
    (partitions.columnar_partitions, partitions.columnar_bytes, partitions.heap_bytes) = (2, 16384, 98304);
    let mut text = Vec::new();
    cluster_report(&stack, Utc::now()).print(&mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("retention 30 days; 2 columnar (16384 bytes), heap 98304 bytes\n"), "{text}");
}
