//! The Xenolith hypervisor binary: entered by GRUB (multiboot2) or a PVH
//! loader, it takes the machine, builds Dom0 and runs it under AMD SVM.
#![no_std]
#![no_main]

extern crate alloc;

mod dom0_loader;
mod host_memory;
mod hw;
mod logger;
mod machine;

use core::fmt;

use baremetal::exceptions::{CrashReport, ExceptionFrame};
use hypervisor::boot::{self, BootInfo, cmdline};
use hypervisor::memory::HostPhysAddr;
use log::{error, info, warn};

use crate::hw::power::{self, StopReason};

baremetal::entry_point!();

// The multiboot2 header (magic, architecture i386, length, checksum, end
// tag) GRUB looks for in the first 32 KiB of the image.
core::arch::global_asm!(
    r#"
    .section .multiboot2, "a"
    .p2align 3
multiboot2_header:
    .long 0xe85250d6
    .long 0
    .long multiboot2_header_end - multiboot2_header
    .long -(0xe85250d6 + (multiboot2_header_end - multiboot2_header))
    .short 0
    .short 0
    .long 8
multiboot2_header_end:
    .text
    "#,
    options(att_syntax)
);

/// Stops with a one-line reason: the answer to bad boot input.
fn fatal(reason: fmt::Arguments<'_>) -> ! {
    error!("fatal: {reason}");
    power::stop(StopReason::Fatal)
}

#[unsafe(no_mangle)]
extern "C" fn baremetal_main(magic: u32, info_address: u32) -> ! {
    hw::serial::init();
    baremetal::descriptors::load();
    baremetal::exceptions::set_handler(on_exception);
    hw::pic::mask_all();
    let entry_tsc = baremetal::entry::boot_tsc();
    let measurement = hw::pit::measure_tsc_hz();
    let tsc_hz = measurement.map(|measured| measured.estimate.tsc_hz);
    logger::init(
        entry_tsc,
        tsc_hz.unwrap_or(2_000_000_000),
        log::LevelFilter::Info,
    );
    info!("Xenolith hypervisor {}", env!("CARGO_PKG_VERSION"));
    match measurement {
        Some(measured) => info!(
            "TSC runs at {} MHz (within {} ppm; {} PIT window{})",
            measured.estimate.tsc_hz / 1_000_000,
            measured.estimate.error_ppm,
            measured.windows,
            if measured.windows == 1 { "" } else { "s" }
        ),
        None => warn!("no PIT to measure the TSC against; assuming 2 GHz"),
    }

    let boot = read_boot_info(magic, info_address);
    let options = cmdline::parse(&boot.cmdline);
    log::set_max_level(options.log_level.filter());
    for warning in &options.warnings {
        warn!(
            "command line: {:?}: {}",
            warning.word.as_str(),
            warning.reason
        );
    }
    report_boot_info(&boot);
    power::discover(&hw::memory::LoaderMemory, boot.rsdp);

    if hw::fpu::init().is_none() {
        fatal(format_args!(
            "the CPU lacks XSAVE, needed to keep guests' FPU state apart"
        ));
    }
    let svm = match hw::svm::check() {
        Ok(features) => features,
        Err(reason) => fatal(format_args!("SVM not available: {reason}")),
    };
    info!(
        "SVM with nested paging, {} address space ids{}",
        svm.address_space_ids,
        if svm.next_rip_save {
            ", next-RIP save"
        } else {
            ", no next-RIP save"
        }
    );

    let mut frames = host_memory::frame_allocator(&boot);
    let plan = dom0_loader::plan(&boot, &options, &mut frames);
    host_memory::take_over_paging(&boot, &mut frames);
    host_memory::init_heap(&mut frames);
    hw::lapic::init(logger::tsc_khz() as u64 * 1000);
    info!(
        "local APIC timer: {} ticks per ms",
        hw::lapic::ticks_per_millisecond()
    );
    let dom0 = dom0_loader::load(&boot, &options, plan, &mut frames);
    let dom0_ram = dom0.ram;
    // The machine runs for good, so the boot information may live as long.
    let boot: &'static BootInfo = alloc::boxed::Box::leak(alloc::boxed::Box::new(boot));
    let machine = machine::Machine::new(frames, dom0, &options, &boot.cmdline);
    let micros = logger::micros_since_entry();
    info!(
        "hypervisor entry -> dom0 entry: {}.{:03} ms; hypervisor uses {} KiB, dom0 has {} MiB",
        micros / 1000,
        micros % 1000,
        host_memory::hypervisor_footprint(machine.frames(), dom0_ram) / 1024,
        dom0_ram.len() >> 20
    );
    machine.run()
}

fn read_boot_info(magic: u32, info_address: u32) -> BootInfo {
    let memory = hw::memory::LoaderMemory;
    let address = HostPhysAddr(u64::from(info_address));
    let parsed = match magic {
        boot::multiboot2::MAGIC => boot::multiboot2::parse(&memory, address),
        baremetal::entry::PVH_ENTRY_MAGIC => boot::pvh::parse(&memory, address),
        other => Err(boot::BootInfoError::UnknownLoader { magic: other }),
    };
    parsed.unwrap_or_else(|error| fatal(format_args!("{error}")))
}

fn report_boot_info(boot: &BootInfo) {
    info!(
        "loader: {:?}, command line: {:?}",
        boot.loader,
        boot.cmdline.as_str()
    );
    for region in &boot.memory {
        info!(
            "memory {:#014x}-{:#014x} {:?} ({} KiB)",
            region.range.start.0,
            region.range.end.0,
            region.kind,
            region.range.len() / 1024
        );
    }
    for (index, module) in boot.modules.iter().enumerate() {
        info!(
            "module {index}: {} ({} KiB) {:?}",
            module.range,
            module.range.len() / 1024,
            module.cmdline.as_str()
        );
    }
}

/// Exceptions in the hypervisor itself are bugs: report and stop. An
/// external interrupt that slipped through is acknowledged and ignored; an
/// NMI (held while a guest ran, delivered at STGI) is noted.
fn on_exception(frame: &mut ExceptionFrame) {
    if frame.vector == u64::from(hw::lapic::TIMER_VECTOR) {
        hw::lapic::end_of_interrupt();
        return;
    }
    if frame.vector == u64::from(hw::lapic::SPURIOUS_VECTOR) {
        return;
    }
    if let Ok(vector) = u8::try_from(frame.vector)
        && hw::device_interrupts::DOM0_VECTORS.contains(&vector)
    {
        hw::device_interrupts::record(vector);
        hw::lapic::end_of_interrupt();
        return;
    }
    if frame.vector >= 32 {
        hw::pic::acknowledge(frame.vector);
        hw::lapic::end_of_interrupt();
        return;
    }
    if frame.vector == NMI {
        // No logging here: the NMI may have interrupted a log writer.
        NMI_COUNT.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        return;
    }
    let report = CrashReport::capture(frame);
    hw::serial::write_fmt_emergency(format_args!("\nhypervisor crashed: {report}\n"));
    power::stop(StopReason::Fatal)
}

const NMI: u64 = 2;
/// NMIs taken so far (for diagnostics).
static NMI_COUNT: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

#[panic_handler]
fn panic(panic: &core::panic::PanicInfo<'_>) -> ! {
    hw::serial::write_fmt_emergency(format_args!("\nhypervisor panic: {panic}\n"));
    power::stop(StopReason::Fatal)
}
