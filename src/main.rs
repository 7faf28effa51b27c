fn main() -> std::process::ExitCode {
    kpackfs::cli::main()
}
