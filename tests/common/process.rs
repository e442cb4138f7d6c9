//! The real `moat` binary as a child process, on a free port, killed when dropped: for tests of
//! what an operator runs (several instances, an external broker), where the in-process harness
//! would share one process's state.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc::Receiver;

/// A running `moat run`; dropping it kills it.
pub struct MoatProcess {
    child: Child,
    /// The `mqtts` listener's address.
    pub addr: SocketAddr,
    /// Log lines not read yet.
    pub lines: Receiver<String>,
    /// Log lines read so far (by [`MoatProcess::wait_for`]).
    pub seen: Vec<String>,
}

/// Writes moat.yaml into `dir` (which must hold the harness PKI, `super::Pki::new(dir)`): one
/// TLS listener `mqtts` on `bind`, the default test policy, and `broker` as the `broker:`
/// section.
pub fn write_config(dir: &Path, bind: &str, broker: &str) {
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/test.yaml"), super::default_policy()).unwrap();
    std::fs::write(
        dir.join("policies/00-network.yaml"),
        super::LOOPBACK_NETWORK,
    )
    .unwrap();
    std::fs::write(
        dir.join("moat.yaml"),
        format!(
            "listeners:\n  - {{ name: mqtts, kind: tls, bind: \"{bind}\" }}\n\
             tls:\n  cert: server.crt\n  key: server.key\n  client_certs: none\n\
             {broker}policies: [policies/]\ndev_certs: false\n"
        ),
    )
    .unwrap();
}

impl MoatProcess {
    /// Runs `moat run -c dir/moat.yaml` and waits for its listener.
    pub fn start(dir: &Path) -> MoatProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_moat"));
        cmd.current_dir(dir).args(["run", "-c", "moat.yaml"]);
        let (child, lines) = super::spawn_logged(cmd);
        let mut seen = Vec::new();
        let up = super::wait_for_line(&lines, &mut seen, &["listening", "listener=mqtts"]);
        let addr = up
            .split("addr=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {up:?}"));
        MoatProcess {
            child,
            addr,
            lines,
            seen,
        }
    }

    /// Waits (within [`super::WAIT`]) for a log line holding every needle; returns it.
    pub fn wait_for(&mut self, needles: &[&str]) -> String {
        super::wait_for_line(&self.lines, &mut self.seen, needles)
    }

    /// Every log line so far, including those not waited for.
    pub fn log(&mut self) -> String {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }

    /// Sends the signal `name` (`-HUP`, `-TERM`) with kill(1).
    pub fn signal(&self, name: &str) {
        super::signal(&self.child, name);
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for MoatProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
