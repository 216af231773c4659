//! Fuzzes the xl.cfg parser: any bytes go through the document, guest and
//! appliance parsers, and whatever parses must keep the promises in
//! `config::invariants` (bounded values, spans inside the text, a written
//! form that parses back the same, typed values that are consistent).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = config::invariants::check_all(data) {
        panic!("broken promise: {broken}");
    }
});
