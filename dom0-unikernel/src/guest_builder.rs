//! Building a guest from a kernel image: the plan of control requests
//! (create, copy each segment and the start info in, set the entry point,
//! unpause) worked out on the host-testable side, carried out by the
//! binary through the control hypercall. A PVH guest gets its ELF
//! segments and an `hvm_start_info`; an HVM guest the bzImage itself at
//! 1 MiB and a Linux boot protocol zero page (direct kernel boot).

use alloc::vec::Vec;

use pvh::image::ImageError;
use pvh::start_info::{BLOCK_SIZE, MemoryEntry, StartInfoInput};
use xenolith_abi::start_info::memmap_type;

use crate::kernel_cache::CachedKernel;

/// Most bytes one copy request carries (the control interface's limit).
pub const COPY_CHUNK: usize = 1 << 20;

/// The kernel to load.
#[derive(Clone, Copy)]
pub enum KernelImage<'a> {
    /// A PVH ELF kernel (already decompressed).
    Elf(&'a [u8]),
    /// A kernel kept from an earlier build.
    Cached(&'a CachedKernel),
    /// A bzImage booted by the Linux boot protocol (HVM guests): loaded
    /// as it is, it decompresses itself.
    BzImage(&'a [u8]),
}

/// A guest to build.
pub struct GuestSpec<'a> {
    pub kernel: KernelImage<'a>,
    pub memory_kib: u64,
    pub vcpus: u32,
    pub cmdline: &'a str,
    /// Module 0 for the guest (Linux's initrd), if any.
    pub initrd: Option<&'a [u8]>,
}

/// One piece of guest memory to fill: `length` bytes at guest-physical
/// `address` from `source` (a range of the image, or of the start-info
/// block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Copy {
    pub address: u64,
    pub source: Source,
}

/// Where a copy's bytes come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Image {
        offset: usize,
        length: usize,
    },
    /// Run `n` of the cached kernel.
    CachedRun(usize),
    Initrd {
        offset: usize,
        length: usize,
    },
    StartInfo,
    Acpi,
    /// An HVM guest's reset vector stub (`pvh::acpi::RESET_VECTOR`).
    ResetVector,
}

/// Where an HVM guest's zero page and command line go: low RAM, clear of
/// the kernel (from 1 MiB), of the decompressor's trampoline (just below
/// 640 KiB) and of the initrd (at the top).
pub const ZERO_PAGE_ADDRESS: u64 = 0x1_0000;

const _: () = assert!(pvh::linux_boot::BLOCK_SIZE <= BLOCK_SIZE);

/// Where the ACPI tables go: the legacy BIOS area, which the memory map
/// marks reserved (Linux also finds an RSDP there by scanning).
pub const ACPI_ADDRESS: u64 = 0xe_0000;

/// Pages at the top of a guest's RAM that the memory map marks reserved:
/// the xenstore ring, then the console ring (Linux maps them with
/// `memremap`, so they must not also be RAM it allocates).
pub const SPECIAL_PAGES: u64 = 2;

/// The worked-out build.
pub struct BuildPlan {
    pub copies: Vec<Copy>,
    pub start_info: [u8; BLOCK_SIZE],
    pub acpi: [u8; pvh::acpi::BLOCK_SIZE],
    pub start_info_address: u64,
    pub entry: u32,
    /// The xenstore ring's guest frame.
    pub store_frame: u64,
    /// The console ring's guest frame.
    pub console_frame: u64,
}

/// Why a guest cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    Image(ImageError),
    /// An HVM guest's kernel cannot be booted by the Linux boot protocol.
    BootImage(pvh::linux_boot::BootImageError),
    /// The image does not fit below the start info in the guest's RAM.
    TooSmall {
        image_end: u64,
        memory: u64,
    },
    /// More pieces than one plan holds.
    TooManyPieces,
}

/// The most copies one plan makes (a 4 GiB guest copied in 1 MiB pieces).
const MAX_COPIES: usize = 4096;

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Image(error) => write!(f, "guest image is {error}"),
            Self::BootImage(error) => write!(f, "guest kernel: {error}"),
            Self::TooSmall { image_end, memory } => {
                write!(
                    f,
                    "guest image ends at {image_end:#x}, beyond its {memory:#x} bytes of RAM"
                )
            }
            Self::TooManyPieces => write!(f, "guest image has too many pieces"),
        }
    }
}

/// Where a guest's pieces go in its RAM.
struct Layout {
    /// RAM bytes (whole pages).
    memory: u64,
    /// The first special page.
    special: u64,
    start_info_address: u64,
    initrd_address: u64,
}

/// Lays out a guest of `memory_kib` whose kernel ends at `image_end`,
/// with an initrd of `initrd_size` bytes ending at most at `initrd_limit`
/// (the Linux boot protocol's bound): the special pages at the top, the
/// start info below them, the initrd below that, page-aligned.
fn layout(
    memory_kib: u64,
    image_end: u64,
    initrd_size: u64,
    initrd_limit: Option<u64>,
) -> Result<Layout, BuildError> {
    let memory = (memory_kib * 1024) & !0xfff;
    let special = memory.saturating_sub(SPECIAL_PAGES * 4096);
    let start_info_address = special.saturating_sub(BLOCK_SIZE as u64) & !0xfff;
    let initrd_top = initrd_limit.map_or(start_info_address, |limit| limit.min(start_info_address));
    let initrd_address = initrd_top.saturating_sub(initrd_size) & !0xfff;
    if image_end > initrd_address || initrd_size > initrd_top || special < 0x20_0000 {
        return Err(BuildError::TooSmall { image_end, memory });
    }
    Ok(Layout {
        memory,
        special,
        start_info_address,
        initrd_address,
    })
}

/// Whether a PVH kernel ending at `image_end` and an initrd of
/// `initrd_size` bytes fit a guest of `memory_kib`: the check [`plan`]
/// makes, for a kernel whose extent is known before its bytes are (a
/// bzImage's ELF headers, a cached kernel).
pub fn check_fit(memory_kib: u64, image_end: u64, initrd_size: u64) -> Result<(), BuildError> {
    layout(memory_kib, image_end, initrd_size, None).map(drop)
}

/// The xenstore and console rings' guest frames of a guest of
/// `memory_kib` (the special pages at the top of its RAM): known before
/// its kernel is, so its rings can be served while it is built.
pub fn special_frames(memory_kib: u64) -> (u64, u64) {
    let special = ((memory_kib * 1024) & !0xfff).saturating_sub(SPECIAL_PAGES * 4096) / 4096;
    (special, special + 1)
}

/// Plans the build. The guest's RAM is `[0, memory)`; the special pages
/// sit at its top, the start info just below them.
pub fn plan(spec: &GuestSpec<'_>) -> Result<BuildPlan, BuildError> {
    let mut copies = Vec::new();
    let mut boot_image = None;
    let (entry, image_end) = match spec.kernel {
        KernelImage::Elf(bytes) => {
            let image = pvh::image::parse(bytes).map_err(BuildError::Image)?;
            for segment in &image.segments {
                let mut done = 0u64;
                while done < segment.file_size {
                    let length = (segment.file_size - done).min(COPY_CHUNK as u64);
                    copies.push(Copy {
                        address: segment.start + done,
                        source: Source::Image {
                            offset: (segment.file_offset + done) as usize,
                            length: length as usize,
                        },
                    });
                    done += length;
                }
            }
            (image.entry, image.end)
        }
        KernelImage::Cached(kernel) => {
            for (index, run) in kernel.runs().iter().enumerate() {
                copies.push(Copy {
                    address: run.address,
                    source: Source::CachedRun(index),
                });
            }
            (kernel.entry, kernel.end)
        }
        KernelImage::BzImage(bytes) => {
            let boot = pvh::linux_boot::parse(bytes).map_err(BuildError::BootImage)?;
            let mut done = 0;
            let length = boot.protected_mode.len();
            while done < length {
                let piece = (length - done).min(COPY_CHUNK);
                copies.push(Copy {
                    address: pvh::linux_boot::CODE32_START + done as u64,
                    source: Source::Image {
                        offset: boot.protected_mode.start + done,
                        length: piece,
                    },
                });
                done += piece;
            }
            // The initrd and the special pages stay above what the kernel
            // uses while it decompresses and boots.
            let end = boot
                .boot_memory_end()
                .max(pvh::linux_boot::CODE32_START + length as u64);
            boot_image = Some(boot);
            (pvh::linux_boot::CODE32_START as u32, end)
        }
    };
    let initrd_size = spec.initrd.map_or(0, |initrd| initrd.len() as u64);
    let Layout {
        memory,
        special,
        start_info_address,
        initrd_address,
    } = layout(
        spec.memory_kib,
        image_end,
        initrd_size,
        boot_image
            .as_ref()
            .map(|boot| u64::from(boot.initrd_addr_max) + 1),
    )?;
    let mut done = 0u64;
    while done < initrd_size {
        let length = (initrd_size - done).min(COPY_CHUNK as u64);
        copies.push(Copy {
            address: initrd_address + done,
            source: Source::Initrd {
                offset: done as usize,
                length: length as usize,
            },
        });
        done += length;
    }
    copies.push(Copy {
        address: start_info_address,
        source: Source::StartInfo,
    });
    copies.push(Copy {
        address: ACPI_ADDRESS,
        source: Source::Acpi,
    });
    if boot_image.is_some() {
        // No firmware: Linux's real-mode restart lands on this instead.
        copies.push(Copy {
            address: pvh::acpi::RESET_VECTOR_ADDRESS,
            source: Source::ResetVector,
        });
    }
    if copies.len() > MAX_COPIES {
        return Err(BuildError::TooManyPieces);
    }
    let (acpi, rsdp) = pvh::acpi::build_for(ACPI_ADDRESS, spec.vcpus, boot_image.is_some());
    // RAM below 640 KiB (Linux puts its real-mode trampoline there), the
    // legacy VGA/BIOS hole reserved, RAM up to the special pages, which
    // are reserved.
    let ram = [
        MemoryEntry {
            address: 0,
            size: 0xa_0000,
            kind: memmap_type::RAM,
        },
        MemoryEntry {
            address: 0xa_0000,
            size: 0x6_0000,
            kind: memmap_type::RESERVED,
        },
        MemoryEntry {
            address: 0x10_0000,
            size: special - 0x10_0000,
            kind: memmap_type::RAM,
        },
        MemoryEntry {
            address: special,
            size: memory - special,
            kind: memmap_type::RESERVED,
        },
    ];
    let initrd_module = [pvh::start_info::ModuleEntry {
        address: initrd_address,
        size: initrd_size,
        cmdline: "",
    }];
    let modules: &[pvh::start_info::ModuleEntry<'_>] = if spec.initrd.is_some() {
        &initrd_module
    } else {
        &[]
    };
    let (start_info, start_info_address) = match (&boot_image, spec.kernel) {
        (Some(boot), KernelImage::BzImage(bytes)) => {
            let mut block = [0; BLOCK_SIZE];
            let zero_page = pvh::linux_boot::build(
                bytes,
                boot,
                &pvh::linux_boot::ZeroPageInput {
                    base: ZERO_PAGE_ADDRESS,
                    memory: &ram,
                    cmdline: spec.cmdline,
                    initrd: spec.initrd.map(|_| (initrd_address, initrd_size)),
                    rsdp,
                },
            );
            block[..zero_page.len()].copy_from_slice(&zero_page);
            (block, ZERO_PAGE_ADDRESS)
        }
        _ => (
            pvh::start_info::build(&StartInfoInput {
                base: start_info_address,
                flags: 0,
                memory: &ram,
                cmdline: spec.cmdline,
                modules,
                rsdp,
            }),
            start_info_address,
        ),
    };
    // The start info (or zero page) is copied in last but one.
    if let Some(copy) = copies
        .iter_mut()
        .find(|copy| copy.source == Source::StartInfo)
    {
        copy.address = start_info_address;
    }
    Ok(BuildPlan {
        copies,
        start_info,
        acpi,
        start_info_address,
        entry,
        store_frame: special / 4096,
        console_frame: special / 4096 + 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_segments_then_start_info_at_the_top() {
        let image = pvh::image::testing::elf_image(0x10_0000, 0x2000, Some(0x10_0000));
        let plan = plan(&GuestSpec {
            kernel: KernelImage::Elf(image.bytes()),
            memory_kib: 32 * 1024,
            vcpus: 1,
            cmdline: "role=offer",
            initrd: None,
        })
        .expect("plan");
        assert_eq!(plan.entry, 0x10_0000);
        assert_eq!(
            plan.copies[0],
            Copy {
                address: 0x10_0000,
                source: Source::Image {
                    offset: 0x200,
                    length: 0x2000
                }
            }
        );
        assert_eq!(plan.store_frame, 32 * 256 - 2);
        assert_eq!(plan.console_frame, 32 * 256 - 1);
        assert!(plan.start_info_address + BLOCK_SIZE as u64 <= plan.store_frame * 4096);
        assert_eq!(plan.start_info_address % 4096, 0);
        assert!(
            plan.copies
                .iter()
                .any(|copy| copy.source == Source::StartInfo)
        );
        // The ACPI tables go to the legacy BIOS area, and the start info
        // points Linux at their RSDP.
        assert!(
            plan.copies
                .iter()
                .any(|copy| copy.source == Source::Acpi && copy.address == ACPI_ADDRESS)
        );
        // A PVH guest reboots by hypercall: nothing at the reset vector.
        assert!(
            !plan
                .copies
                .iter()
                .any(|copy| copy.source == Source::ResetVector)
        );
        assert_eq!(&plan.acpi[0..8], b"RSD PTR ");
        assert_eq!(
            u64::from_le_bytes(plan.start_info[32..40].try_into().unwrap()),
            ACPI_ADDRESS
        );
        assert_eq!(
            &plan.start_info[8..12],
            &0u32.to_le_bytes(),
            "an unprivileged guest"
        );
    }

    /// A minimal bzImage: protocol 2.15, 3 setup sectors, kernel
    /// decompressing to 16 MiB with `init_size` MiB, then `tail` bytes.
    fn bzimage(init_size_mib: u32, tail: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; 4 * 512 + tail];
        bytes[0x1f1] = 3;
        bytes[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
        bytes[0x201] = 0x6a;
        bytes[0x202..0x206].copy_from_slice(b"HdrS");
        bytes[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        bytes[0x211] = 1;
        bytes[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        bytes[0x238..0x23c].copy_from_slice(&2047u32.to_le_bytes());
        bytes[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes());
        bytes[0x260..0x264].copy_from_slice(&(init_size_mib << 20).to_le_bytes());
        bytes
    }

    #[test]
    fn an_hvm_guest_gets_its_bzimage_at_1_mib_and_a_zero_page() {
        let image = bzimage(40, 3 * COPY_CHUNK / 2);
        let initrd = vec![7u8; 4096];
        let plan = plan(&GuestSpec {
            kernel: KernelImage::BzImage(&image),
            memory_kib: 128 * 1024,
            vcpus: 2,
            cmdline: "console=hvc0",
            initrd: Some(&initrd),
        })
        .expect("plan");
        assert_eq!(plan.entry, 0x10_0000);
        assert_eq!(plan.start_info_address, ZERO_PAGE_ADDRESS);
        let kernel: Vec<_> = plan
            .copies
            .iter()
            .filter(|copy| matches!(copy.source, Source::Image { .. }))
            .collect();
        assert_eq!(kernel.len(), 2);
        assert_eq!(
            kernel[0],
            &Copy {
                address: 0x10_0000,
                source: Source::Image {
                    offset: 2048,
                    length: COPY_CHUNK
                }
            }
        );
        assert!(
            plan.copies
                .iter()
                .any(|copy| copy.source == Source::StartInfo && copy.address == ZERO_PAGE_ADDRESS)
        );
        // No firmware: the reset vector holds the stub that resets
        // through port 0xCF9 (Linux's real-mode restart lands there).
        assert!(
            plan.copies
                .iter()
                .any(|copy| copy.source == Source::ResetVector
                    && copy.address == pvh::acpi::RESET_VECTOR_ADDRESS)
        );
        // The zero page: the image's header, the command line after it,
        // the initrd above the kernel's boot memory (16 + 40 MiB).
        let zero_page = &plan.start_info;
        assert_eq!(&zero_page[0x202..0x206], b"HdrS");
        assert_eq!(&zero_page[0x1000..0x100d], b"console=hvc0\0");
        let initrd_at = u32::from_le_bytes(zero_page[0x218..0x21c].try_into().unwrap());
        assert!(u64::from(initrd_at) >= 56 << 20);
        assert_eq!(zero_page[0x1e8], 4, "four e820 entries");
        // The HVM FADT does not say "no VGA" (Linux would take it for PVH).
        assert_eq!(plan.acpi[128 + 109], 0x20);
    }

    #[test]
    fn an_hvm_guest_too_small_for_its_kernels_boot_memory_is_refused() {
        let image = bzimage(200, 4096);
        let result = plan(&GuestSpec {
            kernel: KernelImage::BzImage(&image),
            memory_kib: 128 * 1024,
            vcpus: 1,
            cmdline: "",
            initrd: None,
        });
        assert!(matches!(result, Err(BuildError::TooSmall { .. })));
        assert!(matches!(
            plan(&GuestSpec {
                kernel: KernelImage::BzImage(b"not a kernel"),
                memory_kib: 128 * 1024,
                vcpus: 1,
                cmdline: "",
                initrd: None,
            }),
            Err(BuildError::BootImage(_))
        ));
    }

    #[test]
    fn a_guest_too_small_for_its_image_is_refused() {
        let image = pvh::image::testing::elf_image(0x10_0000, 0x2000, Some(0x10_0000));
        let result = plan(&GuestSpec {
            kernel: KernelImage::Elf(image.bytes()),
            memory_kib: 1024,
            vcpus: 1,
            cmdline: "",
            initrd: None,
        });
        assert!(matches!(result, Err(BuildError::TooSmall { .. })));
        assert!(matches!(
            plan(&GuestSpec {
                kernel: KernelImage::Elf(b"junk"),
                memory_kib: 1024,
                vcpus: 1,
                cmdline: "",
                initrd: None,
            }),
            Err(BuildError::Image(_))
        ));
    }

    #[test]
    fn the_fit_check_and_ring_frames_agree_with_the_plan() {
        let image = pvh::image::testing::elf_image(0x100_0000, 0x2000, Some(0x100_0000));
        let end = pvh::image::parse(image.bytes()).unwrap().end;
        let initrd = vec![7u8; 3 * COPY_CHUNK];
        for memory_mib in [16u64, 19, 20, 32] {
            let spec = GuestSpec {
                kernel: KernelImage::Elf(image.bytes()),
                memory_kib: memory_mib * 1024,
                vcpus: 1,
                cmdline: "",
                initrd: Some(&initrd),
            };
            let planned = plan(&spec);
            let checked = check_fit(spec.memory_kib, end, initrd.len() as u64);
            assert_eq!(planned.is_ok(), checked.is_ok(), "{memory_mib} MiB");
            if let Ok(planned) = planned {
                assert_eq!(
                    special_frames(spec.memory_kib),
                    (planned.store_frame, planned.console_frame)
                );
            } else {
                assert!(matches!(checked, Err(BuildError::TooSmall { .. })));
            }
        }
    }

    #[test]
    fn an_initrd_is_module_zero_below_the_start_info() {
        let image = pvh::image::testing::elf_image(0x100_0000, 0x2000, Some(0x100_0000));
        let initrd = vec![7u8; 3 * COPY_CHUNK / 2];
        let plan = plan(&GuestSpec {
            kernel: KernelImage::Elf(image.bytes()),
            memory_kib: 64 * 1024,
            vcpus: 1,
            cmdline: "console=hvc0",
            initrd: Some(&initrd),
        })
        .expect("plan");
        let pieces: Vec<_> = plan
            .copies
            .iter()
            .filter(|copy| matches!(copy.source, Source::Initrd { .. }))
            .collect();
        assert_eq!(pieces.len(), 2, "split into copy-sized pieces");
        let start = pieces[0].address;
        assert_eq!(start % 4096, 0);
        assert!(start + initrd.len() as u64 <= plan.start_info_address);
        let modlist = u64::from_le_bytes(plan.start_info[16..24].try_into().unwrap());
        let at = (modlist - plan.start_info_address) as usize;
        assert_eq!(
            u64::from_le_bytes(plan.start_info[at..at + 8].try_into().unwrap()),
            start
        );
        assert_eq!(plan.start_info[12], 1, "one module");
        // Low RAM for Linux's trampoline, the legacy hole reserved, the
        // special pages reserved.
        assert_eq!(plan.start_info[48], 4);
    }
}
