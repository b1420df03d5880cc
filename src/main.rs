//! The `kustos` binary: everything lives in the library; see `kustos --help`.

fn main() -> std::process::ExitCode {
    kustos::keys::pgp::use_small_reader_buffers();
    kustos::cli::main()
}
