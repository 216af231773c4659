//! Xen ELF notes (`elfnote.h`): name "Xen", the types a loader reads.

/// The note name, NUL-terminated as it appears in the file.
pub const NOTE_NAME: &[u8] = b"Xen\0";
/// 32-bit protected-mode physical entry point of a PVH kernel.
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
