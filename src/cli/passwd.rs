//! `moat passwd [USER]`: hash a password for `moat.yaml`.
//!
//! Owns reading a password safely (no echo on a terminal, asked twice; one line from a pipe) and
//! printing an argon2id PHC string, or a ready-to-paste `users:` entry when USER is given. Hashing
//! uses argon2 0.5 defaults (argon2id v19, m=19456 KiB, t=2, p=1) with a 16-byte salt from ring's
//! system RNG; verification lives in `policy/authn.rs`. Echo is turned off with `stty` rather than a
//! terminal crate, so no dependency is added and no unsafe code runs here.

use super::out::say;
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};
use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::Argon2;
use ring::rand::{SecureRandom, SystemRandom};

/// Longest password accepted, in bytes (the line that holds it may be one newline longer).
const MAX_PASSWORD_LEN: usize = 4096;

/// `moat passwd`: read a password on stdin and print its argon2id hash.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print a `users:` YAML entry for this user instead of the bare hash.
    #[arg(value_name = "USER")]
    pub user: Option<String>,
}

/// Runs `moat passwd`.
pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(user) = &args.user {
        check_user(user)?;
    }
    let stdin = io::stdin();
    let password = if stdin.is_terminal() {
        let first = prompt_hidden("Password: ")?;
        let second = prompt_hidden("Confirm password: ")?;
        if first != second {
            bail!("passwords do not match");
        }
        first
    } else {
        read_password_line(&mut stdin.lock())?
    };
    if password.is_empty() {
        bail!("refusing an empty password");
    }
    let phc = hash_password(&password)?;
    match &args.user {
        Some(user) => say(format_args!("{}\n", yaml_entry(user, &phc))),
        None => say(format_args!("{phc}\n")),
    }
}

/// An argon2id PHC string for `password` with a fresh random salt.
pub fn hash_password(password: &[u8]) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| anyhow::anyhow!("the system random number generator failed"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("argon2 salt: {e}"))?;
    let hash = Argon2::default()
        .hash_password(password, &salt)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    Ok(hash.to_string())
}

/// Reads one line, bounded, and strips only its line ending (`\n` or `\r\n`); other whitespace is
/// part of the password.
fn read_password_line(input: &mut impl BufRead) -> anyhow::Result<Vec<u8>> {
    let mut line = Vec::new();
    let limit = u64::try_from(MAX_PASSWORD_LEN + 2).unwrap_or(u64::MAX);
    input
        .take(limit)
        .read_until(b'\n', &mut line)
        .context("cannot read the password from stdin")?;
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    if line.len() > MAX_PASSWORD_LEN {
        bail!("password longer than {MAX_PASSWORD_LEN} bytes");
    }
    Ok(line)
}

/// Prompts on stderr and reads one line from the terminal with echo off, restoring the terminal
/// afterwards (also on error). Refuses to read if echo cannot be turned off.
fn prompt_hidden(prompt: &str) -> anyhow::Result<Vec<u8>> {
    let mut stderr = io::stderr();
    write!(stderr, "{prompt}")?;
    stderr.flush()?;
    let echo = EchoOff::new()?;
    let line = read_password_line(&mut io::stdin().lock());
    drop(echo);
    writeln!(stderr)?;
    line
}

/// Terminal echo turned off with `stty`; the saved settings are restored on drop.
struct EchoOff {
    /// `stty -g` output: the settings to put back.
    saved: String,
}

// === impl EchoOff ===

impl EchoOff {
    fn new() -> anyhow::Result<Self> {
        let hint = "cannot turn off terminal echo with stty; pipe the password on stdin instead";
        let out = Command::new("stty")
            .arg("-g")
            .stdin(Stdio::inherit())
            .stderr(Stdio::null())
            .output()
            .context(hint)?;
        if !out.status.success() {
            bail!(hint);
        }
        let saved = String::from_utf8(out.stdout)
            .context(hint)?
            .trim()
            .to_owned();
        let off = stty(&["-echo"]).context(hint)?;
        if !off {
            bail!(hint);
        }
        Ok(Self { saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if !matches!(stty(&[self.saved.as_str()]), Ok(true)) {
            let _ = stty(&["echo"]);
        }
    }
}

/// Runs `stty ARGS` on the inherited terminal; `Ok(true)` when it succeeded.
fn stty(args: &[&str]) -> io::Result<bool> {
    let status = Command::new("stty")
        .args(args)
        .stdin(Stdio::inherit())
        .status()?;
    Ok(status.success())
}

/// Refuses user names that cannot be an MQTT user name or a YAML line: empty, or with control
/// characters (NUL included).
fn check_user(user: &str) -> anyhow::Result<()> {
    if user.is_empty() || user.chars().any(char::is_control) {
        bail!("invalid user name {user:?}: must be non-empty without control characters");
    }
    Ok(())
}

/// `- { name: USER, password: "PHC", groups: [] }`, quoting USER when it is not a plain scalar.
fn yaml_entry(user: &str, phc: &str) -> String {
    let plain = user
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
        && !user.starts_with(['-', '.', '@'])
        && !matches!(
            user,
            "null"
                | "Null"
                | "NULL"
                | "true"
                | "True"
                | "TRUE"
                | "false"
                | "False"
                | "FALSE"
                | "yes"
                | "no"
                | "on"
                | "off"
                | "y"
                | "n"
                | "~"
        )
        && user.parse::<f64>().is_err();
    let name = if plain {
        user.to_owned()
    } else {
        format!("\"{}\"", user.replace('\\', "\\\\").replace('"', "\\\""))
    };
    format!("- {{ name: {name}, password: \"{phc}\", groups: [] }}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHash, PasswordVerifier};

    #[test]
    fn hash_is_argon2id_defaults_and_verifies() {
        let phc = hash_password(b"s3cret pw").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        let parsed = PasswordHash::new(&phc).unwrap();
        assert!(Argon2::default()
            .verify_password(b"s3cret pw", &parsed)
            .is_ok());
        assert!(Argon2::default()
            .verify_password(b"s3cret pw\n", &parsed)
            .is_err());
        assert_ne!(
            phc,
            hash_password(b"s3cret pw").unwrap(),
            "salt must be random"
        );
    }

    #[test]
    fn line_reading_strips_only_the_line_ending() {
        let read = |s: &[u8]| read_password_line(&mut &s[..]).unwrap();
        assert_eq!(read(b" pw \n"), b" pw ");
        assert_eq!(read(b"pw\r\n"), b"pw");
        assert_eq!(read(b"pw"), b"pw");
        assert_eq!(read(b"pw\nsecond line\n"), b"pw");
        assert_eq!(read(b"\n"), b"");
        assert_eq!(read(b""), b"");
        assert_eq!(read(&[0xff, 0xfe, b'\n']), [0xff, 0xfe]);
    }

    #[test]
    fn line_reading_is_bounded() {
        let ok = vec![b'a'; MAX_PASSWORD_LEN];
        assert_eq!(
            read_password_line(&mut &ok[..]).unwrap().len(),
            MAX_PASSWORD_LEN
        );
        let long = vec![b'a'; MAX_PASSWORD_LEN + 1];
        assert!(read_password_line(&mut &long[..]).is_err());
        let huge = vec![b'a'; 1 << 20];
        assert!(read_password_line(&mut &huge[..]).is_err());
    }

    #[test]
    fn yaml_entry_quotes_when_needed() {
        assert_eq!(
            yaml_entry("alice", "$argon2id$x"),
            r#"- { name: alice, password: "$argon2id$x", groups: [] }"#
        );
        assert_eq!(
            yaml_entry("a b", "h"),
            r#"- { name: "a b", password: "h", groups: [] }"#
        );
        assert_eq!(
            yaml_entry("a\"b\\", "h"),
            r#"- { name: "a\"b\\", password: "h", groups: [] }"#
        );
        assert_eq!(
            yaml_entry("true", "h"),
            r#"- { name: "true", password: "h", groups: [] }"#
        );
        assert_eq!(
            yaml_entry("123", "h"),
            r#"- { name: "123", password: "h", groups: [] }"#
        );
        assert_eq!(
            yaml_entry("x:y", "h"),
            r#"- { name: "x:y", password: "h", groups: [] }"#
        );
    }

    #[test]
    fn user_names_with_control_characters_are_refused() {
        assert!(check_user("alice").is_ok());
        assert!(check_user("").is_err());
        assert!(check_user("a\nb").is_err());
        assert!(check_user("a\0b").is_err());
    }
}
