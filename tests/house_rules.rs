//! House rule 1: the sans-IO core never imports tokio, touches sockets or files, or reads the
//! clock. A word search is crude but catches the slip that matters: a new `use tokio::…`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

const PURE: &[&str] = &[
    "src/mqtt",
    "src/policy",
    "src/config",
    "src/session/machine",
];
const FORBIDDEN: &[&str] = &[
    "tokio",
    "std::net::TcpStream",
    "std::fs",
    "Instant::now",
    "SystemTime::now",
];

fn files(path: &Path, out: &mut Vec<std::path::PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            files(&entry.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs")
        // Unit-test files may time things; the rule is about the code they test.
        && !path
            .file_stem()
            .is_some_and(|s| s.to_string_lossy().ends_with("tests"))
    {
        out.push(path.to_path_buf());
    }
}

#[test]
fn pure_modules_do_no_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut all = Vec::new();
    for p in PURE {
        files(&root.join(p), &mut all);
    }
    assert!(!all.is_empty());
    let mut offences = Vec::new();
    for f in all {
        let text = std::fs::read_to_string(&f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in FORBIDDEN {
                if code.contains(word) {
                    offences.push(format!("{}:{}: {word}", f.display(), n + 1));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "I/O in the pure core:\n{}",
        offences.join("\n")
    );
}
