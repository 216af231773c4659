//! The CMOS real-time clock, read once at boot for the guests' wallclock.

use hypervisor::time::RtcReading;
use x86_64::instructions::port::Port;

fn register(index: u8) -> u8 {
    // SAFETY: ports 0x70/0x71 select and read a CMOS register; bit 7 of
    // the index (NMI disable) is kept clear. Dom0 is kept off these ports
    // only by convention: a racing Dom0 could garble one reading, nothing
    // worse.
    unsafe {
        Port::<u8>::new(0x70).write(index & 0x7f);
        Port::<u8>::new(0x71).read()
    }
}

/// UTC seconds since the Unix epoch, or `None` when the clock reads
/// nonsense (or never leaves an update).
pub fn read_unix_seconds() -> Option<u64> {
    // Wait (bounded) until no update is in progress, so the fields agree.
    let mut settled = false;
    for _ in 0..100_000 {
        if register(0x0a) & 0x80 == 0 {
            settled = true;
            break;
        }
    }
    if !settled {
        return None;
    }
    let reading = RtcReading {
        seconds: register(0x00),
        minutes: register(0x02),
        hours: register(0x04),
        day_of_month: register(0x07),
        month: register(0x08),
        year: register(0x09),
        century: Some(register(0x32)).filter(|&century| century != 0 && century != 0xff),
        status_b: register(0x0b),
    };
    reading.to_unix_seconds().ok()
}
