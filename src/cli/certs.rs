//! `moat certs ca|server|client|crl`: make and run a small private PKI on disk.
//!
//! Owns the command-line shape and the messages; every certificate and file operation is
//! [`crate::certs`], shared with the dev-cert bootstrap of `moat run`. Files are written into `--out`
//! (default `certs/`): keys 0600, certificates 0644, never overwriting without `--force`. The CA
//! is read from `--ca-cert`/`--ca-key` (default `OUT/ca.crt`, `OUT/ca.key`), so its key can live
//! elsewhere (offline media). `--key-type` picks the algorithm (P-256, P-384, Ed25519);
//! `--reuse-key` renews a certificate with the key already at `OUT/NAME.key` and replaces only
//! the certificate, in one rename. `crl` writes a CRL that revokes certificates by serial or
//! file, keeping the entries of the CRL it replaces, also in one rename (moat reloads it).

use super::out::say;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::certs::{self, CertError, KeySource, KeyType};

/// Default `--days` for a CA.
const CA_DAYS: u32 = 3650;
/// Default `--days` for server and client certificates (the CA/Browser Forum's old maximum).
const LEAF_DAYS: u32 = 825;
/// Default `--days` until a CRL's nextUpdate.
const CRL_DAYS: u32 = 30;

/// `moat certs`: generate a CA, server or client certificate, or a CRL.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to generate.
    #[command(subcommand)]
    pub kind: Kind,
}

/// The certificate to generate.
#[derive(clap::Subcommand, Debug)]
pub enum Kind {
    /// A self-signed CA: writes OUT/ca.crt and OUT/ca.key.
    Ca(CaArgs),
    /// A server certificate signed by OUT/ca.crt: writes OUT/server.crt and OUT/server.key.
    Server(ServerArgs),
    /// A client certificate signed by OUT/ca.crt: writes OUT/NAME.crt and OUT/NAME.key.
    Client(ClientArgs),
    /// A CRL signed by the CA, revoking certificates by serial or file (entries of the CRL at
    /// --out are kept): the file `tls.crls` names.
    Crl(CrlArgs),
}

/// The key of a new certificate.
#[derive(clap::Args, Debug)]
pub struct KeyArgs {
    /// Key algorithm of a new key.
    #[arg(long, value_enum, default_value_t = KeyTypeArg::P256)]
    pub key_type: KeyTypeArg,
    /// Renewal: sign a new certificate for the key already at OUT/NAME.key and replace only
    /// the certificate (no --force needed; the key file is left as it is).
    #[arg(long, conflicts_with = "key_type")]
    pub reuse_key: bool,
}

/// `--key-type`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyTypeArg {
    /// ECDSA P-256 (SHA-256): what every TLS stack supports.
    P256,
    /// ECDSA P-384 (SHA-384).
    P384,
    /// Ed25519.
    Ed25519,
}

impl From<KeyTypeArg> for KeyType {
    fn from(k: KeyTypeArg) -> KeyType {
        match k {
            KeyTypeArg::P256 => KeyType::P256,
            KeyTypeArg::P384 => KeyType::P384,
            KeyTypeArg::Ed25519 => KeyType::Ed25519,
        }
    }
}

/// Where the signing CA is.
#[derive(clap::Args, Debug)]
pub struct CaFiles {
    /// CA certificate (default: OUT/ca.crt).
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// CA private key (default: OUT/ca.key); it need not sit next to the output.
    #[arg(long, value_name = "FILE")]
    pub ca_key: Option<PathBuf>,
}

/// Where files go and whether existing ones may be replaced.
#[derive(clap::Args, Debug)]
pub struct Output {
    /// Directory for the files (created if missing).
    #[arg(long, value_name = "DIR", default_value = "certs")]
    pub out: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

/// `moat certs ca`.
#[derive(clap::Args, Debug)]
pub struct CaArgs {
    /// Subject common name of the CA.
    #[arg(long, value_name = "NAME", default_value = "moat CA")]
    pub cn: String,
    /// Validity in days.
    #[arg(long, value_name = "N", default_value_t = CA_DAYS, value_parser = clap::value_parser!(u32).range(1..))]
    pub days: u32,
    /// Key algorithm, or the existing key.
    #[command(flatten)]
    pub key: KeyArgs,
    /// Output directory and overwrite flag.
    #[command(flatten)]
    pub output: Output,
}

/// `moat certs server`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("names").required(true).multiple(true).args(["dns", "ip"])))]
pub struct ServerArgs {
    /// DNS name for the subjectAltName (repeatable; `*.example.com` allowed).
    #[arg(long, value_name = "NAME")]
    pub dns: Vec<String>,
    /// IP address for the subjectAltName (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub ip: Vec<IpAddr>,
    /// Validity in days.
    #[arg(long, value_name = "N", default_value_t = LEAF_DAYS, value_parser = clap::value_parser!(u32).range(1..))]
    pub days: u32,
    /// Key algorithm, or the existing key.
    #[command(flatten)]
    pub key: KeyArgs,
    /// The signing CA.
    #[command(flatten)]
    pub ca: CaFiles,
    /// Output directory and overwrite flag.
    #[command(flatten)]
    pub output: Output,
}

/// `moat certs client`.
#[derive(clap::Args, Debug)]
pub struct ClientArgs {
    /// Client identity (certificate CN and file name): letters, digits and . _ - @ only.
    #[arg(long, value_name = "NAME")]
    pub cn: String,
    /// Validity in days.
    #[arg(long, value_name = "N", default_value_t = LEAF_DAYS, value_parser = clap::value_parser!(u32).range(1..))]
    pub days: u32,
    /// Key algorithm, or the existing key.
    #[command(flatten)]
    pub key: KeyArgs,
    /// The signing CA.
    #[command(flatten)]
    pub ca: CaFiles,
    /// Output directory and overwrite flag.
    #[command(flatten)]
    pub output: Output,
}

/// `moat certs crl`.
#[derive(clap::Args, Debug)]
pub struct CrlArgs {
    /// Revoke the certificate with this serial, in hex (`0A:1B:…` or `openssl x509 -serial`'s
    /// output; repeatable).
    #[arg(long, value_name = "HEX")]
    pub serial: Vec<String>,
    /// Revoke this certificate (PEM; it must be issued by the CA; repeatable).
    #[arg(long, value_name = "FILE")]
    pub cert: Vec<PathBuf>,
    /// Days until the CRL's nextUpdate: publish a new one before then (`tls.crl_expired`).
    #[arg(long, value_name = "N", default_value_t = CRL_DAYS, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// CA certificate.
    #[arg(long, value_name = "FILE", default_value = "certs/ca.crt")]
    pub ca_cert: PathBuf,
    /// CA private key.
    #[arg(long, value_name = "FILE", default_value = "certs/ca.key")]
    pub ca_key: PathBuf,
    /// The CRL file (PEM); one already there is read and its entries kept, then replaced (with no
    /// --serial or --cert: the same list, signed again with a new nextUpdate).
    #[arg(long, value_name = "FILE", default_value = "certs/crl.pem")]
    pub out: PathBuf,
}

/// Runs `moat certs`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (stem, output, pem, reuse) = match args.kind {
        Kind::Crl(a) => return crl(a),
        Kind::Ca(a) => {
            let existing = existing_key(&a.output.out, "ca", a.key.reuse_key)?;
            let pem = certs::generate_ca_with(&a.cn, a.days, key_source(&a.key, &existing))?;
            ("ca".to_owned(), a.output, pem, a.key.reuse_key)
        }
        Kind::Server(a) => {
            let ca = load_ca(&a.ca, &a.output.out)?;
            let existing = existing_key(&a.output.out, "server", a.key.reuse_key)?;
            let key = key_source(&a.key, &existing);
            let pem = certs::generate_server_with(&ca, &a.dns, &a.ip, a.days, key)?;
            ("server".to_owned(), a.output, pem, a.key.reuse_key)
        }
        Kind::Client(a) => {
            certs::check_client_name(&a.cn)?;
            let ca = load_ca(&a.ca, &a.output.out)?;
            let existing = existing_key(&a.output.out, &a.cn, a.key.reuse_key)?;
            let pem =
                certs::generate_client_with(&ca, &a.cn, a.days, key_source(&a.key, &existing))?;
            (a.cn, a.output, pem, a.key.reuse_key)
        }
    };
    if reuse {
        // A renewal: the key stays as it is, the certificate is replaced in one rename.
        let path = output.out.join(format!("{stem}.crt"));
        certs::replace_file(&path, pem.cert.as_bytes(), 0o644)?;
        return say(format_args!("{}\n", path.display()));
    }
    let written = match certs::write_pem_files(&output.out, &stem, &pem, output.force) {
        Err(e @ CertError::AlreadyExists { .. }) => {
            return Err(anyhow::Error::new(e).context("nothing written; pass --force to overwrite"))
        }
        other => other?,
    };
    for path in written {
        say(format_args!("{}\n", path.display()))?;
    }
    Ok(())
}

/// The CA from `--ca-cert`/`--ca-key`, each defaulting to its file in `dir`.
fn load_ca(files: &CaFiles, dir: &Path) -> anyhow::Result<certs::Pem> {
    let cert = files.ca_cert.clone().unwrap_or_else(|| dir.join("ca.crt"));
    let key = files.ca_key.clone().unwrap_or_else(|| dir.join("ca.key"));
    read_ca(&cert, &key)
}

fn read_ca(cert: &Path, key: &Path) -> anyhow::Result<certs::Pem> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot load the CA from {} (create one with `moat certs ca`, or name it with --ca-cert and --ca-key)",
                path.display()
            )
        })
    };
    Ok(certs::Pem {
        cert: read(cert)?,
        key: read(key)?,
    })
}

/// The key at `dir/stem.key` when a renewal keeps it (empty otherwise).
fn existing_key(dir: &Path, stem: &str, reuse: bool) -> anyhow::Result<String> {
    if !reuse {
        return Ok(String::new());
    }
    let path = dir.join(format!("{stem}.key"));
    std::fs::read_to_string(&path)
        .with_context(|| format!("--reuse-key: cannot read {}", path.display()))
}

fn key_source<'a>(args: &KeyArgs, existing: &'a str) -> KeySource<'a> {
    if args.reuse_key {
        KeySource::Existing(existing)
    } else {
        KeySource::New(args.key_type.into())
    }
}

/// `moat certs crl`: the entries of the CRL at `--out` (if any) plus the new ones, signed and
/// put in place in one rename.
fn crl(a: CrlArgs) -> anyhow::Result<()> {
    let ca = read_ca(&a.ca_cert, &a.ca_key)?;
    let mut entries = match std::fs::read(&a.out) {
        Ok(old) => certs::crl_entries(&ca, &old)
            .with_context(|| format!("cannot extend {}", a.out.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {}", a.out.display()))),
    };
    let now = time::OffsetDateTime::now_utc();
    let mut serials = Vec::new();
    for text in &a.serial {
        serials.push(certs::parse_serial(text)?);
    }
    for path in &a.cert {
        let pem =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let serial =
            certs::serial_issued_by(&ca, &pem).with_context(|| format!("{}", path.display()))?;
        serials.push(serial);
    }
    for serial in serials {
        if !entries.iter().any(|e| e.serial == serial) {
            entries.push(certs::Revoked { serial, at: now });
        }
    }
    let valid_for = time::Duration::days(i64::from(a.days));
    let pem = certs::generate_crl_with(&ca, &entries, valid_for)?;
    certs::replace_file(&a.out, pem.as_bytes(), 0o644)?;
    say(format_args!(
        "{} ({} revoked)\n",
        a.out.display(),
        entries.len()
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(argv: &[&str]) -> Result<Args, clap::Error> {
        Cli::try_parse_from(std::iter::once("certs").chain(argv.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn commands_write_a_pki_and_refuse_to_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("pki");
        let out = out.to_str().unwrap();
        run(parse(&["ca", "--out", out, "--cn", "Test CA", "--days", "5"]).unwrap()).unwrap();
        run(parse(&["server", "--out", out, "--dns", "mqtt.local", "--ip", "::1"]).unwrap())
            .unwrap();
        run(parse(&["client", "--out", out, "--cn", "sensor-1"]).unwrap()).unwrap();
        for f in [
            "ca.crt",
            "ca.key",
            "server.crt",
            "server.key",
            "sensor-1.crt",
            "sensor-1.key",
        ] {
            assert!(Path::new(out).join(f).is_file(), "{f}");
        }
        let again = run(parse(&["client", "--out", out, "--cn", "sensor-1"]).unwrap());
        assert!(format!("{:#}", again.unwrap_err()).contains("--force"));
        run(parse(&["client", "--out", out, "--cn", "sensor-1", "--force"]).unwrap()).unwrap();
        assert!(run(parse(&["client", "--out", out, "--cn", "a+b"]).unwrap()).is_err());
    }

    #[test]
    fn server_needs_a_name_and_days_are_positive() {
        assert!(parse(&["server"]).is_err());
        assert!(parse(&["server", "--ip", "not-an-ip"]).is_err());
        assert!(parse(&["ca", "--days", "0"]).is_err());
        let Kind::Server(s) = parse(&["server", "--dns", "a", "--dns", "b"]).unwrap().kind else {
            panic!("not server");
        };
        assert_eq!(
            (s.dns.len(), s.days, s.output.out),
            (2, LEAF_DAYS, PathBuf::from("certs"))
        );
    }

    #[test]
    fn server_without_a_ca_explains_what_to_do() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().to_str().unwrap();
        let err = run(parse(&["server", "--out", out, "--dns", "x"]).unwrap()).unwrap_err();
        assert!(format!("{err:#}").contains("moat certs ca"));
    }
}
