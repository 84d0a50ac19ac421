//! Resolving `secretKeyRef`s: from a directory laid out like mounted Secrets (`DIR/name/key`)
//! for the CLI, from the Kubernetes API for the controller. Values never reach logs or errors.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::api::SecretKeyRef;
use crate::validate::{FieldError, ValidatedStack, ValidationErrors};

/// Secret values by reference, and the references that could not be read (each with the field
/// that wants it). `Debug` shows the references only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    values: BTreeMap<SecretKeyRef, String>,
    missing: Vec<FieldError>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.values.keys().map(|k| format!("{}/{}", k.name, k.key))).finish()
    }
}

impl Secrets {
    pub fn insert(&mut self, reference: SecretKeyRef, value: String) {
        self.values.insert(reference, value);
    }

    /// The value of a reference that [`resolve`] checked.
    pub fn get(&self, reference: &SecretKeyRef) -> &str {
        self.values.get(reference).map(String::as_str).unwrap_or_default()
    }

    /// The references [`resolve_available`] could not read: the items that name them wait.
    pub fn missing(&self) -> &[FieldError] {
        &self.missing
    }
}

/// Where secret values come from.
pub trait SecretSource {
    /// `Ok(None)` when the Secret has no such key; `Err` with the reason for anything else (the
    /// Secret does not exist, cannot be read).
    fn read(&self, reference: &SecretKeyRef) -> Result<Option<String>, String>;
}

/// The message for a Secret that is not there at all.
pub fn no_such_secret(name: &str) -> String {
    format!("Secret {name:?} does not exist")
}

/// Mounted-Secret layout: the value of `{name, key}` is the file `DIR/name/key`.
pub struct SecretsDir(pub PathBuf);

impl SecretSource for SecretsDir {
    fn read(&self, reference: &SecretKeyRef) -> Result<Option<String>, String> {
        if [&reference.name, &reference.key].iter().any(|p| p.contains('/') || p.starts_with('.')) {
            return Err("Secret names and keys cannot contain '/' or start with '.'".into());
        }
        if !self.0.join(&reference.name).is_dir() {
            return Err(no_such_secret(&reference.name));
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
    fn read(&self, reference: &SecretKeyRef) -> Result<Option<String>, String> {
        Err(no_such_secret(&reference.name))
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
    let secrets = read_where(stack, source, wanted);
    if secrets.missing.is_empty() { Ok(secrets) } else { Err(ValidationErrors(secrets.missing)) }
}

/// Reads every secret the stack needs and records the ones that cannot be read instead of
/// failing: the controller converges everything else, and the items naming them wait.
pub fn resolve_available(stack: &ValidatedStack, source: &dyn SecretSource) -> Secrets {
    read_where(stack, source, |_| true)
}

fn read_where(stack: &ValidatedStack, source: &dyn SecretSource, wanted: impl Fn(&str) -> bool) -> Secrets {
    let mut secrets = Secrets::default();
    for (path, reference) in stack.secret_refs().into_iter().filter(|(path, _)| wanted(path)) {
        let missing = match source.read(&reference) {
            Ok(Some(value)) => {
                secrets.insert(reference, value);
                continue;
            }
            Ok(None) => {
                FieldError { path, message: format!("Secret {:?} has no key {:?}", reference.name, reference.key) }
            }
            Err(message) => FieldError { path, message },
        };
        // Two keys of one absent Secret under one field: said once.
        if !secrets.missing.contains(&missing) {
            secrets.missing.push(missing);
        }
    }
    secrets
}

/// Writes a file that holds a secret: created owner-only (0600) at open, and an existing file
/// narrowed to 0600 before anything is written to it, so the secret is never readable by others.
pub fn write_secret_file(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())
}

/// Creates a directory that holds secrets: owner-only (0700). Missing parents get the usual
/// mode: they may be shared (`.pgwarehouse/`), and the server's user must traverse them.
pub fn create_private_dir(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::create_dir_all(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

/// A fresh password: 24 random bytes from the kernel, hex-encoded.
pub fn random_password() -> std::io::Result<String> {
    let mut bytes = [0u8; 24];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
