//! A fixed-seed pseudo-random search for panics and broken promises:
//! thousands of mutations of the samples, each run through every parser
//! and [`check_all`]. The fuzz target does the same without the seed.

use super::samples::ALL;
use crate::invariants::check_all;
use crate::limits::MAX_FILE_BYTES;

/// xorshift64*: small, fast and the same on every machine.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: usize) -> usize {
        if bound == 0 {
            0
        } else {
            (self.next() % bound as u64) as usize
        }
    }
}

/// Fragments that steer mutations towards the grammar's corners.
const FRAGMENTS: [&[u8]; 24] = [
    b"[",
    b"]",
    b"+=",
    b"=",
    b",",
    b";",
    b"#",
    b"\n",
    b"\r\n",
    b"\"",
    b"'",
    b"\\",
    b"\\x",
    b"\\7",
    b"0x",
    b"0",
    b"99999999999999999999",
    b"name = 'x'\n",
    b"type = 'hvm'\n",
    b"[[[[[",
    b"\xc3\xa9",
    b"\xff",
    b"\0",
    b"target=",
];

fn mutate(random: &mut Random, bytes: &mut Vec<u8>) {
    let at = random.below(bytes.len() + 1);
    match random.below(8) {
        0 => {
            if let Some(byte) = bytes.get_mut(at) {
                *byte ^= 1 << random.below(8);
            }
        }
        1 => {
            let fragment = FRAGMENTS[random.below(FRAGMENTS.len())];
            bytes.splice(at..at, fragment.iter().copied());
        }
        2 => {
            let end = (at + 1 + random.below(8)).min(bytes.len());
            if at < end {
                bytes.drain(at..end);
            }
        }
        3 => {
            let end = (at + 1 + random.below(64)).min(bytes.len());
            if at < end {
                let copy: Vec<u8> = bytes[at..end].to_vec();
                let to = random.below(bytes.len() + 1);
                bytes.splice(to..to, copy);
            }
        }
        4 => {
            if let Some(byte) = bytes.get_mut(at) {
                *byte = FRAGMENTS[random.below(FRAGMENTS.len())]
                    .first()
                    .copied()
                    .unwrap_or(b'x');
            }
        }
        5 => bytes.truncate(at),
        6 => {
            let other = random.below(bytes.len());
            if at < bytes.len() {
                bytes.swap(at, other);
            }
        }
        _ => {
            if let Some(byte) = bytes.get_mut(at) {
                *byte = random.next() as u8;
            }
        }
    }
}

#[test]
fn mutated_samples_never_panic_or_break_promises() {
    let mut random = Random(0x5eed_c0ff_ee00_1234);
    let mut accepted = 0;
    for round in 0..4000 {
        let (file, text) = ALL[round % ALL.len()];
        let mut bytes = text.as_bytes().to_vec();
        for _ in 0..=random.below(6) {
            mutate(&mut random, &mut bytes);
        }
        if let Err(broken) = check_all(&bytes) {
            panic!(
                "{file}, round {round}: {broken}\n{}",
                String::from_utf8_lossy(&bytes)
            );
        }
        if crate::Document::parse_bytes(&bytes).is_ok() {
            accepted += 1;
        }
    }
    // The mutations must leave enough valid configs to test the typed step.
    assert!(accepted > 400, "only {accepted} mutated configs parsed");
}

#[test]
fn inputs_at_the_limits_fail_fast_and_cleanly() {
    let fill = |unit: &str| unit.repeat(MAX_FILE_BYTES / unit.len());
    let cases = [
        fill("["),
        format!("a = {}", fill("[")),
        fill("a=1;"),
        fill("l += ['x']\n"),
        fill("e += 'xxxxxxxxxxxxxxxxxxxx'\n"),
        format!("a = '{}'", fill("\\n")),
        fill("\n"),
        fill("#"),
        fill("a = 1\n"),
        format!("vif = [{}]", fill("'',")),
        format!("disk = [{}]", fill("'a,raw,xvda',")),
        fill("é"),
    ];
    for case in &cases {
        assert_eq!(
            check_all(case.as_bytes()),
            Ok(()),
            "{}",
            &case[..40.min(case.len())]
        );
    }
}
