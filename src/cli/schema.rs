//! `moat schema config|policy`: the JSON Schema of moat.yaml or of a policy file, generated from
//! the loader's own raw types (`config::schema`, `policy::schema`). The repository keeps the
//! output in `schema/` for editors (`# yaml-language-server: $schema=…` in the examples);
//! `tests/schema.rs` fails when the two differ.

use super::out::say;

/// Arguments of `moat schema`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Which file's schema to print.
    #[arg(value_enum)]
    pub of: Of,
}

/// The files moat reads.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Of {
    /// moat.yaml.
    Config,
    /// A policy file (one of `policies:`).
    Policy,
}

/// Prints the schema as pretty JSON with a trailing newline.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (schema, id, title) = match args.of {
        Of::Config => (crate::config::schema(), "moat.schema.json", "moat.yaml"),
        Of::Policy => (
            crate::policy::schema(),
            "policy.schema.json",
            "moat policy file",
        ),
    };
    let mut value = schema.to_value();
    if let Some(map) = value.as_object_mut() {
        // Editors show the title (the raw type's name otherwise); `$id` names the file the
        // repository ships it as.
        map.insert("$id".into(), id.into());
        map.insert("title".into(), title.into());
    }
    say(format_args!("{}\n", serde_json::to_string_pretty(&value)?))
}
