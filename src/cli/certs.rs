//! `moat certs ca|server|client`: make a small private PKI on disk.
//!
//! Owns the command-line shape and the messages; every certificate and file operation is
//! [`crate::certs`], shared with the dev-cert bootstrap of `moat run`. Files are written into `--out`
//! (default `certs/`): keys 0600, certificates 0644, never overwriting without `--force`.

use super::out::say;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::certs::{self, CertError};

/// Default `--days` for a CA.
const CA_DAYS: u32 = 3650;
/// Default `--days` for server and client certificates (the CA/Browser Forum's old maximum).
const LEAF_DAYS: u32 = 825;

/// `moat certs`: generate a CA, server or client certificate (ECDSA P-256).
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
    /// Output directory and overwrite flag.
    #[command(flatten)]
    pub output: Output,
}

/// Runs `moat certs`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (stem, output, pem) = match args.kind {
        Kind::Ca(a) => (
            "ca".to_owned(),
            a.output,
            certs::generate_ca(&a.cn, a.days)?,
        ),
        Kind::Server(a) => {
            let ca = load_ca(&a.output.out)?;
            let pem = certs::generate_server(&ca, &a.dns, &a.ip, a.days)?;
            ("server".to_owned(), a.output, pem)
        }
        Kind::Client(a) => {
            certs::check_client_name(&a.cn)?;
            let ca = load_ca(&a.output.out)?;
            let pem = certs::generate_client(&ca, &a.cn, a.days)?;
            (a.cn, a.output, pem)
        }
    };
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

fn load_ca(dir: &Path) -> anyhow::Result<certs::Pem> {
    certs::read_pem_files(dir, "ca").with_context(|| {
        format!(
            "cannot load the CA from {} (create one with `moat certs ca`)",
            dir.display()
        )
    })
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
