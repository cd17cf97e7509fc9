//! The `warrant` binary: everything happens in [`warrant_proxy::cli`].

fn main() -> std::process::ExitCode {
    warrant_proxy::cli::main()
}
