//! `xenolith-img`: builds and edits Xenolith appliance disks on the host.
//! The work is in the library; this wires arguments, output and exit codes.

use std::process::ExitCode;

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    match xenolith_img::run(&arguments) {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("xenolith-img: {error}");
            if error.is_usage() {
                eprintln!("{}", xenolith_img::USAGE);
            }
            ExitCode::from(error.exit_code())
        }
    }
}
