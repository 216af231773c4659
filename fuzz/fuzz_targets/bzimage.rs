//! Fuzzes bzImage unpacking (`pvh::bzimage`) and the Linux boot protocol
//! reader HVM guests use (`pvh::linux_boot`): the input is a whole kernel
//! image file, a bzImage or an ELF. Unpacking must answer without panicking,
//! within the limit, and a payload that decodes must match its size trailer;
//! a header the boot protocol accepts gives ranges inside the image and a
//! zero page that carries the header. The stepped decompressor Dom0 uses
//! must agree with the one-shot one (same bytes or same error), make at
//! most a step's output per step (an LZ4 block), and a prefix must be the
//! start of the whole.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// Small, so that inputs declaring huge kernels are refused cheaply.
const LIMIT: usize = 16 * 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    if let Ok(boot) = pvh::linux_boot::parse(data) {
        assert!(boot.protected_mode.end <= data.len() && !boot.protected_mode.is_empty());
        assert!(boot.setup_header.end <= data.len());
        let input = pvh::linux_boot::ZeroPageInput {
            base: 0x1_0000,
            memory: &[],
            cmdline: "console=hvc0",
            initrd: Some((0x100_0000, 0x1000)),
            rsdp: 0xe_0000,
        };
        let zero_page = pvh::linux_boot::build(data, &boot, &input);
        assert_eq!(&zero_page[0x202..0x206], b"HdrS");
    }
    match pvh::bzimage::payload(data) {
        Ok(payload) => {
            let one_shot = payload.decompress(LIMIT);
            if let Ok(vmlinux) = &one_shot {
                assert!(vmlinux.len() <= LIMIT);
                assert_eq!(vmlinux.len(), payload.uncompressed_size as usize);
                let _ = pvh::image::parse(vmlinux);
            }
            let stepped = payload.start(LIMIT).and_then(|mut decompression| {
                let bound = match payload.compression {
                    pvh::bzimage::Compression::Lz4 => 8 << 20,
                    _ => pvh::bzimage::STEP_OUTPUT,
                };
                loop {
                    let before = decompression.written();
                    let progress = decompression.step()?;
                    assert!(decompression.written() - before <= bound);
                    if progress == pvh::bzimage::Progress::Done {
                        break;
                    }
                }
                decompression.finish()
            });
            assert_eq!(stepped, one_shot);
            if payload.uncompressed_size as usize <= LIMIT
                && let Ok(prefix) = payload.decompress_prefix(4096)
                && let Ok(vmlinux) = &one_shot
            {
                assert!(vmlinux.starts_with(&prefix));
                if let Ok(whole) = pvh::image::parse(vmlinux) {
                    let extent = pvh::image::extent(&prefix, vmlinux.len() as u64);
                    assert!(extent.is_err() || extent == Ok((whole.start, whole.end)));
                }
            }
        }
        Err(_) => {
            if let Ok(vmlinux) = pvh::bzimage::vmlinux(data, LIMIT) {
                // Only a plain ELF comes back without a payload.
                assert!(vmlinux.starts_with(b"\x7fELF"));
                let _ = pvh::image::parse(&vmlinux);
            }
        }
    }
});
