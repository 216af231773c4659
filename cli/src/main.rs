//! The `xenolith` binary: hands the command line, `XENOLITH_URL` and
//! `XENOLITH_TOKEN` to [`xenolith_cli::run`] and exits with its code.

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let code = xenolith_cli::run(
        &arguments,
        &xenolith_cli::args::Environment::from_process(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    std::process::exit(code);
}
