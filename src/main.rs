//! The `kustos` binary: everything lives in the library; see `kustos --help`.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    kustos::cli::main()
}
