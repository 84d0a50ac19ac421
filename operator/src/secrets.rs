//! Resolving `secretKeyRef`s: from a directory laid out like mounted Secrets (`DIR/name/key`)
//! for the CLI, from the Kubernetes API for the controller. Values never reach logs or errors.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::api::SecretKeyRef;
use crate::validate::{FieldError, ValidatedStack, ValidationErrors};

/// Secret values by reference. `Debug` shows the references only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets(BTreeMap<SecretKeyRef, String>);

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys().map(|k| format!("{}/{}", k.name, k.key))).finish()
    }
}

impl Secrets {
    pub fn insert(&mut self, reference: SecretKeyRef, value: String) {
        self.0.insert(reference, value);
    }

    /// The value of a reference that [`resolve`] checked.
    pub fn get(&self, reference: &SecretKeyRef) -> &str {
        self.0.get(reference).map(String::as_str).unwrap_or_default()
    }
}

/// Where secret values come from.
pub trait SecretSource {
    /// `Ok(None)` when the Secret or key does not exist; `Err` for anything else.
    fn read(&self, reference: &SecretKeyRef) -> Result<Option<String>, String>;
}

/// Mounted-Secret layout: the value of `{name, key}` is the file `DIR/name/key`.
pub struct SecretsDir(pub PathBuf);

impl SecretSource for SecretsDir {
    fn read(&self, reference: &SecretKeyRef) -> Result<Option<String>, String> {
        if [&reference.name, &reference.key].iter().any(|p| p.contains('/') || p.starts_with('.')) {
            return Err("Secret names and keys cannot contain '/' or start with '.'".into());
        }
        let path = self.0.join(&reference.name).join(&reference.key);
        match std::fs::read_to_string(&path) {
            // Files written with `echo` end in a newline that is not part of the value.
            Ok(value) => Ok(Some(value.strip_suffix('\n').unwrap_or(&value).to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }
}

/// No secrets available: every reference is reported missing.
pub struct NoSecrets;

impl SecretSource for NoSecrets {
    fn read(&self, _: &SecretKeyRef) -> Result<Option<String>, String> {
        Ok(None)
    }
}

/// Reads every secret the stack needs; reports every missing one with the field that wants it.
pub fn resolve(stack: &ValidatedStack, source: &dyn SecretSource) -> Result<Secrets, ValidationErrors> {
    resolve_where(stack, source, |_| true)
}

/// Reads only the backup repositories' credentials (what backing up and restoring need).
pub fn resolve_repositories(stack: &ValidatedStack, source: &dyn SecretSource) -> Result<Secrets, ValidationErrors> {
    resolve_where(stack, source, |path| path.starts_with("spec.backup.") || path.starts_with("spec.bootstrap."))
}

fn resolve_where(
    stack: &ValidatedStack,
    source: &dyn SecretSource,
    wanted: impl Fn(&str) -> bool,
) -> Result<Secrets, ValidationErrors> {
    let mut secrets = Secrets::default();
    let mut errors = Vec::new();
    for (path, reference) in stack.secret_refs().into_iter().filter(|(path, _)| wanted(path)) {
        match source.read(&reference) {
            Ok(Some(value)) => secrets.insert(reference, value),
            Ok(None) => errors.push(FieldError {
                path,
                message: format!("Secret {:?} has no key {:?}", reference.name, reference.key),
            }),
            Err(message) => errors.push(FieldError { path, message }),
        }
    }
    if errors.is_empty() { Ok(secrets) } else { Err(ValidationErrors(errors)) }
}

/// A fresh password: 24 random bytes from the kernel, hex-encoded.
pub fn random_password() -> std::io::Result<String> {
    let mut bytes = [0u8; 24];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
