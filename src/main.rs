fn main() -> std::process::ExitCode {
    rtmfp_edge::cli::main()
}
