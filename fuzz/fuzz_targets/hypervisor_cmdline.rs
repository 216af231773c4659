//! Fuzzes the hypervisor command-line parser, both on the input as text and
//! on the input as loader bytes (NUL, bad UTF-8, over-long lines).
#![no_main]

use hypervisor::boot::cmdline;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let copied = cmdline::copy_lossy(data);
    check(&cmdline::parse(&copied));
    if let Ok(text) = core::str::from_utf8(data) {
        check(&cmdline::parse(text));
    }
});

fn check(options: &cmdline::Options) {
    assert!(options.warnings.len() <= cmdline::MAX_WARNINGS);
    assert_eq!(options.dom0_args.as_str(), options.dom0_args.trim());
    assert_ne!(options.dom0_memory, Some(0));
}
