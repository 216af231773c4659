//! The 32-bit entry both binaries share: from the protected mode a PVH or
//! multiboot2 loader leaves us in, to long mode on an identity map of the
//! first 4 GiB, then into `baremetal_main(magic, info)` written in Rust.

/// The value `baremetal_main` receives as `magic` when entered through the
/// PVH note: the `hvm_start_info` magic, since EAX is undefined there.
pub const PVH_ENTRY_MAGIC: u32 = 0x336e_c578;

/// Emits the entry code, its boot stack and page tables, and the Xen
/// `PHYS32_ENTRY` ELF note. Expand it once in the binary crate.
///
/// Entry symbols: `baremetal_pvh_entry` (EBX = `hvm_start_info`) and
/// `baremetal_multiboot2_entry` (EAX = magic, EBX = information). Both end
/// in `extern "C" fn baremetal_main(magic: u32, info: u32) -> !`, which the
/// binary defines. The TSC at entry is kept in `baremetal_boot_tsc`.
#[macro_export]
macro_rules! entry_point {
    () => {
        core::arch::global_asm!(
            r#"
            .section .text.boot32, "ax"
            .code32
            .global baremetal_pvh_entry
            .global baremetal_multiboot2_entry
        baremetal_pvh_entry:
            movl $0x336ec578, %eax
        baremetal_multiboot2_entry:
            cli
            cld
            movl %eax, %edi
            movl %ebx, %esi
            rdtsc
            movl %eax, baremetal_boot_tsc
            movl %edx, baremetal_boot_tsc + 4
            movl $baremetal_boot_stack_top, %esp

            /* Long mode needs CPUID 0x80000001 EDX bit 29. */
            movl $0x80000000, %eax
            cpuid
            cmpl $0x80000001, %eax
            jb 9f
            movl $0x80000001, %eax
            cpuid
            btl $29, %edx
            jnc 9f

            /* PML4[0] -> PDPT; PDPT[0..4] -> four page directories of
               2 MiB pages covering 0..4 GiB, identity. */
            movl $baremetal_boot_pdpt, %eax
            orl $0x3, %eax
            movl %eax, baremetal_boot_pml4
            xorl %ecx, %ecx
        1:
            movl %ecx, %eax
            shll $12, %eax
            addl $baremetal_boot_pd, %eax
            orl $0x3, %eax
            movl %eax, baremetal_boot_pdpt(,%ecx,8)
            incl %ecx
            cmpl $4, %ecx
            jne 1b
            xorl %ecx, %ecx
        2:
            movl %ecx, %eax
            shll $21, %eax
            orl $0x83, %eax
            movl %eax, baremetal_boot_pd(,%ecx,8)
            movl %ecx, %eax
            shrl $11, %eax
            movl %eax, baremetal_boot_pd + 4(,%ecx,8)
            incl %ecx
            cmpl $2048, %ecx
            jne 2b

            movl $baremetal_boot_pml4, %eax
            movl %eax, %cr3
            movl %cr4, %eax
            orl $0x20, %eax              /* PAE */
            movl %eax, %cr4
            movl $0xc0000080, %ecx
            rdmsr
            orl $0x100, %eax             /* EFER.LME */
            wrmsr
            movl %cr0, %eax
            orl $0x80000001, %eax        /* PG | PE */
            movl %eax, %cr0
            lgdt baremetal_boot_gdt_pointer
            ljmp $0x08, $3f

        9:  /* No long mode: nothing can be reported without it. */
            hlt
            jmp 9b

            .code64
        3:
            movw $0x10, %ax
            movw %ax, %ds
            movw %ax, %es
            movw %ax, %ss
            xorw %ax, %ax
            movw %ax, %fs
            movw %ax, %gs
            movq $baremetal_boot_stack_top, %rsp
            xorl %ebp, %ebp
            call baremetal_main
        4:  hlt
            jmp 4b

            .section .rodata.boot32, "a"
            .p2align 3
        baremetal_boot_gdt:
            .quad 0
            .quad 0x00af9a000000ffff     /* 0x08: 64-bit code */
            .quad 0x00cf92000000ffff     /* 0x10: data */
        baremetal_boot_gdt_pointer:
            .word 3 * 8 - 1
            .long baremetal_boot_gdt

            .section .note.xen, "a", @note
            .p2align 2
            .long 4                      /* name size */
            .long 8                      /* descriptor size */
            .long 18                     /* XEN_ELFNOTE_PHYS32_ENTRY */
            .asciz "Xen"
            .p2align 2
            .quad baremetal_pvh_entry

            .section .bss.boot, "aw", @nobits
            .p2align 12
            /* The stack comes first so an overflow runs into the page
               below the image's data rather than the live page tables. */
            .global baremetal_boot_stack
        baremetal_boot_stack:
            .skip 256 * 1024
        baremetal_boot_stack_top:
        baremetal_boot_pml4:
            .skip 4096
        baremetal_boot_pdpt:
            .skip 4096
        baremetal_boot_pd:
            .skip 4 * 4096
            .p2align 3
            .global baremetal_boot_tsc
        baremetal_boot_tsc:
            .quad 0
            .text
            "#,
            options(att_syntax)
        );
    };
}

/// The TSC value read on the first instruction of the entry code.
pub fn boot_tsc() -> u64 {
    unsafe extern "C" {
        static baremetal_boot_tsc: u64;
    }
    // SAFETY: written once by the entry code before any Rust runs; only read
    // afterwards. The symbol exists whenever `entry_point!` was expanded,
    // which every binary using this crate does.
    unsafe { core::ptr::read_volatile(&raw const baremetal_boot_tsc) }
}
