//! Policy hot reload: file changes (watched folder, debounced) and SIGHUP swap the policy in
//! atomically for live sessions; a broken file is refused with its place and the old policy
//! stays in force.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::packets::{frame, push_str};
use common::{packets, Opts, WAIT};
use moat::ops::reload::{self, PolicyWatcher};
use tokio::io::AsyncWriteExt;

fn policy(topics: &str) -> String {
    format!(
        "users:\n  - {{ name: alice, password: \"{}\" }}\nacl:\n  - allow: publish\n    topics: [{topics}]\n    users: [alice]\n",
        common::hash("alice-pw")
    )
}

fn publish_qos1(topic: &str, pkid: u16) -> Vec<u8> {
    let mut body = Vec::new();
    push_str(&mut body, topic);
    body.extend_from_slice(&pkid.to_be_bytes());
    body.push(0);
    body.extend_from_slice(b"x");
    frame(0x32, &body)
}

#[tokio::test]
async fn a_changed_file_reloads_live_sessions_and_a_broken_one_is_refused() {
    let h = common::start(Opts {
        policy: policy("\"a/#\""),
        ..Opts::default()
    })
    .await;
    let config = moat::ops::load::load_config(&h.dir.path().join("moat.yaml")).unwrap();
    let mut watcher = PolicyWatcher::start(&config).unwrap();
    let file = h.dir.path().join("policies/test.yaml");

    let mut s = h.tls(None).await;
    s.write_all(&packets::connect_v5(
        "live",
        Some("alice"),
        Some("alice-pw"),
    ))
    .await
    .unwrap();
    let head = common::read_exact(&mut s, 2).await;
    common::read_exact(&mut s, usize::from(head[1])).await;
    let publish = |pkid: u16| publish_qos1("a/x", pkid);
    s.write_all(&publish(1)).await.unwrap();
    assert_eq!(common::read_exact(&mut s, 4).await, [0x40, 2, 0, 1]);

    // Revoke a/#: the next publish on the same session is refused.
    std::fs::write(&file, policy("\"b/#\"")).unwrap();
    tokio::time::timeout(WAIT, watcher.changed())
        .await
        .expect("no change event")
        .unwrap();
    reload::reload(&h.running, &config, "test").unwrap();
    s.write_all(&publish(2)).await.unwrap();
    assert_eq!(common::read_exact(&mut s, 5).await, [0x40, 3, 0, 2, 0x87]);

    // A broken file (it would re-allow a/#) is refused with its place; the old policy stays.
    std::fs::write(
        &file,
        policy("\"a/#\"").replace("users: [alice]", "users: [alice"),
    )
    .unwrap();
    tokio::time::timeout(WAIT, watcher.changed())
        .await
        .expect("no change event")
        .unwrap();
    let err = reload::reload(&h.running, &config, "test").unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with(&format!("{}:", file.display())), "{text}");
    assert!(
        text.split(':').nth(1).unwrap().parse::<u32>().is_ok(),
        "{text}"
    );
    s.write_all(&publish(3)).await.unwrap();
    assert_eq!(common::read_exact(&mut s, 5).await, [0x40, 3, 0, 3, 0x87]);
}

#[test]
fn moat_run_reloads_on_sighup_and_on_file_change() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("policies")).unwrap();
    let file = d.join("policies/acl.yaml");
    std::fs::write(&file, "acl:\n  - allow: publish\n    topics: [a]\n").unwrap();
    std::fs::write(
        d.join("moat.yaml"),
        "listeners:\n  - { name: mqtts, kind: tls, bind: \"127.0.0.1:0\" }\n\
         tls:\n  cert: certs/server.crt\n  key: certs/server.key\n  client_certs: none\n\
         broker:\n  embedded: { bind: \"127.0.0.1:0\", bind_v5: \"127.0.0.1:0\" }\n\
         policies: [policies/]\ndev_certs: true\n",
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_moat"));
    cmd.current_dir(d).args(["run", "-c", "moat.yaml"]);
    let (mut child, lines) = common::spawn_logged(cmd);
    let mut seen = Vec::new();
    common::wait_for_line(&lines, &mut seen, &["moat is up"]);
    let signal = |name: &str| {
        let status = Command::new("kill")
            .args([name, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal("-HUP");
    common::wait_for_line(&lines, &mut seen, &["policy reloaded", "SIGHUP"]);
    // A file change alone reloads (debounced); a broken file is refused with line and column.
    std::fs::write(&file, "acl:\n  - allow: publsh\n    topics: [a]\n").unwrap();
    let line = common::wait_for_line(&lines, &mut seen, &["policy reload refused", "file change"]);
    assert!(line.contains("acl.yaml:2:"), "{line}");
    std::fs::write(&file, "acl:\n  - allow: publish\n    topics: [a, b]\n").unwrap();
    common::wait_for_line(
        &lines,
        &mut seen,
        &["policy reloaded", "file change", "rules=1"],
    );
    signal("-TERM");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "moat did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}
