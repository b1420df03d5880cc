//! The `kustos` binary: everything lives in the library; see `kustos --help`.

fn main() -> std::process::ExitCode {
    kustos::cli::main()
}
