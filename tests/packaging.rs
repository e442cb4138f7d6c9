//! The shipped deployment files: the systemd unit passes `systemd-analyze verify` (with its
//! `ExecStart` pointed at the binary under test), and the unit and container recipe keep the
//! settings docs/DEPLOY.md promises. `scripts/test` installs `systemd-analyze` (Debian's
//! `systemd`) where it is missing, so this never skips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

use std::path::Path;
use std::process::Command;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

#[test]
fn the_systemd_unit_verifies() {
    let unit = read("packaging/moat.service").replace("/usr/bin/moat", env!("CARGO_BIN_EXE_moat"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("moat.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze is installed (scripts/test installs Debian's systemd)");
    let err = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 on a setting it ignores (a misspelt value): any word on stderr fails.
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
}

#[test]
fn the_systemd_unit_drops_privileges_and_fits_the_descriptor_budget() {
    let unit = read("packaging/moat.service");
    for line in [
        "User=moat",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "ExecStart=/usr/bin/moat run --config /etc/moat/moat.yaml",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing");
    }
    // README: 3 descriptors per connection with the embedded broker, plus 64, for the default
    // cap of 10,000.
    assert!(unit.contains(&format!("LimitNOFILE={}\n", 10_000 * 3 + 64)));
}

#[test]
fn the_container_recipe_runs_unprivileged_with_a_health_check() {
    let recipe = read("packaging/Containerfile");
    for line in [
        "USER moat",
        "EXPOSE 8883/tcp 443/tcp 14567/udp",
        "HEALTHCHECK --interval=10s --timeout=3s --start-period=10s CMD [\"moat\", \"ctl\", \"ready\"]",
        "ENTRYPOINT [\"moat\"]",
    ] {
        assert!(recipe.lines().any(|l| l == line), "{line} missing");
    }
}
