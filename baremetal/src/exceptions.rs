//! The interrupt descriptor table: one small stub per vector saves every
//! register into an [`ExceptionFrame`] and calls the handler the binary
//! installed, which prints a crash report (or, for an expected interrupt,
//! returns and the stub resumes the interrupted code).

use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Everything the CPU and the stub pushed, lowest address first.
#[repr(C)]
#[derive(Clone, Debug, Default)]
pub struct ExceptionFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// The page-fault vector, whose faulting address is in CR2.
pub const PAGE_FAULT: u64 = 14;

/// The architectural name of an exception vector.
pub fn vector_name(vector: u64) -> &'static str {
    match vector {
        0 => "divide error",
        1 => "debug",
        2 => "non-maskable interrupt",
        3 => "breakpoint",
        4 => "overflow",
        5 => "bound range exceeded",
        6 => "invalid opcode",
        7 => "device not available",
        8 => "double fault",
        10 => "invalid TSS",
        11 => "segment not present",
        12 => "stack-segment fault",
        13 => "general protection fault",
        14 => "page fault",
        16 => "x87 floating-point error",
        17 => "alignment check",
        18 => "machine check",
        19 => "SIMD floating-point error",
        20 => "virtualization exception",
        21 => "control protection",
        29 => "VMM communication",
        30 => "security exception",
        _ if vector < 32 => "reserved exception",
        _ => "external interrupt",
    }
}

/// A crash report: the frame plus the control registers at the time.
pub struct CrashReport<'a> {
    pub frame: &'a ExceptionFrame,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
}

impl CrashReport<'_> {
    /// Reads the control registers of the current CPU.
    pub fn capture(frame: &ExceptionFrame) -> CrashReport<'_> {
        use x86_64::registers::control::{Cr0, Cr2, Cr3, Cr4};
        CrashReport {
            frame,
            cr0: Cr0::read_raw(),
            cr2: Cr2::read_raw(),
            cr3: Cr3::read_raw().0.start_address().as_u64(),
            cr4: Cr4::read_raw(),
        }
    }
}

impl fmt::Display for CrashReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.frame;
        writeln!(
            f,
            "exception {} ({}), error code {:#x}",
            r.vector,
            vector_name(r.vector),
            r.error_code
        )?;
        writeln!(
            f,
            "RIP={:#018x} CS={:#06x} RFLAGS={:#010x}",
            r.rip, r.cs, r.rflags
        )?;
        writeln!(
            f,
            "RSP={:#018x} SS={:#06x} CR2={:#018x}",
            r.rsp, r.ss, self.cr2
        )?;
        write_general_registers(
            f,
            [
                r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12,
                r.r13, r.r14, r.r15,
            ],
        )?;
        write!(
            f,
            "CR0={:#010x} CR3={:#018x} CR4={:#010x}",
            self.cr0, self.cr3, self.cr4
        )
    }
}

/// The handler every vector reaches. Returning resumes the interrupted code.
/// Writes RAX..R15 (in that order) three to a line, the layout every crash
/// report here shares.
pub fn write_general_registers(f: &mut dyn fmt::Write, values: [u64; 15]) -> fmt::Result {
    const NAMES: [&str; 15] = [
        "RAX", "RBX", "RCX", "RDX", "RSI", "RDI", "RBP", "R8 ", "R9 ", "R10", "R11", "R12", "R13",
        "R14", "R15",
    ];
    for (row, names) in values.chunks(3).zip(NAMES.chunks(3)) {
        writeln!(
            f,
            "{}={:#018x} {}={:#018x} {}={:#018x}",
            names[0], row[0], names[1], row[1], names[2], row[2]
        )?;
    }
    Ok(())
}

pub type Handler = fn(&mut ExceptionFrame);

static HANDLER: AtomicUsize = AtomicUsize::new(0);

/// Installs the handler called for every exception and interrupt.
pub fn set_handler(handler: Handler) {
    HANDLER.store(handler as usize, Ordering::Release);
}

#[unsafe(no_mangle)]
extern "C" fn baremetal_exception_dispatch(frame: &mut ExceptionFrame) {
    let raw = HANDLER.load(Ordering::Acquire);
    if raw == 0 {
        crate::cpu::halt_forever();
    }
    // SAFETY: the only non-zero value ever stored is a `Handler` cast to
    // usize by `set_handler`, so transmuting it back yields that function.
    let handler: Handler = unsafe { core::mem::transmute::<usize, Handler>(raw) };
    handler(frame);
}

// One 16-byte stub per vector. Vectors where the CPU pushes an error code
// (8, 10-14, 17, 21, 29, 30: bit mask 0x60227d00) skip the dummy push. The
// mask is tested for exceptions only: the assembler shifts modulo 64, so
// without the `< 32` guard interrupt vectors such as 0x48 or 0x51 would
// lose their dummy push and return through a misaligned frame.
core::arch::global_asm!(
    r#"
    .section .text.baremetal_isr, "ax"
    .p2align 4
    .global baremetal_isr_stubs
baremetal_isr_stubs:
    .set baremetal_vector, 0
    .rept 256
    .p2align 4
    .if baremetal_vector < 32
    .if (0x60227d00 >> baremetal_vector) & 1
    pushq $baremetal_vector
    .else
    pushq $0
    pushq $baremetal_vector
    .endif
    .else
    pushq $0
    pushq $baremetal_vector
    .endif
    jmp baremetal_isr_common
    .set baremetal_vector, baremetal_vector + 1
    .endr

baremetal_isr_common:
    pushq %rax
    pushq %rcx
    pushq %rdx
    pushq %rbx
    pushq %rbp
    pushq %rsi
    pushq %rdi
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rdi
    cld
    call baremetal_exception_dispatch
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rdi
    popq %rsi
    popq %rbp
    popq %rbx
    popq %rdx
    popq %rcx
    popq %rax
    addq $16, %rsp
    iretq
    .text
    "#,
    options(att_syntax)
);

/// Address of the stub for `vector`.
pub(crate) fn stub_address(vector: usize) -> u64 {
    unsafe extern "C" {
        static baremetal_isr_stubs: u8;
    }
    // Taking the address of an extern static reads nothing.
    (&raw const baremetal_isr_stubs) as u64 + 16 * vector as u64
}
