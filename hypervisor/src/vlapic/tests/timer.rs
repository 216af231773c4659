//! The APIC timer with simulated time: one-shot, periodic, TSC deadline.

use super::*;

fn ns(nanoseconds: u64) -> SystemTime {
    SystemTime::from_nanos(nanoseconds)
}

fn write(lapic: &mut VirtualLapic, register: u64, value: u32, now: SystemTime) {
    lapic.mmio_write(at(register), 4, u64::from(value), now);
}

fn read(lapic: &mut VirtualLapic, register: u64, now: SystemTime) -> u32 {
    lapic.mmio_read(at(register), 4, now) as u32
}

#[test]
fn one_shot_fires_once_at_its_deadline() {
    let mut lapic = xapic(0);
    write(&mut lapic, offset::LVT_TIMER, 0x30, T0);
    // Divide by 2 (the reset value): 1000 counts take 2000 ns.
    write(&mut lapic, offset::TIMER_INITIAL, 1000, T0);
    assert_eq!(lapic.next_timer_deadline(), Some(ns(2000)));
    assert_eq!(read(&mut lapic, offset::TIMER_INITIAL, ns(1000)), 1000);
    assert_eq!(read(&mut lapic, offset::TIMER_CURRENT, ns(1000)), 500);
    assert!(!lapic.poll(ns(1999)));
    assert!(lapic.requests().is_empty());
    assert!(lapic.poll(ns(2000)));
    assert_eq!(inject(&mut lapic), Some(Vector(0x30)));
    assert_eq!(read(&mut lapic, offset::TIMER_CURRENT, ns(2500)), 0);
    assert_eq!(lapic.next_timer_deadline(), None);
    assert!(!lapic.poll(ns(100_000)));
    assert!(lapic.requests().is_empty());
}

#[test]
fn periodic_reloads_and_folds_missed_periods() {
    let mut lapic = xapic(0);
    write(&mut lapic, offset::LVT_TIMER, 0x0002_0031, T0);
    write(&mut lapic, offset::TIMER_DIVIDE, 0b1011, T0);
    write(&mut lapic, offset::TIMER_INITIAL, 100, T0);
    assert_eq!(lapic.next_timer_deadline(), Some(ns(100)));
    assert!(lapic.poll(ns(100)));
    assert_eq!(lapic.next_timer_deadline(), Some(ns(200)));
    assert_eq!(inject(&mut lapic), Some(Vector(0x31)));
    end_of_interrupt(&mut lapic);
    assert!(!lapic.poll(ns(150)));
    assert_eq!(read(&mut lapic, offset::TIMER_CURRENT, ns(150)), 50);
    // Nine periods go by unpolled: one interrupt, next deadline on the grid.
    assert!(lapic.poll(ns(1050)));
    assert_eq!(lapic.next_timer_deadline(), Some(ns(1100)));
    assert_eq!(read(&mut lapic, offset::TIMER_CURRENT, ns(1050)), 50);
    assert_eq!(inject(&mut lapic), Some(Vector(0x31)));
    assert_eq!(inject(&mut lapic), None);
    end_of_interrupt(&mut lapic);
    assert!(lapic.poll(ns(1100)));
    assert_eq!(inject(&mut lapic), Some(Vector(0x31)));
}

#[test]
fn a_masked_timer_counts_without_interrupting() {
    let mut lapic = xapic(0);
    write(&mut lapic, offset::LVT_TIMER, LVT_MASKED | 0x0002_0031, T0);
    write(&mut lapic, offset::TIMER_DIVIDE, 0b1011, T0);
    write(&mut lapic, offset::TIMER_INITIAL, 100, T0);
    assert_eq!(lapic.next_timer_deadline(), None);
    assert_eq!(read(&mut lapic, offset::TIMER_CURRENT, ns(30)), 70);
    assert!(!lapic.poll(ns(250)));
    assert!(lapic.requests().is_empty());
    // Unmasked at 250: the next reload, at 300, interrupts.
    write(&mut lapic, offset::LVT_TIMER, 0x0002_0031, ns(250));
    assert!(lapic.requests().is_empty());
    assert_eq!(lapic.next_timer_deadline(), Some(ns(300)));
    assert!(lapic.poll(ns(300)));
    assert!(lapic.requests().contains(Vector(0x31)));
}

#[test]
fn writing_zero_stops_the_timer() {
    let mut lapic = xapic(0);
    write(&mut lapic, offset::LVT_TIMER, 0x0002_0031, T0);
    write(&mut lapic, offset::TIMER_INITIAL, 100, T0);
    write(&mut lapic, offset::TIMER_INITIAL, 0, ns(50));
    assert_eq!(lapic.next_timer_deadline(), None);
    assert_eq!(read(&mut lapic, offset::TIMER_CURRENT, ns(60)), 0);
    assert!(!lapic.poll(ns(10_000)));
}

#[test]
fn rewriting_the_initial_count_restarts_the_countdown() {
    let mut lapic = xapic(0);
    write(&mut lapic, offset::LVT_TIMER, 0x31, T0);
    write(&mut lapic, offset::TIMER_DIVIDE, 0b1011, T0);
    write(&mut lapic, offset::TIMER_INITIAL, 100, T0);
    write(&mut lapic, offset::TIMER_INITIAL, 100, ns(90));
    assert!(!lapic.poll(ns(150)));
    assert!(lapic.poll(ns(190)));
}

#[test]
fn a_divider_change_keeps_the_count() {
    let mut lapic = xapic(0);
    write(&mut lapic, offset::LVT_TIMER, 0x31, T0);
    write(&mut lapic, offset::TIMER_DIVIDE, 0b1011, T0);
    write(&mut lapic, offset::TIMER_INITIAL, 1000, T0);
    assert_eq!(read(&mut lapic, offset::TIMER_CURRENT, ns(400)), 600);
    // Divide by 2 from 400 ns: 600 counts take 1200 ns more.
    write(&mut lapic, offset::TIMER_DIVIDE, 0b0000, ns(400));
    assert_eq!(lapic.next_timer_deadline(), Some(ns(1600)));
    assert_eq!(read(&mut lapic, offset::TIMER_CURRENT, ns(1000)), 300);
    assert!(lapic.poll(ns(1600)));
}

#[test]
fn one_shot_and_periodic_switch_without_losing_the_countdown() {
    let mut lapic = xapic(0);
    write(&mut lapic, offset::LVT_TIMER, 0x31, T0);
    write(&mut lapic, offset::TIMER_DIVIDE, 0b1011, T0);
    write(&mut lapic, offset::TIMER_INITIAL, 100, T0);
    write(&mut lapic, offset::LVT_TIMER, 0x0002_0031, ns(50));
    assert_eq!(lapic.next_timer_deadline(), Some(ns(100)));
    assert!(lapic.poll(ns(100)));
    assert_eq!(lapic.next_timer_deadline(), Some(ns(200)), "now periodic");
    write(&mut lapic, offset::LVT_TIMER, 0x31, ns(150));
    assert!(lapic.poll(ns(200)));
    assert_eq!(lapic.next_timer_deadline(), None, "one-shot again");
}

#[test]
fn tsc_deadline_mode_fires_at_the_converted_deadline() {
    let mut lapic = xapic(0);
    write(&mut lapic, offset::LVT_TIMER, 0x0004_0040, T0);
    // The count registers do nothing in this mode.
    write(&mut lapic, offset::TIMER_INITIAL, 100, T0);
    assert_eq!(read(&mut lapic, offset::TIMER_INITIAL, T0), 0);
    assert_eq!(lapic.next_timer_deadline(), None);

    lapic.write_tsc_deadline(123_456, ns(5000), ns(10));
    assert_eq!(lapic.tsc_deadline(ns(100)), 123_456);
    assert_eq!(read(&mut lapic, offset::TIMER_CURRENT, ns(100)), 0);
    assert_eq!(lapic.next_timer_deadline(), Some(ns(5000)));
    assert!(!lapic.poll(ns(4999)));
    assert!(lapic.poll(ns(5000)));
    assert_eq!(lapic.tsc_deadline(ns(5000)), 0, "reads zero once fired");
    assert_eq!(inject(&mut lapic), Some(Vector(0x40)));
    end_of_interrupt(&mut lapic);

    // A deadline already passed fires at once; zero disarms.
    lapic.write_tsc_deadline(1, ns(0), ns(6000));
    assert!(lapic.requests().contains(Vector(0x40)));
    lapic.write_tsc_deadline(999, ns(9000), ns(6000));
    lapic.write_tsc_deadline(0, ns(0), ns(6000));
    assert_eq!(lapic.next_timer_deadline(), None);
    assert_eq!(lapic.tsc_deadline(ns(6000)), 0);
}

#[test]
fn changing_into_or_out_of_tsc_deadline_mode_disarms() {
    let mut lapic = xapic(0);
    write(&mut lapic, offset::LVT_TIMER, 0x31, T0);
    write(&mut lapic, offset::TIMER_INITIAL, 100, T0);
    // Outside TSC-deadline mode the MSR reads zero and ignores writes.
    lapic.write_tsc_deadline(500, ns(50), T0);
    assert_eq!(lapic.tsc_deadline(T0), 0);
    assert_eq!(lapic.next_timer_deadline(), Some(ns(200)));

    write(&mut lapic, offset::LVT_TIMER, 0x0004_0031, ns(10));
    assert_eq!(lapic.next_timer_deadline(), None);
    assert_eq!(read(&mut lapic, offset::TIMER_INITIAL, ns(10)), 0);
    lapic.write_tsc_deadline(500, ns(50), ns(10));
    write(&mut lapic, offset::LVT_TIMER, 0x31, ns(20));
    assert_eq!(lapic.next_timer_deadline(), None);
    assert!(!lapic.poll(ns(1000)));
}

#[test]
fn tsc_deadline_mode_needs_cpuid_to_offer_it() {
    let mut lapic = VirtualLapic::new(LapicConfig {
        tsc_deadline_offered: false,
        ..config(0, true)
    });
    mmio_write(&mut lapic, offset::SPURIOUS_VECTOR, 0x1ff);
    write(&mut lapic, offset::LVT_TIMER, 0x0004_0031, T0);
    assert_eq!(
        read(&mut lapic, offset::LVT_TIMER, T0),
        0x31,
        "bit 18 dropped"
    );
    lapic
        .write_apic_base(lapic.apic_base() | APIC_BASE_X2APIC)
        .unwrap();
    assert_eq!(
        lapic.write_msr(msr(offset::LVT_TIMER), 0x0004_0031, T0),
        Err(LapicFault::ReservedBitsSet)
    );
}

#[test]
fn x2apic_timer_registers_through_msrs() {
    let mut lapic = x2apic(0);
    lapic.write_msr(msr(offset::LVT_TIMER), 0xef, T0).unwrap();
    lapic
        .write_msr(msr(offset::TIMER_DIVIDE), 0b0001, T0)
        .unwrap();
    lapic
        .write_msr(msr(offset::TIMER_INITIAL), 250, T0)
        .unwrap();
    assert_eq!(lapic.read_msr(msr(offset::TIMER_CURRENT), ns(400)), Ok(150));
    assert_eq!(lapic.read_msr(msr(offset::TIMER_DIVIDE), ns(400)), Ok(1));
    assert_eq!(
        lapic.write_msr(msr(offset::TIMER_CURRENT), 5, ns(400)),
        Err(LapicFault::ReadOnlyRegister)
    );
    // Reading after the deadline catches the timer up.
    assert_eq!(lapic.read_msr(msr(offset::TIMER_CURRENT), ns(1000)), Ok(0));
    assert_eq!(inject(&mut lapic), Some(Vector(0xef)));
}

#[test]
fn an_illegal_timer_vector_is_a_receive_error() {
    let mut lapic = xapic(0);
    write(&mut lapic, offset::LVT_TIMER, 0x05, T0);
    write(&mut lapic, offset::TIMER_INITIAL, 1, T0);
    assert!(!lapic.poll(ns(10)));
    write(&mut lapic, offset::ERROR_STATUS, 0, ns(10));
    assert_eq!(lapic.error_status(), error_status::RECEIVE_ILLEGAL_VECTOR);
}

#[test]
fn an_unpolled_periodic_count_keeps_reloading() {
    let mut timer = super::super::timer::Timer::new();
    timer.set_mode(TimerMode::Periodic);
    timer.set_divide_configuration(0b1011, T0);
    timer.set_initial_count(100, T0);
    assert_eq!(timer.current_count(ns(99)), 1);
    assert_eq!(timer.current_count(ns(100)), 100);
    assert_eq!(timer.current_count(ns(1020)), 80);
    assert!(timer.poll(ns(1020)));
    assert_eq!(timer.deadline(), Some(ns(1100)));
    assert_eq!(timer.current_count(ns(1020)), 80);
}
