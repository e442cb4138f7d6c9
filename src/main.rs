//! The `moat` binary: parse argv, run the subcommand, turn the result into an exit code.
use std::process::ExitCode;

fn main() -> ExitCode {
    moat::cli::main()
}
