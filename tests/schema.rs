//! `moat schema`: the checked-in schemas in `schema/` are what `moat schema` prints (regenerate
//! with `moat schema config > schema/moat.schema.json`, `moat schema policy >
//! schema/policy.schema.json`), every shipped example names its schema in the
//! `# yaml-language-server: $schema=…` comment and validates against it, and the schema refuses
//! what the loader refuses (an unknown key, a wrong word).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

use std::path::{Path, PathBuf};
use std::process::Command;

const SCHEMA_COMMENT: &str = "# yaml-language-server: $schema=";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn moat_schema(of: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["schema", of])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_checked_in_schemas_are_what_moat_schema_prints() {
    for (of, file) in [
        ("config", "schema/moat.schema.json"),
        ("policy", "schema/policy.schema.json"),
    ] {
        let shipped = std::fs::read_to_string(root().join(file)).unwrap();
        assert!(
            shipped == moat_schema(of),
            "{file} is stale: run `moat schema {of} > {file}`"
        );
    }
}

/// A compiled schema, ready to validate YAML documents read as JSON values.
struct Validator {
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

impl Validator {
    fn new(schema: &Path) -> Validator {
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(schema).unwrap()).unwrap();
        let url = format!("file://{}", schema.canonicalize().unwrap().display());
        let mut compiler = boon::Compiler::new();
        compiler.add_resource(&url, json).unwrap();
        let mut schemas = boon::Schemas::new();
        let index = compiler.compile(&url, &mut schemas).unwrap();
        Validator { schemas, index }
    }

    fn check(&self, yaml: &str) -> Result<(), String> {
        let doc: serde_json::Value = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
        self.schemas
            .validate(&doc, self.index)
            .map_err(|e| format!("{e:#}"))
    }
}

/// The example files the repository ships, each with the schema its comment names.
fn examples() -> Vec<(PathBuf, PathBuf)> {
    let mut files = vec![root().join("moat.yaml")];
    for dir in ["examples", "examples/policies", "policies"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
    }
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).unwrap();
            let schema = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix(SCHEMA_COMMENT))
                .unwrap_or_else(|| {
                    panic!("{} lacks `{SCHEMA_COMMENT}…` on line 1", file.display())
                });
            let schema = file.parent().unwrap().join(schema);
            assert!(
                schema.exists(),
                "{}: {} missing",
                file.display(),
                schema.display()
            );
            (file, schema)
        })
        .collect()
}

#[test]
fn every_shipped_example_names_its_schema_and_validates() {
    let examples = examples();
    assert!(examples.len() >= 4, "{examples:?}");
    for (file, schema) in examples {
        let text = std::fs::read_to_string(&file).unwrap();
        Validator::new(&schema)
            .check(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
}

#[test]
fn the_schemas_refuse_unknown_keys_and_words() {
    let config = Validator::new(&root().join("schema/moat.schema.json"));
    let ok = "listeners:\n  - { name: a, kind: tls, bind: \"0.0.0.0:8883\" }\n";
    config.check(ok).unwrap();
    // deny_unknown_fields → additionalProperties: false, at every level.
    assert!(config.check(&format!("{ok}listen: x\n")).is_err());
    assert!(config
        .check("listeners:\n  - { name: a, kind: tls, bnd: \"0.0.0.0:1\" }\n")
        .is_err());
    assert!(config
        .check("listeners:\n  - { name: a, kind: tcp, bind: \"0.0.0.0:1\" }\n")
        .is_err());
    // Required stays required.
    assert!(config.check("log: { format: json }\n").is_err());

    let policy = Validator::new(&root().join("schema/policy.schema.json"));
    policy
        .check("acl:\n  - allow: [publish, receive]\n    topics: [\"a/#\"]\n  - deny: all\n    topics: [\"#\"]\n")
        .unwrap();
    assert!(policy
        .check("acl:\n  - allow: publsh\n    topics: [\"a/#\"]\n")
        .is_err());
    assert!(policy.check("acls: []\n").is_err());
}
