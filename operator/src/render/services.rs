use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
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
    Service {
        metadata: metadata(stack, headless_name(stack)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(stack)),
            ports: Some(vec![port()]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// What BI tools and the operator connect to: `<stack>.<namespace>.svc:5432`.
pub fn client_service(stack: &ValidatedStack) -> Service {
    Service {
        metadata: metadata(stack, client_name(stack)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(stack)),
            ports: Some(vec![port()]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}
