//! The Xenolith test guest: a PVH DomU that exercises every hypercall a
//! Xen guest makes (and hostile variants of them), one console line per
//! check, `test-guest: <N> passed, <M> failed` at the end, then powers
//! off. The last line is the verdict. Interrupts stay off throughout and
//! every wait is bounded, so it cannot hang. With `bench` on its command
//! line it measures hypercall costs instead (see `bench`).
#![no_std]
#![no_main]
// A failing check returns its ~200-byte detail by value; that copy, once
// per failure on a 256 KiB stack, is cheaper than any allocator.
#![allow(clippy::result_large_err)]

mod bench;
mod checks;
mod cpu;
mod memory;
mod options;
mod report;
mod start_info;

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use baremetal::exceptions::{CrashReport, ExceptionFrame};
use xen_guest::sched::{self, ShutdownReason};

use checks::{CHECKS, Context};

baremetal::entry_point!();

/// Whether the guest runs the benchmarks rather than the checks (which
/// table a crash report names the step from).
static BENCH_MODE: AtomicBool = AtomicBool::new(false);

/// How the guest ends (`shutdown=` on its command line; power off unless
/// asked), as a raw `SCHEDOP_shutdown` reason: crash reports end the same
/// way as a normal run.
static END_REASON: AtomicU32 = AtomicU32::new(0);

/// Whether the guest reads the xAPIC page after its verdict (`touch-xapic`).
static TOUCH_XAPIC: AtomicBool = AtomicBool::new(false);

#[unsafe(no_mangle)]
extern "C" fn baremetal_main(_magic: u32, start_info_address: u32) -> ! {
    baremetal::descriptors::load();
    baremetal::exceptions::set_handler(on_exception);
    let start = start_info::read(u64::from(start_info_address));
    let options = options::parse(&start.cmdline);
    if let Some(reason) = options.shutdown {
        END_REASON.store(reason.as_raw(), Ordering::Relaxed);
    }
    TOUCH_XAPIC.store(options.touch_xapic, Ordering::Relaxed);
    let mut context = Context::new(start, options);
    if context.options.bench {
        BENCH_MODE.store(true, Ordering::Relaxed);
        bench::run(&mut context);
        finish()
    }
    let count = CHECKS
        .iter()
        .filter(|check| check.applies(&context.options))
        .count();
    report::line(format_args!(
        "starting {count} checks, command line {:?}",
        context.start.cmdline.as_str()
    ));
    for (index, check) in CHECKS.iter().enumerate() {
        if check.applies(&context.options) {
            report::run(index, check.name, || (check.run)(&mut context));
        }
    }
    finish()
}

/// Prints the verdict and powers off, or ends as the command line asked
/// (halting if that is refused).
fn finish() -> ! {
    report::summary();
    if TOUCH_XAPIC.load(Ordering::Relaxed) {
        report::line(format_args!(
            "reading the xAPIC page: {:#x}",
            memory::read_xapic_version()
        ));
    }
    let reason = ShutdownReason::from_raw(END_REASON.load(Ordering::Relaxed))
        .unwrap_or(ShutdownReason::Poweroff);
    let _ = sched::shutdown(reason);
    baremetal::cpu::halt_forever()
}

/// The name of the check (or benchmark) running now, for crash reports.
fn current_check() -> &'static str {
    let current = report::current();
    if BENCH_MODE.load(Ordering::Relaxed) {
        return current.map_or("startup", bench::step_name);
    }
    current
        .and_then(|index| CHECKS.get(index))
        .map_or("startup", |check| check.name)
}

fn on_exception(frame: &mut ExceptionFrame) {
    if frame.vector == 2 {
        checks::on_nmi();
        return;
    }
    if frame.vector >= 32 {
        // Interrupts are off; a stray one is ignored.
        return;
    }
    let crash = CrashReport::capture(frame);
    report::fail_now(
        current_check(),
        format_args!(
            "exception {} ({}) at RIP={:#x} CR2={:#x} error code {:#x}",
            frame.vector,
            baremetal::exceptions::vector_name(frame.vector),
            frame.rip,
            crash.cr2,
            frame.error_code
        ),
    );
    report::lines(format_args!("{crash}"));
    finish()
}

#[panic_handler]
fn panic(panic: &core::panic::PanicInfo<'_>) -> ! {
    report::fail_now(current_check(), format_args!("panic: {panic}"));
    finish()
}
