//! Reading moat.yaml and the policy files from disk, then handing their text to the pure parsers.
//!
//! This is the only place configuration touches the filesystem, so the rules about files live
//! here: a `policies:` entry is a file, or a folder meaning its `*.yaml`/`*.yml` files (sorted,
//! not recursive, hidden files skipped); every file must be a regular file (a FIFO would hang a
//! read), at most [`MAX_FILE_BYTES`] long, and UTF-8 (the same holds for the mosquitto password
//! files a policy names with `password_file:`). Every error names the path. Used by
//! `moat check`, `moat run` at start-up, and reload.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{self, Config, ConfigError};
use crate::policy::{self, Policy, PolicyError, PolicySource};

/// Largest config or policy file read: far above any real file, small enough that a wrong path
/// (a log, a disk image) fails fast.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Why loading failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file or folder could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// What we tried to read.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// Not a regular file or folder (device, FIFO, socket).
    #[error("{}: not a regular file or folder", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// Larger than [`MAX_FILE_BYTES`].
    #[error("{}: larger than {MAX_FILE_BYTES} bytes, not a configuration file", path.display())]
    TooLarge {
        /// The path.
        path: PathBuf,
    },
    /// Not UTF-8 text.
    #[error("{}: not UTF-8 text (byte {valid_up_to} is invalid)", path.display())]
    NotUtf8 {
        /// The path.
        path: PathBuf,
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
    /// moat.yaml is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A policy file is invalid.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A file of the shadow set (`shadow_policies:`) could not be loaded. At start-up and in
    /// `moat check` this fails like a broken policy; at reload the enforced set still loads and
    /// the running shadow set stays (`ops/reload.rs`).
    #[error("shadow policy set: {0}")]
    Shadow(Box<LoadError>),
}

/// Reads and validates moat.yaml.
pub fn load_config(path: &Path) -> Result<Config, LoadError> {
    let text = read_text(path)?;
    Ok(config::parse(&text, path)?)
}

/// Reads and compiles the policy files `cfg.policies` names, with the mosquitto password files
/// they name (`password_file:`, relative to the policy file), and the shadow set
/// `cfg.shadow_policies` names, compiled the same way and carried in the snapshot
/// ([`Policy::shadow`]). Either set broken is an error.
pub fn load_policy(cfg: &Config) -> Result<Policy, LoadError> {
    Ok(load_enforced(cfg)?.with_shadow(load_shadow(cfg)?))
}

/// [`load_policy`] without the shadow set.
pub fn load_enforced(cfg: &Config) -> Result<Policy, LoadError> {
    load_set(&cfg.policies)
}

/// The shadow set `cfg.shadow_policies` names, compiled exactly like the enforced one; `None`
/// when it names none. Errors are [`LoadError::Shadow`].
pub fn load_shadow(cfg: &Config) -> Result<Option<Arc<Policy>>, LoadError> {
    if cfg.shadow_policies.is_empty() {
        return Ok(None);
    }
    match load_set(&cfg.shadow_policies) {
        Ok(shadow) => Ok(Some(Arc::new(shadow))),
        Err(error) => Err(LoadError::Shadow(Box::new(error))),
    }
}

fn load_set(entries: &[PathBuf]) -> Result<Policy, LoadError> {
    let read = |path: PathBuf| read_text(&path).map(|text| PolicySource { path, text });
    let sources = policy_files(entries)?
        .into_iter()
        .map(read)
        .collect::<Result<Vec<_>, _>>()?;
    let passwords = policy::password_files(&sources)?
        .into_iter()
        .map(read)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(policy::compile_with_files(&sources, &passwords)?)
}

/// Expands `policies:` entries into files: a file stays, a folder becomes its `*.yaml` and
/// `*.yml` files (sorted by name, not recursive, names starting with `.` skipped). A file named
/// twice is read once. A missing entry is an error: a typo must not silently drop rules.
pub fn policy_files(entries: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    for entry in entries {
        let meta = fs::metadata(entry).map_err(|source| io_error(entry, source))?;
        let found = if meta.is_dir() {
            folder_files(entry)?
        } else if meta.is_file() {
            vec![entry.clone()]
        } else {
            return Err(LoadError::NotAFile {
                path: entry.clone(),
            });
        };
        for file in found {
            if seen.insert(file.clone()) {
                files.push(file);
            }
        }
    }
    Ok(files)
}

/// TLS files named in the config that do not exist (server cert and key, client CA, CRLs), for
/// `moat check` to report. Existence only; their contents are the TLS layer's business.
pub fn missing_tls_files(cfg: &Config) -> Vec<PathBuf> {
    let tls = &cfg.tls;
    [&tls.cert, &tls.key]
        .into_iter()
        .chain(tls.client_ca.as_ref())
        .chain(&tls.crls)
        .filter(|path| !path.is_file())
        .cloned()
        .collect()
}

fn folder_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(|source| io_error(dir, source))? {
        let entry = entry.map_err(|source| io_error(dir, source))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        if name.starts_with('.') || !yaml {
            continue;
        }
        // Follows symlinks: a linked policy file is a policy file.
        let meta = fs::metadata(&path).map_err(|source| io_error(&path, source))?;
        if meta.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads a regular UTF-8 file of at most [`MAX_FILE_BYTES`].
fn read_text(path: &Path) -> Result<String, LoadError> {
    let meta = fs::metadata(path).map_err(|source| io_error(path, source))?;
    if !meta.is_file() {
        return Err(LoadError::NotAFile {
            path: path.to_owned(),
        });
    }
    let file = fs::File::open(path).map_err(|source| io_error(path, source))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| io_error(path, source))?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_FILE_BYTES {
        return Err(LoadError::TooLarge {
            path: path.to_owned(),
        });
    }
    String::from_utf8(bytes).map_err(|err| LoadError::NotUtf8 {
        path: path.to_owned(),
        valid_up_to: err.utf8_error().valid_up_to(),
    })
}

fn io_error(path: &Path, source: io::Error) -> LoadError {
    LoadError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn folder_expands_to_sorted_yaml_files_only() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "b.yml", "");
        write(dir.path(), "a.yaml", "");
        write(dir.path(), "notes.txt", "");
        write(dir.path(), ".hidden.yaml", "");
        std::fs::create_dir(dir.path().join("sub.yaml")).unwrap();
        let files = policy_files(&[dir.path().to_owned()]).unwrap();
        assert_eq!(
            files,
            vec![dir.path().join("a.yaml"), dir.path().join("b.yml")]
        );
    }

    #[test]
    fn a_file_named_twice_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.yaml", "");
        let files = policy_files(&[dir.path().to_owned(), a.clone()]).unwrap();
        assert_eq!(files, vec![a]);
    }

    #[test]
    fn missing_policy_path_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope/");
        let err = policy_files(&[missing]).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn load_config_and_policy_end_to_end() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        write(&dir.path().join("policies"), "p.yaml", "anonymous: true\n");
        let cfg_path = write(
            dir.path(),
            "moat.yaml",
            "listeners: [{ name: m, kind: tls, bind: \"127.0.0.1:8883\" }]\n",
        );
        let cfg = load_config(&cfg_path).unwrap();
        assert_eq!(cfg.policies, vec![dir.path().join("policies/")]);
        let policy = load_policy(&cfg).unwrap();
        assert!(policy.anonymous_allowed());
        assert_eq!(
            policy.files(),
            [dir.path().join("policies/").join("p.yaml")]
        );
        assert_eq!(missing_tls_files(&cfg).len(), 2);
    }

    #[test]
    fn password_files_are_read_relative_to_their_policy_file() {
        let dir = tempfile::tempdir().unwrap();
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(policies.join("secrets")).unwrap();
        write(
            &policies,
            "p.yaml",
            "password_file: secrets/passwd\nusers:\n  - { name: alice, groups: [ops] }\n",
        );
        // mosquitto_passwd 2.0.11 output for alice / secret.
        write(
            &policies.join("secrets"),
            "passwd",
            "alice:$7$101$+4/UiSKrSNGiQPEL$6WCEn6uTfcuFnYYWUkHoxWOiBVwkRi1WbDzWznl64R00pUdUv71/kGMTT1ZV6YenF18j6dHxydhnXzzHqaBpPA==\n",
        );
        let cfg_path = write(
            dir.path(),
            "moat.yaml",
            "listeners: [{ name: m, kind: tls, bind: \"127.0.0.1:8883\" }]\n",
        );
        let cfg = load_config(&cfg_path).unwrap();
        let policy = load_policy(&cfg).unwrap();
        assert_eq!(policy.groups_of("alice"), Some(&["ops".to_string()][..]));
        let creds = policy::Credentials {
            username: Some("alice"),
            password: Some(b"secret"),
            cert_cn: None,
        };
        assert!(policy
            .authenticate(&creds, &policy::AuthnOptions::default())
            .is_allowed());
        // A bad line names the password file and the line.
        write(&policies.join("secrets"), "passwd", "alice:$7$101$x$y\n");
        let err = load_policy(&cfg).unwrap_err().to_string();
        assert!(err.contains("secrets/passwd:1:1:"), "{err}");
        // A missing password file names its path.
        std::fs::remove_file(policies.join("secrets/passwd")).unwrap();
        let err = load_policy(&cfg).unwrap_err().to_string();
        assert!(err.contains("secrets/passwd"), "{err}");
    }

    #[test]
    fn config_errors_keep_their_location() {
        let dir = tempfile::tempdir().unwrap();
        let cfg_path = write(dir.path(), "moat.yaml", "listeners: []\n");
        let err = load_config(&cfg_path).unwrap_err();
        let expected = format!("{}:1:12: ", cfg_path.display());
        assert!(err.to_string().starts_with(&expected), "{err}");
    }

    #[test]
    fn non_utf8_and_non_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, b"a: \xff\n").unwrap();
        assert!(matches!(load_config(&path), Err(LoadError::NotUtf8 { .. })));
        assert!(matches!(
            load_config(dir.path()),
            Err(LoadError::NotAFile { .. })
        ));
    }
}
