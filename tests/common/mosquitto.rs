//! A real mosquitto broker for tests that run moat with an external `upstream:` broker.
//!
//! mosquitto cannot bind port 0 (`listener 0 HOST` means a Unix socket), so a free loopback
//! port is picked and, if another process takes it first, tried again with another (bounded).
//! Ready when mosquitto logs that it is running; killed when dropped.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use super::WAIT;

/// Attempts at a free port before the test fails.
const ATTEMPTS: usize = 5;

/// A mosquitto process listening on `addr` (MQTT 3.1.1 and 5 on one port), anonymous access
/// allowed (moat authenticates; the user name it sends is the client's identity).
pub struct Mosquitto {
    pub addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let mut failures = Vec::new();
        for _ in 0..ATTEMPTS {
            let addr = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap();
            let conf = dir.path().join("mosquitto.conf");
            std::fs::write(
                &conf,
                format!(
                    "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                     log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n\
                     log_type information\n",
                    addr.port()
                ),
            )
            .unwrap();
            let mut child = Command::new("mosquitto")
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("mosquitto is installed (scripts/test installs the mosquitto package)");
            let lines = log_lines(&mut child);
            match wait_running(&lines) {
                Ok(()) => {
                    return Mosquitto {
                        addr,
                        child,
                        _dir: dir,
                    }
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    failures.push(why);
                }
            }
        }
        panic!("mosquitto did not start: {failures:?}");
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// mosquitto's log lines, read by a thread that ends when mosquitto closes stderr. It keeps
/// reading after the receiver is gone: a closed pipe would kill mosquitto at its next line.
fn log_lines(child: &mut Child) -> mpsc::Receiver<String> {
    use std::io::BufRead;
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Waits (at most [`WAIT`]) for "running"; an error line or an early exit is a failure.
fn wait_running(lines: &mpsc::Receiver<String>) -> Result<(), String> {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(" running") => return Ok(()),
            Ok(line) if line.contains("Error") => return Err(line),
            Ok(line) => seen.push(line),
            Err(_) => return Err(format!("no \"running\" line; saw {seen:?}")),
        }
    }
}
