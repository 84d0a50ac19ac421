//! Prometheus metrics: reconcile duration, errors by reason, stacks by phase.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    reconcile_duration: Histogram,
    errors: Family<Labels, Counter>,
    stacks: Family<Labels, Gauge>,
    /// The last phase of every stack, by `namespace/name`, to count stacks per phase.
    phases: Mutex<BTreeMap<String, String>>,
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
        Metrics { registry, reconcile_duration, errors, stacks, phases: Mutex::default() }
    }
}

impl Metrics {
    pub fn observe_reconcile(&self, seconds: f64) {
        self.reconcile_duration.observe(seconds);
    }

    pub fn reconcile_failed(&self, reason: &str) {
        self.errors.get_or_create(&vec![("reason".into(), reason.into())]).inc();
    }

    pub fn set_phase(&self, stack: &str, phase: &str) {
        let mut phases = self.phases.lock().expect("metrics lock");
        phases.insert(stack.to_string(), phase.to_string());
        self.stacks.clear();
        for phase in phases.values() {
            self.stacks.get_or_create(&vec![("phase".into(), phase.clone())]).inc();
        }
    }

    pub fn forget(&self, stack: &str) {
        self.phases.lock().expect("metrics lock").remove(stack);
    }

    /// The OpenMetrics text for `/metrics`.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("metrics encode to a String");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_are_counted_by_their_latest_phase() {
        let metrics = Metrics::default();
        metrics.set_phase("a/one", "Provisioning");
        metrics.set_phase("a/two", "Ready");
        metrics.set_phase("a/one", "Ready");
        metrics.reconcile_failed("kube");
        metrics.observe_reconcile(0.2);
        let text = metrics.encode();
        assert!(text.contains("pgwarehouse_stacks{phase=\"Ready\"} 2"), "{text}");
        assert!(!text.contains("phase=\"Provisioning\""), "{text}");
        assert!(text.contains("pgwarehouse_reconcile_errors_total{reason=\"kube\"} 1"), "{text}");
        assert!(text.contains("pgwarehouse_reconcile_duration_seconds_count 1"), "{text}");
    }
}
