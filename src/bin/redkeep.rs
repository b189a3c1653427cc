//! The `redkeep` binary: everything lives in `redkeep::cli`.

fn main() -> std::process::ExitCode {
    redkeep::cli::main()
}
