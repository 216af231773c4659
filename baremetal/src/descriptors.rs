//! Descriptor tables for long mode: a GDT with one code and one data
//! segment and a TSS whose interrupt stacks catch double faults, NMIs and
//! machine checks on a known-good stack; an IDT whose every vector leads to
//! the exception stubs.

use core::cell::UnsafeCell;

use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::DescriptorTablePointer;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

use crate::exceptions::stub_address;

const IST_STACK_SIZE: usize = 16 * 1024;
/// IST slot (1-based in the IDT, 0-based in the TSS) for fatal exceptions.
const FATAL_IST: u16 = 1;

#[repr(C, align(16))]
struct Stack(UnsafeCell<[u8; IST_STACK_SIZE]>);
// SAFETY: only the CPU writes the stack, on a fatal exception.
unsafe impl Sync for Stack {}

static FATAL_STACK: Stack = Stack(UnsafeCell::new([0; IST_STACK_SIZE]));
static TSS: Once<TaskStateSegment> = Once::new();
static GDT: Once<(GlobalDescriptorTable, Selectors)> = Once::new();

struct Selectors {
    code: SegmentSelector,
    data: SegmentSelector,
    tss: SegmentSelector,
}

#[repr(C, align(16))]
struct Idt(UnsafeCell<[u64; 512]>);
// SAFETY: written once in `load` before it is loaded, read only by the CPU.
unsafe impl Sync for Idt {}

static IDT: Idt = Idt(UnsafeCell::new([0; 512]));

/// Loads the GDT, TSS and IDT on this CPU. Call once, early.
pub fn load() {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        let top = FATAL_STACK.0.get() as u64 + IST_STACK_SIZE as u64;
        tss.interrupt_stack_table[usize::from(FATAL_IST - 1)] = VirtAddr::new(top);
        tss
    });
    let (gdt, selectors) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss = gdt.append(Descriptor::tss_segment(tss));
        (gdt, Selectors { code, data, tss })
    });
    gdt.load();
    // SAFETY: the selectors index the GDT just loaded, which lives forever.
    unsafe {
        CS::set_reg(selectors.code);
        DS::set_reg(selectors.data);
        ES::set_reg(selectors.data);
        SS::set_reg(selectors.data);
        load_tss(selectors.tss);
    }

    let code_selector = u64::from(selectors.code.0);
    let idt = IDT.0.get();
    for vector in 0..256 {
        let handler = stub_address(vector);
        let ist = match vector {
            2 | 8 | 18 => u64::from(FATAL_IST),
            _ => 0,
        };
        // Interrupt gate (type 0xE), present, DPL 0.
        let low = (handler & 0xffff)
            | (code_selector << 16)
            | (ist << 32)
            | (0x8e << 40)
            | ((handler >> 16) & 0xffff) << 48;
        let high = handler >> 32;
        // SAFETY: the IDT is only written here, before `lidt`, on the boot
        // CPU; `vector < 256` keeps both indices inside the 512 words.
        unsafe {
            (*idt)[2 * vector] = low;
            (*idt)[2 * vector + 1] = high;
        }
    }
    let pointer = DescriptorTablePointer {
        limit: (256 * 16 - 1) as u16,
        base: VirtAddr::new(idt as u64),
    };
    // SAFETY: the table is fully built and static, so it outlives its use.
    unsafe { x86_64::instructions::tables::lidt(&pointer) };
}
