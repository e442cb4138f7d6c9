//! A real mosquitto broker as moat's external upstream (`broker: upstream:`), on a free
//! loopback port, killed when dropped. scripts/test and .ci/run install the `mosquitto` package.

use std::process::{Child, Command};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Instant;

use super::WAIT;

/// A running mosquitto; dropping it kills it.
pub struct Mosquitto {
    child: Child,
    /// The loopback port it listens on (MQTT 3.1.1 and 5.0 on one port).
    pub port: u16,
    /// Its log lines (stderr), for a test that needs to read what the broker saw.
    pub log: Receiver<String>,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts mosquitto with anonymous access (moat is its only client) and waits for its
    /// "running" line. mosquitto cannot listen on port 0, so a port is taken from the OS and
    /// released just before; if another process wins it in between, the next try gets another.
    pub fn start() -> Mosquitto {
        Mosquitto::start_with("allow_anonymous true\n")
    }

    /// Starts mosquitto with `settings` for its one listener (written right after the
    /// `listener` line: `password_file`, `cafile`/`certfile`/`keyfile`, `allow_anonymous`).
    pub fn start_with(settings: &str) -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let mut failures = Vec::new();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap()
                .port();
            let conf = dir.path().join("mosquitto.conf");
            std::fs::write(
                &conf,
                format!(
                    "listener {port} 127.0.0.1\n{settings}persistence false\n\
                     log_dest stderr\nlog_type all\nconnection_messages true\n"
                ),
            )
            .unwrap();
            let mut cmd = Command::new(binary());
            cmd.arg("-c").arg(&conf);
            let (child, log) = super::spawn_logged(cmd);
            let mut seen = Vec::new();
            if ready(&log, &mut seen) {
                return Mosquitto {
                    child,
                    port,
                    log,
                    _dir: dir,
                };
            }
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
            failures.push(seen);
        }
        panic!("mosquitto did not start: {failures:#?}");
    }

    /// The `broker:` section of moat.yaml that points at this broker.
    pub fn upstream_yaml(&self) -> String {
        format!(
            "broker:\n  upstream: {{ v3: \"127.0.0.1:{p}\", v5: \"127.0.0.1:{p}\" }}\n",
            p = self.port
        )
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a mosquitto password file at `path` with these users (`mosquitto_passwd -b`).
pub fn password_file(path: &std::path::Path, users: &[(&str, &str)]) {
    for (n, (user, password)) in users.iter().enumerate() {
        let mut cmd = Command::new("mosquitto_passwd");
        if n == 0 {
            cmd.arg("-c");
        }
        let out = cmd
            .arg("-b")
            .arg(path)
            .args([user, password])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The broker is in `/usr/sbin`, which a non-root PATH may lack.
fn binary() -> &'static str {
    if std::path::Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    }
}

/// Reads log lines until "running" (true) or until the broker exits or [`WAIT`] passes (false).
fn ready(log: &Receiver<String>, seen: &mut Vec<String>) -> bool {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match log.recv_timeout(left) {
            Ok(line) => {
                let up = line.contains(" running");
                seen.push(line);
                if up {
                    return true;
                }
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return false,
        }
    }
}
