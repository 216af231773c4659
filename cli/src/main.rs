//! The `xenolith` binary: hands the command line and `XENOLITH_TOKEN` to
//! [`xenolith_cli::run`] and exits with its code.

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let token = std::env::var("XENOLITH_TOKEN").ok();
    let code = xenolith_cli::run(
        &arguments,
        token,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    std::process::exit(code);
}
