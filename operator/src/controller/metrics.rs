//! Prometheus metrics: reconcile duration, errors by reason; stacks by phase and each refresh's
//! last run (read from the controllers' caches at scrape time, so deleted stacks drop out).

use std::sync::Mutex;

use kube::runtime::reflector::Store;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use kube::ResourceExt;

use crate::api::{BackupStatus, DataWarehouseStack, InstanceStatus, NodeStatus, RefreshStatus};

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    reconcile_duration: Histogram,
    errors: Family<Labels, Counter>,
    stacks: Family<Labels, Gauge>,
    refresh_duration: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    refresh_rows: Family<Labels, Gauge>,
    refresh_failed: Family<Labels, Gauge>,
    refresh_stale: Family<Labels, Gauge>,
    backup_age: Family<Labels, Gauge>,
    archive_failures: Family<Labels, Gauge>,
    archive_failing: Family<Labels, Gauge>,
    node_shards: Family<Labels, Gauge>,
    node_bytes: Family<Labels, Gauge>,
    node_active: Family<Labels, Gauge>,
    instance_primary: Family<Labels, Gauge>,
    instance_lag: Family<Labels, Gauge>,
    /// The controllers' caches of stacks (one per watched namespace).
    stores: Mutex<Vec<Store<DataWarehouseStack>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("pgwarehouse");
        let reconcile_duration = Histogram::new(exponential_buckets(0.01, 2.0, 14));
        let errors = Family::<Labels, Counter>::default();
        let stacks = Family::<Labels, Gauge>::default();
        registry.register("reconcile_duration_seconds", "Time of one reconcile", reconcile_duration.clone());
        registry.register("reconcile_errors", "Reconciles that failed, by reason", errors.clone());
        registry.register("stacks", "DataWarehouseStacks by phase", stacks.clone());
        let refresh_duration = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let refresh_rows = Family::<Labels, Gauge>::default();
        let refresh_failed = Family::<Labels, Gauge>::default();
        let refresh_stale = Family::<Labels, Gauge>::default();
        registry.register(
            "refresh_last_duration_seconds",
            "Duration of a refresh's last run",
            refresh_duration.clone(),
        );
        registry.register(
            "refresh_last_rows",
            "Rows a refresh's last run inserted, updated, deleted",
            refresh_rows.clone(),
        );
        registry.register("refresh_last_run_failed", "1 when a refresh's last run failed", refresh_failed.clone());
        registry.register(
            "refresh_stale",
            "1 when a refresh's last success is older than 3 periods",
            refresh_stale.clone(),
        );
        let backup_age = Family::<Labels, Gauge>::default();
        let archive_failures = Family::<Labels, Gauge>::default();
        let archive_failing = Family::<Labels, Gauge>::default();
        registry.register("backup_age_seconds", "Seconds since the newest backup finished", backup_age.clone());
        registry.register(
            "wal_archive_failures",
            "WAL archiving attempts that failed (pg_stat_archiver.failed_count)",
            archive_failures.clone(),
        );
        registry.register("wal_archive_failing", "1 while WAL archiving fails", archive_failing.clone());
        let node_shards = Family::<Labels, Gauge>::default();
        let node_bytes = Family::<Labels, Gauge>::default();
        let node_active = Family::<Labels, Gauge>::default();
        registry.register("node_shards", "Shard placements on a Citus node", node_shards.clone());
        registry.register("node_bytes", "Bytes of the shard placements on a Citus node", node_bytes.clone());
        registry.register(
            "node_active",
            "1 while a Citus node is active in the coordinator's metadata",
            node_active.clone(),
        );
        let instance_primary = Family::<Labels, Gauge>::default();
        let instance_lag = Family::<Labels, Gauge>::default();
        registry.register(
            "instance_primary",
            "1 for the pod Patroni runs as primary, 0 for a replica",
            instance_primary.clone(),
        );
        registry.register("instance_lag_bytes", "Bytes of WAL a replica is behind its primary", instance_lag.clone());
        Metrics {
            instance_primary,
            instance_lag,
            node_shards,
            node_bytes,
            node_active,
            registry,
            backup_age,
            archive_failures,
            archive_failing,
            reconcile_duration,
            errors,
            stacks,
            refresh_duration,
            refresh_rows,
            refresh_failed,
            refresh_stale,
            stores: Mutex::default(),
        }
    }
}

impl Metrics {
    pub fn observe_reconcile(&self, seconds: f64) {
        self.reconcile_duration.observe(seconds);
    }

    pub fn reconcile_failed(&self, reason: &str) {
        self.errors.get_or_create(&vec![("reason".into(), reason.into())]).inc();
    }

    /// Counts the stacks of `store` in the `stacks` gauge.
    pub fn count_stacks_in(&self, store: Store<DataWarehouseStack>) {
        self.stores.lock().expect("metrics lock").push(store);
    }

    /// The OpenMetrics text for `/metrics`.
    pub fn encode(&self) -> String {
        self.stacks.clear();
        for family in [
            &self.refresh_rows,
            &self.refresh_failed,
            &self.refresh_stale,
            &self.backup_age,
            &self.archive_failures,
            &self.archive_failing,
            &self.node_shards,
            &self.node_bytes,
            &self.node_active,
            &self.instance_primary,
            &self.instance_lag,
        ] {
            family.clear();
        }
        self.refresh_duration.clear();
        for store in self.stores.lock().expect("metrics lock").iter() {
            for stack in store.state() {
                let phase = stack.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_else(|| "Pending".into());
                self.stacks.get_or_create(&vec![("phase".into(), phase)]).inc();
                for refresh in stack.status.iter().flat_map(|s| &s.refreshes) {
                    self.record_refresh(&stack, refresh);
                }
                if let Some(backup) = stack.status.as_ref().and_then(|s| s.backup.as_ref()) {
                    self.record_backup(&stack, backup);
                }
                for node in stack.status.iter().flat_map(|s| &s.distributed).flat_map(|d| &d.nodes) {
                    self.record_node(&stack, node);
                }
                for instance in stack.status.iter().flat_map(|s| &s.instances) {
                    self.record_instance(&stack, instance);
                }
            }
        }
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("metrics encode to a String");
        text
    }
}

fn stack_labels(stack: &DataWarehouseStack) -> Labels {
    vec![("namespace".into(), stack.namespace().unwrap_or_default()), ("stack".into(), stack.name_any())]
}

impl Metrics {
    fn record_backup(&self, stack: &DataWarehouseStack, backup: &BackupStatus) {
        let labels = stack_labels(stack);
        let newest = backup.last_backup_time.as_deref().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        if let Some(newest) = newest {
            self.backup_age.get_or_create(&labels).set((chrono::Utc::now() - newest.to_utc()).num_seconds());
        }
        self.archive_failures.get_or_create(&labels).set(backup.archive.failed_count);
        self.archive_failing.get_or_create(&labels).set(i64::from(backup.archive.failing));
    }

    fn record_node(&self, stack: &DataWarehouseStack, node: &NodeStatus) {
        let labels =
            [stack_labels(stack), vec![("node".into(), node.name.clone()), ("role".into(), node.role.clone())]]
                .concat();
        self.node_shards.get_or_create(&labels).set(node.shards);
        self.node_bytes.get_or_create(&labels).set(node.bytes);
        self.node_active.get_or_create(&labels).set(i64::from(node.active));
    }

    fn record_instance(&self, stack: &DataWarehouseStack, instance: &InstanceStatus) {
        let labels = [stack_labels(stack), vec![("pod".into(), instance.pod.clone())]].concat();
        self.instance_primary.get_or_create(&labels).set(i64::from(instance.role == "primary"));
        if let Some(lag) = instance.lag_bytes {
            self.instance_lag.get_or_create(&labels).set(lag);
        }
    }

    fn record_refresh(&self, stack: &DataWarehouseStack, refresh: &RefreshStatus) {
        let labels = [stack_labels(stack), vec![("refresh".into(), refresh.item.name.clone())]].concat();
        if let Some(ms) = refresh.last_run_duration_ms {
            self.refresh_duration.get_or_create(&labels).set(ms as f64 / 1000.0);
        }
        for (kind, rows) in
            [("inserted", refresh.rows_inserted), ("updated", refresh.rows_updated), ("deleted", refresh.rows_deleted)]
        {
            if let Some(rows) = rows {
                let with_kind = [labels.clone(), vec![("kind".into(), kind.into())]].concat();
                self.refresh_rows.get_or_create(&with_kind).set(rows);
            }
        }
        let failed = refresh.last_run_state.as_deref() == Some("failed") || refresh.item.state == "Failed";
        self.refresh_failed.get_or_create(&labels).set(i64::from(failed));
        self.refresh_stale.get_or_create(&labels).set(i64::from(refresh.stale));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use kube::runtime::reflector::store;
    use kube::runtime::watcher::Event;

    fn stack(name: &str, phase: Option<&str>) -> DataWarehouseStack {
        let mut stack = DataWarehouseStack::new(name, Default::default());
        stack.metadata.namespace = Some("ns".into());
        stack.status =
            phase.map(|p| crate::api::DataWarehouseStackStatus { phase: Some(p.into()), ..Default::default() });
        stack
    }

    #[test]
    fn stacks_are_counted_by_their_current_phase() {
        let metrics = Metrics::default();
        let (reader, mut writer) = store::<DataWarehouseStack>();
        for event in [
            Event::Apply(stack("one", Some("Ready"))),
            Event::Apply(stack("two", Some("Ready"))),
            Event::Apply(stack("three", None)),
            Event::Apply(stack("gone", Some("Degraded"))),
            Event::Delete(stack("gone", Some("Degraded"))),
        ] {
            writer.apply_watcher_event(&event);
        }
        metrics.count_stacks_in(reader);
        metrics.reconcile_failed("kube");
        metrics.observe_reconcile(0.2);
        let text = metrics.encode();
        assert!(text.contains("pgwarehouse_stacks{phase=\"Ready\"} 2"), "{text}");
        assert!(text.contains("pgwarehouse_stacks{phase=\"Pending\"} 1"), "{text}");
        assert!(!text.contains("Degraded"), "a deleted stack is not counted: {text}");
        assert!(text.contains("pgwarehouse_reconcile_errors_total{reason=\"kube\"} 1"), "{text}");
        assert!(text.contains("pgwarehouse_reconcile_duration_seconds_count 1"), "{text}");
    }

    #[test]
    fn each_refresh_reports_its_last_run() {
        let metrics = Metrics::default();
        let (reader, mut writer) = store::<DataWarehouseStack>();
        let mut one = stack("one", Some("Degraded"));
        let status = one.status.as_mut().unwrap();
        status.refreshes = vec![
            RefreshStatus {
                item: crate::api::ItemStatus { name: "clusters".into(), state: "Converged".into(), message: None },
                last_run_state: Some("succeeded".into()),
                last_run_duration_ms: Some(1500),
                rows_inserted: Some(7),
                rows_updated: Some(2),
                rows_deleted: Some(0),
                ..Default::default()
            },
            RefreshStatus {
                item: crate::api::ItemStatus { name: "metrics".into(), state: "Converged".into(), message: None },
                last_run_state: Some("failed".into()),
                stale: true,
                ..Default::default()
            },
        ];
        writer.apply_watcher_event(&Event::Apply(one));
        metrics.count_stacks_in(reader);
        let text = metrics.encode();
        let clusters = "namespace=\"ns\",stack=\"one\",refresh=\"clusters\"";
        let metrics_ = "namespace=\"ns\",stack=\"one\",refresh=\"metrics\"";
        for line in [
            format!("pgwarehouse_refresh_last_duration_seconds{{{clusters}}} 1.5"),
            format!("pgwarehouse_refresh_last_rows{{{clusters},kind=\"inserted\"}} 7"),
            format!("pgwarehouse_refresh_last_rows{{{clusters},kind=\"updated\"}} 2"),
            format!("pgwarehouse_refresh_last_run_failed{{{clusters}}} 0"),
            format!("pgwarehouse_refresh_last_run_failed{{{metrics_}}} 1"),
            format!("pgwarehouse_refresh_stale{{{metrics_}}} 1"),
        ] {
            assert!(text.contains(&line), "{line}\n{text}");
        }
    }

    #[test]
    fn each_citus_node_reports_its_shards_and_bytes() {
        let metrics = Metrics::default();
        let (reader, mut writer) = store::<DataWarehouseStack>();
        let mut one = stack("one", Some("Ready"));
        one.status.as_mut().unwrap().distributed = Some(crate::api::DistributedStatus {
            ready_workers: "1/1".into(),
            nodes: vec![NodeStatus {
                name: "one-worker-0.one-workers.ns.svc:5432".into(),
                role: "worker".into(),
                active: true,
                shards: 32,
                bytes: 4096,
            }],
            ..Default::default()
        });
        writer.apply_watcher_event(&Event::Apply(one));
        metrics.count_stacks_in(reader);
        let text = metrics.encode();
        let labels = "namespace=\"ns\",stack=\"one\",node=\"one-worker-0.one-workers.ns.svc:5432\",role=\"worker\"";
        for line in [
            format!("pgwarehouse_node_shards{{{labels}}} 32"),
            format!("pgwarehouse_node_bytes{{{labels}}} 4096"),
            format!("pgwarehouse_node_active{{{labels}}} 1"),
        ] {
            assert!(text.contains(&line), "{line}\n{text}");
        }
    }

    #[test]
    fn each_instance_reports_whether_it_is_primary_and_its_lag() {
        let metrics = Metrics::default();
        let (reader, mut writer) = store::<DataWarehouseStack>();
        let mut one = stack("one", Some("Ready"));
        let instance = |pod: &str, role: &str, lag: Option<i64>| InstanceStatus {
            pod: pod.into(),
            role: role.into(),
            state: "streaming".into(),
            timeline: Some(2),
            lag_bytes: lag,
        };
        one.status.as_mut().unwrap().instances =
            vec![instance("one-0", "primary", None), instance("one-1", "replica", Some(8192))];
        writer.apply_watcher_event(&Event::Apply(one));
        metrics.count_stacks_in(reader);
        let text = metrics.encode();
        for line in [
            "pgwarehouse_instance_primary{namespace=\"ns\",stack=\"one\",pod=\"one-0\"} 1",
            "pgwarehouse_instance_primary{namespace=\"ns\",stack=\"one\",pod=\"one-1\"} 0",
            "pgwarehouse_instance_lag_bytes{namespace=\"ns\",stack=\"one\",pod=\"one-1\"} 8192",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
    }
}
