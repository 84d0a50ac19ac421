//! Prometheus metrics: reconcile duration, errors by reason, stacks by phase (counted from the
//! controllers' caches at scrape time, so deleted stacks drop out).

use std::sync::Mutex;

use kube::runtime::reflector::Store;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::DataWarehouseStack;

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    reconcile_duration: Histogram,
    errors: Family<Labels, Counter>,
    stacks: Family<Labels, Gauge>,
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
        Metrics { registry, reconcile_duration, errors, stacks, stores: Mutex::default() }
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
        for store in self.stores.lock().expect("metrics lock").iter() {
            for stack in store.state() {
                let phase = stack.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_else(|| "Pending".into());
                self.stacks.get_or_create(&vec![("phase".into(), phase)]).inc();
            }
        }
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("metrics encode to a String");
        text
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
}
