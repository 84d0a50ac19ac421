use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the operator last observed and did.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataWarehouseStackStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending, Provisioning, Converging, Ready, Degraded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Ready, DatabaseAvailable, Converged, ... per Kubernetes API conventions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Converged sources out of declared sources, e.g. `2/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_sources: Option<String>,
    /// pg_cron jobs scheduled and active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_jobs: Option<i32>,
    /// The state of each converged item (source, migration, schedule, partition set, role).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<ItemStatus>,
}

/// The state of one item of the spec.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemStatus {
    /// Item kind: extension, source, migration, partition, schedule, role.
    pub kind: String,
    /// Item name.
    pub name: String,
    /// Converged, Changed or Failed.
    pub state: String,
    /// Why the item failed; never holds secret values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
