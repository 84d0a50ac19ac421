//! The CRD as YAML, generated from the Rust types; `crds/` holds a checked-in copy.

use kube::CustomResourceExt;

use crate::api::DataWarehouseStack;

pub fn crd_yaml() -> String {
    serde_saphyr::to_string(&DataWarehouseStack::crd()).expect("the CRD serializes")
}

#[cfg(test)]
mod tests {
    #[test]
    fn checked_in_crd_matches_the_types() {
        let checked_in = include_str!("../../crds/datawarehousestacks.pgwarehouse.dev.yaml");
        assert!(
            checked_in == super::crd_yaml(),
            "crds/datawarehousestacks.pgwarehouse.dev.yaml is stale: run `cargo run -- crd > crds/datawarehousestacks.pgwarehouse.dev.yaml`"
        );
    }
}
