//! Standard output for the subcommands: a reader that goes away is not an error.
//!
//! `println!` panics when stdout is a closed pipe (`moat check | head`: exit 101 and a
//! backtrace). The subcommands write through [`say`] instead; a closed pipe becomes
//! [`Closed`], which `cli::main` turns into a quiet, successful exit, as `grep` or `rg` do.

use std::io::{self, Write};

/// The reader of standard output has gone away (EPIPE): nothing more can be said.
#[derive(Debug, thiserror::Error)]
#[error("standard output closed")]
pub(crate) struct Closed;

/// Writes `text` to standard output as it is (add the newline yourself).
pub(crate) fn say(text: impl std::fmt::Display) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match write!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(Closed.into()),
        other => Ok(other?),
    }
}

/// The error's message and then each cause that adds something: a cause whose text the message
/// already holds is left out (errors that print their source, such as an OS error after a file
/// name, would otherwise say it twice).
pub(crate) fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("could not bind 127.0.0.1:1: {source}")]
    struct Bind {
        source: io::Error,
    }

    #[test]
    fn an_os_error_the_message_already_holds_is_said_once() {
        let os = io::Error::from(io::ErrorKind::AddrInUse);
        let os_text = os.to_string();
        let e = anyhow::Error::new(Bind { source: os });
        let text = error_text(&e);
        assert_eq!(text.matches(&os_text).count(), 1, "{text}");
    }

    #[test]
    fn context_and_causes_that_add_something_are_kept() {
        let e =
            anyhow::Error::new(io::Error::other("disk on fire")).context("reading policies/a.yaml");
        assert_eq!(error_text(&e), "reading policies/a.yaml: disk on fire");
    }
}
