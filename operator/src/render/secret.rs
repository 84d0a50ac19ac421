use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

use super::labels::metadata;
use super::superuser_secret_name;
use crate::validate::ValidatedStack;

pub const USERNAME_KEY: &str = "username";
pub const PASSWORD_KEY: &str = "password";
/// Patroni's streaming and pg_rewind roles, on a stack of more than one instance.
pub const REPLICATION_PASSWORD_KEY: &str = "replication-password";
pub const REWIND_PASSWORD_KEY: &str = "rewind-password";

/// The stack's generated passwords: the superuser's, and Patroni's roles' with more than one
/// instance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StackPasswords {
    pub superuser: String,
    pub replication: String,
    pub rewind: String,
}

/// The superuser Secret. The controller passes the password it already holds, so a password is
/// generated once and never rotated behind the user's back. While the volume is retained on
/// delete, the Secret is too (no owner): the retained data is useless without its password.
pub fn superuser_secret(stack: &ValidatedStack, passwords: &StackPasswords) -> Secret {
    let mut metadata = metadata(stack, superuser_secret_name(stack));
    if stack.spec.postgres.storage.retain_on_delete.unwrap_or(true) {
        metadata.owner_references = None;
    }
    Secret {
        metadata,
        type_: Some("kubernetes.io/basic-auth".into()),
        string_data: Some(string_data(stack, passwords)),
        ..Secret::default()
    }
}

fn string_data(stack: &ValidatedStack, passwords: &StackPasswords) -> BTreeMap<String, String> {
    let mut data = BTreeMap::from([
        (USERNAME_KEY.to_string(), "postgres".to_string()),
        (PASSWORD_KEY.to_string(), passwords.superuser.clone()),
    ]);
    if stack.highly_available() {
        data.insert(REPLICATION_PASSWORD_KEY.into(), passwords.replication.clone());
        data.insert(REWIND_PASSWORD_KEY.into(), passwords.rewind.clone());
    }
    data
}
