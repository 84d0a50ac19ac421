use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

use super::labels::metadata;
use super::superuser_secret_name;
use crate::validate::ValidatedStack;

pub const USERNAME_KEY: &str = "username";
pub const PASSWORD_KEY: &str = "password";

/// The superuser Secret. The controller passes the password it already holds, so a password is
/// generated once and never rotated behind the user's back. While the volume is retained on
/// delete, the Secret is too (no owner): the retained data is useless without its password.
pub fn superuser_secret(stack: &ValidatedStack, password: &str) -> Secret {
    let mut metadata = metadata(stack, superuser_secret_name(stack));
    if stack.spec.postgres.storage.retain_on_delete.unwrap_or(true) {
        metadata.owner_references = None;
    }
    Secret {
        metadata,
        type_: Some("kubernetes.io/basic-auth".into()),
        string_data: Some(BTreeMap::from([
            (USERNAME_KEY.to_string(), "postgres".to_string()),
            (PASSWORD_KEY.to_string(), password.to_string()),
        ])),
        ..Secret::default()
    }
}
