//! Dom0, the privileged unikernel: entered by the hypervisor at its PVH
//! entry, it takes its memory, reports ready, runs the self-checking test
//! guests, then serves: the toolstack starts the guests the boot modules
//! define, xenstored and the console back end serve their rings, Dom0 takes
//! its own address on the bridge and serves the management API there, and
//! the management shell takes the operator's commands on the serial line.
#![no_std]
#![no_main]

extern crate alloc;

mod api_backend;
mod block_service;
mod boot_guests;
mod console;
mod console_service;
mod control;
mod devices;
mod dom0_network;
mod events;
mod grants;
mod guest_page;
mod guests;
mod hypercall;
mod interrupt_check;
mod management;
mod net_service;
mod store_guests;
mod toolstack;
mod volumes;
mod xenstore_service;

use baremetal::exceptions::{CrashReport, ExceptionFrame};
use dom0::cmdline::{self, TestFault};
use dom0::start_info::{self, Physical, StartInfo};
use linked_list_allocator::LockedHeap;
use log::{info, warn};
use xenolith_abi::cpuid::XEN_CPUID_BASE;
use xenolith_abi::sched::ShutdownReason;

baremetal::entry_point!();

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Most of Dom0's RAM the heap takes (a distro kernel decompresses to
/// about 63 MiB, with its decoder's window beside it).
const HEAP_LIMIT: u64 = 192 * 1024 * 1024;

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// Dom0 runs on the identity map its entry code built (first 4 GiB).
struct IdentityMemory;

impl Physical for IdentityMemory {
    fn read(&self, address: u64, buffer: &mut [u8]) -> bool {
        let Some(end) = address.checked_add(buffer.len() as u64) else {
            return false;
        };
        if address < 0x1000 || end > 1 << 32 {
            return false;
        }
        // SAFETY: inside the identity-mapped first 4 GiB and off page 0;
        // the hypervisor only hands Dom0 addresses of its own RAM.
        unsafe {
            core::ptr::copy_nonoverlapping(address as *const u8, buffer.as_mut_ptr(), buffer.len())
        };
        true
    }
}

#[unsafe(no_mangle)]
extern "C" fn baremetal_main(_magic: u32, start_info_address: u32) -> ! {
    baremetal::descriptors::load();
    baremetal::exceptions::set_handler(on_exception);
    console::init();

    let info = match start_info::parse(&IdentityMemory, u64::from(start_info_address)) {
        Ok(info) => info,
        Err(error) => {
            log::error!("dom0: {error}");
            hypercall::shutdown(ShutdownReason::Crash);
        }
    };
    let options = cmdline::parse(&info.cmdline, |word| warn!("dom0: unknown option {word:?}"));
    let heap = init_heap(&info);

    let milliseconds = baremetal::cpu::rdtsc() / u64::from(tsc_khz().max(1));
    info!(
        "dom0 ready: memory {} MiB, {} ms since hypervisor entry, uses {} KiB (heap {} KiB, {} modules, command line {:?})",
        info.ram_bytes() >> 20,
        milliseconds,
        memory_in_use() / 1024,
        heap / 1024,
        info.modules.len(),
        info.cmdline.as_str()
    );

    match options.fault {
        Some(TestFault::PageFault) => {
            // SAFETY: deliberately reads an unmapped address to test the
            // crash report; the fault handler never returns here.
            unsafe { core::ptr::read_volatile(0x7fff_0000_0000 as *const u64) };
        }
        Some(TestFault::TripleFault) => baremetal::cpu::triple_fault(),
        Some(TestFault::Flood) => {
            for line in 0..10_000 {
                info!("dom0: flood line {line}");
            }
        }
        Some(TestFault::Spin) => {
            x86_64::instructions::interrupts::disable();
            loop {
                core::hint::spin_loop();
            }
        }
        None => {}
    }
    if options.interrupt_check {
        interrupt_check::run();
    }
    if options.device_check {
        devices::check(&info);
    }
    if options.map_check {
        guests::foreign_mapping_check();
    }
    if let Some(cycles) = options.cycles {
        guests::create_destroy_cycles(cycles);
    }
    let events = events::EventHub::new();
    guests::run_test_guests(&info, events.as_ref());
    serve(&info, &options, events.as_ref())
}

/// How long output must pause before the shell's prompt is shown again.
const PROMPT_AFTER_QUIET_NS: u64 = 300_000_000;

/// Dom0's main loop: starts the boot guests, then serves rings, domain
/// events and the operator until it is time to power off.
fn serve(info: &StartInfo, options: &cmdline::Options, events: Option<&events::EventHub>) -> ! {
    let free_before = control::free_kib();
    let mut toolstack = toolstack::Toolstack::new();
    toolstack.blocks.set_disk(devices::first_disk(info));
    toolstack.nets.set_nic(devices::first_nic(info));
    let plan = boot_guests::define(info, &mut toolstack);
    // On the network before the guests start, so Dom0 asks DHCP first.
    let mut network =
        dom0_network::Dom0Network::start(plan.appliance.as_ref(), plan.files, &mut toolstack);
    // Each is built in turn between other work; the toolstack logs a
    // refusal (once).
    for index in plan.start {
        let _ = toolstack.create(index);
    }
    let interactive = !(options.poweroff || options.exit_when_idle);
    let mut management = management::Management::new(interactive);
    let mut had_guests = toolstack.guests().next().is_some();
    if events.is_some() {
        // Disk rings are read when their event arrives (see below).
        toolstack.blocks.expect_events();
    }
    loop {
        let ports = toolstack.ports();
        if let Some(events) = events {
            let rings: alloc::vec::Vec<_> = toolstack.blocks.ports().collect();
            for &port in &ports {
                if events.take(port) && rings.contains(&port) {
                    toolstack.blocks.notified(port);
                }
            }
            if events.take(events.domain_exception) {
                toolstack.on_domain_exception();
            }
            if let Some(port) = events.console_input {
                events.take(port);
            }
        } else {
            toolstack.on_domain_exception();
        }
        toolstack.service();
        if let Some(network) = &mut network {
            network.service(&mut toolstack);
        }
        management.service(
            &mut toolstack,
            network.as_ref().map(dom0_network::Dom0Network::status),
        );
        had_guests |= toolstack.guests().next().is_some();
        if !interactive && toolstack.idle() {
            power_off(options, &toolstack, free_before, had_guests);
        }
        if toolstack.busy() {
            // Background work goes a bounded step at a time, after the
            // rings and the operator had their turn; guests run first.
            toolstack.background_step();
            hypercall::yield_now();
            continue;
        }
        // Device interrupts (the NIC's frames) end a wait too.
        let network_wait = network
            .as_mut()
            .and_then(dom0_network::Dom0Network::wait_ns);
        match events {
            // The prompt comes back once output has paused, not after
            // every burst of guest console lines.
            Some(events) if interactive && !console::prompt_shown() => {
                let prompt_due = network_wait.is_none_or(|wait| wait >= PROMPT_AFTER_QUIET_NS);
                let timeout = if prompt_due {
                    PROMPT_AFTER_QUIET_NS
                } else {
                    network_wait.unwrap_or(PROMPT_AFTER_QUIET_NS)
                };
                if !events.wait(&toolstack.ports(), Some(timeout)) && prompt_due {
                    management.prompt();
                }
            }
            Some(events) => {
                events.wait(&toolstack.ports(), network_wait);
            }
            None => {
                if interactive {
                    management.prompt();
                }
                hypercall::yield_now();
            }
        }
    }
}

/// Every guest has stopped and Dom0 was asked to power off then.
fn power_off(
    options: &cmdline::Options,
    toolstack: &toolstack::Toolstack,
    free_before: u64,
    had_guests: bool,
) -> ! {
    let outcomes = toolstack.outcomes;
    if had_guests {
        info!(
            "dom0: all guests done ({} powered off, {} did not); free memory {free_before} KiB before, {} KiB after",
            outcomes.powered_off,
            outcomes.failed,
            control::free_kib()
        );
    }
    let failed = options.exit_when_idle && outcomes.failed > 0;
    info!("dom0: powering off as asked");
    let code = control::power_off(failed);
    warn!("dom0: the hypervisor refused to power off ({code}); shutting Dom0 down");
    hypercall::shutdown(ShutdownReason::Poweroff)
}

/// Gives the heap the RAM above the image, below the boot data.
fn init_heap(info: &StartInfo) -> u64 {
    // Taking the address of a linker symbol reads nothing.
    let image_end = (&raw const __image_end as u64).next_multiple_of(4096);
    let Some(ram) = info.memory.iter().find(|region| {
        region.kind == 1 && region.range.start <= image_end && image_end < region.range.end
    }) else {
        warn!("dom0: no RAM after the image; running without a heap");
        return 0;
    };
    let boot_data = info
        .modules
        .iter()
        .map(|module| module.range.start)
        .chain([info.block.start]);
    let end = boot_data
        .filter(|&start| start >= image_end)
        .fold(ram.range.end, u64::min);
    let size = end.saturating_sub(image_end).min(HEAP_LIMIT);
    // SAFETY: [image_end, image_end + size) is Dom0 RAM that holds neither
    // the image, the boot modules nor the start info, and nothing else
    // uses it.
    unsafe { HEAP.lock().init(image_end as *mut u8, size as usize) };
    size
}

/// Bytes Dom0 uses: its image (code, data, stacks) and the heap in use.
pub fn memory_in_use() -> u64 {
    // Taking the addresses of linker symbols reads nothing.
    let image = &raw const __image_end as u64 - &raw const __image_start as u64;
    image + HEAP.lock().used() as u64
}

/// The TSC frequency from the Xen CPUID leaf base+3.
fn tsc_khz() -> u32 {
    baremetal::cpu::cpuid(XEN_CPUID_BASE + 3, 0)[2]
}

fn on_exception(frame: &mut ExceptionFrame) {
    if frame.vector == interrupt_check::CLOCK_VECTOR {
        interrupt_check::on_clock_interrupt();
        return;
    }
    if devices::on_interrupt(frame.vector) {
        return;
    }
    if frame.vector >= 32 {
        return;
    }
    let report = CrashReport::capture(frame);
    console::write_emergency(format_args!("dom0: {report}\n"));
    hypercall::shutdown(ShutdownReason::Crash);
}

#[panic_handler]
fn panic(panic: &core::panic::PanicInfo<'_>) -> ! {
    console::write_emergency(format_args!("dom0: panic: {panic}\n"));
    hypercall::shutdown(ShutdownReason::Crash)
}
