use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::labels::{metadata, selector_labels};
use super::{client_name, headless_name};
use crate::validate::ValidatedStack;

fn port() -> ServicePort {
    ServicePort {
        name: Some("postgres".into()),
        port: 5432,
        target_port: Some(IntOrString::String("postgres".into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// Gives the StatefulSet's pod its stable DNS name, ready or not.
pub fn headless_service(stack: &ValidatedStack) -> Service {
    headless_service_selecting(metadata(stack, headless_name(stack)), selector_labels(stack))
}

/// A headless Service giving the pods `selector` picks their stable DNS names, ready or not.
pub(super) fn headless_service_selecting(metadata: ObjectMeta, selector: BTreeMap<String, String>) -> Service {
    Service {
        metadata,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector),
            ports: Some(vec![port()]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// What BI tools and the operator connect to: `<stack>.<namespace>.svc:5432`; under Patroni, the
/// pod it labels primary.
pub fn client_service(stack: &ValidatedStack) -> Service {
    let selector = match stack.highly_available() {
        true => super::ha::role_selector(stack, super::patroni::PRIMARY_ROLE),
        false => selector_labels(stack),
    };
    Service {
        metadata: metadata(stack, client_name(stack)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector),
            ports: Some(vec![port()]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}
