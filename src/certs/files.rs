//! Certificate files: `dir/NAME.crt` and `dir/NAME.key`, written with safe permissions and never
//! over an existing file unless asked to, read back, and the dev set `moat run` bootstraps.
//!
//! Keys are created 0600 from the first byte (O_EXCL, no symlink followed), certificates 0644;
//! every output is checked before any is written, so a refusal leaves the folder as it was.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::generate::{generate_ca, generate_client, generate_server};
use super::{check_client_name, CertError, Pem};

/// The name of the client certificate made by [`ensure_dev_certs`].
pub const DEV_CLIENT: &str = "dev-client";

/// Writes `dir/stem.crt` (0644) and `dir/stem.key` (0600), creating `dir` if needed. Without
/// `force`, fails before writing anything when either file exists. Returns `[crt, key]`.
pub fn write_pem_files(
    dir: &Path,
    stem: &str,
    pem: &Pem,
    force: bool,
) -> Result<[PathBuf; 2], CertError> {
    check_client_name(stem)?;
    let (crt, key) = pem_paths(dir, stem);
    if !force {
        for path in [&crt, &key] {
            if exists(path)? {
                return Err(CertError::AlreadyExists { path: path.clone() });
            }
        }
    }
    fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
    write_new(&key, pem.key.as_bytes(), 0o600, force)?;
    write_new(&crt, pem.cert.as_bytes(), 0o644, force)?;
    Ok([crt, key])
}

/// Puts `data` at `path` (mode `mode`) in one step: written to a temporary file beside it, then
/// renamed over it, so a running moat watching the folder never reads half a certificate or CRL.
pub fn replace_file(path: &Path, data: &[u8], mode: u32) -> Result<(), CertError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
    }
    write_new(&tmp, data, mode, true)?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err("replace", path)(e)
    })
}

/// Reads `dir/stem.crt` and `dir/stem.key`.
pub fn read_pem_files(dir: &Path, stem: &str) -> Result<Pem, CertError> {
    let (crt, key) = pem_paths(dir, stem);
    let cert = fs::read_to_string(&crt).map_err(io_err("read", &crt))?;
    let key = fs::read_to_string(&key).map_err(io_err("read", &key))?;
    Ok(Pem { cert, key })
}

/// Dev bootstrap for `moat run`: when any of `ca.crt`, `ca.key`, `server.crt`, `server.key` is missing
/// from `dir`, creates what is missing — a CA (unless both CA files exist, then it is reused), a
/// server certificate for `localhost`, `127.0.0.1`, `::1`, and a client certificate
/// [`DEV_CLIENT`] (unless both its files exist). Returns the files written: empty when nothing was
/// missing. Never overwrites: half a pair, or a server/client certificate without its CA, is an
/// [`CertError::IncompleteSet`] error, checked before anything is written.
pub fn ensure_dev_certs(dir: &Path) -> Result<Vec<PathBuf>, CertError> {
    let ca = pair_state(dir, "ca")?;
    let server = pair_state(dir, "server")?;
    let client = pair_state(dir, DEV_CLIENT)?;
    if ca && server {
        return Ok(Vec::new());
    }
    if !ca {
        for (present, stem) in [(server, "server"), (client, DEV_CLIENT)] {
            if present {
                let (crt, _) = pem_paths(dir, stem);
                return Err(CertError::IncompleteSet {
                    present: crt,
                    missing: dir.join("ca.key"),
                });
            }
        }
    }
    let mut written = Vec::new();
    let ca_pem = if ca {
        read_pem_files(dir, "ca")?
    } else {
        let pem = generate_ca("moat dev CA", 3650)?;
        written.extend(write_pem_files(dir, "ca", &pem, false)?);
        pem
    };
    let dns = ["localhost".to_owned()];
    let ips = [
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
    ];
    let server_pem = generate_server(&ca_pem, &dns, &ips, 825)?;
    written.extend(write_pem_files(dir, "server", &server_pem, false)?);
    if !client {
        let client_pem = generate_client(&ca_pem, DEV_CLIENT, 825)?;
        written.extend(write_pem_files(dir, DEV_CLIENT, &client_pem, false)?);
    }
    Ok(written)
}

// === helpers ===

fn pem_paths(dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    )
}

/// Whether both files of `dir/stem.{crt,key}` exist; an error when only one does.
fn pair_state(dir: &Path, stem: &str) -> Result<bool, CertError> {
    let (crt, key) = pem_paths(dir, stem);
    match (exists(&crt)?, exists(&key)?) {
        (true, true) => Ok(true),
        (false, false) => Ok(false),
        (true, false) => Err(CertError::IncompleteSet {
            present: crt,
            missing: key,
        }),
        (false, true) => Err(CertError::IncompleteSet {
            present: key,
            missing: crt,
        }),
    }
}

/// Whether anything (even a dangling symlink) is at `path`.
fn exists(path: &Path) -> Result<bool, CertError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(CertError::Io {
            action: "inspect",
            path: path.to_owned(),
            source: e,
        }),
    }
}

/// Creates `path` with `mode` from the first byte (O_EXCL, so no symlink is followed and no older,
/// wider permissions survive). With `overwrite`, an existing file is removed first.
fn write_new(path: &Path, data: &[u8], mode: u32, overwrite: bool) -> Result<(), CertError> {
    if overwrite {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err("remove", path)(e)),
            _ => {}
        }
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => CertError::AlreadyExists {
                path: path.to_owned(),
            },
            _ => io_err("create", path)(e),
        })?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(io_err("write", path))
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl Fn(io::Error) -> CertError + 'a {
    move |source| CertError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}
