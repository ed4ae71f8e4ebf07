//! The `linkmeter` binary; everything lives in [`collector::cli`].

fn main() -> std::process::ExitCode {
    collector::cli::main()
}
