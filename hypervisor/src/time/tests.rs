//! Tests for the time module: scale accuracy, the pvclock layout and
//! version protocol, the system clock, the wallclock, RTC decoding and the
//! guest timers.

use alloc::vec::Vec;

use super::*;

// --- TimeScale -----------------------------------------------------------

#[test]
fn scale_matches_xen_for_round_frequencies() {
    // 1 GHz doubles once to 2 GHz: shift 1, mul 1/2.
    assert_eq!(
        TimeScale::from_frequency(1_000_000_000),
        Ok(TimeScale {
            mul: 0x8000_0000,
            shift: 1
        })
    );
    // 2 GHz is already in (1 GHz, 2 GHz].
    assert_eq!(
        TimeScale::from_frequency(2_000_000_000),
        Ok(TimeScale {
            mul: 0x8000_0000,
            shift: 0
        })
    );
    // 3 GHz halves to 1.5 GHz: mul = (10^9 << 32) / 1.5·10^9, truncated.
    assert_eq!(
        TimeScale::from_frequency(3_000_000_000),
        Ok(TimeScale {
            mul: 2_863_311_530,
            shift: -1
        })
    );
    // 1 Hz doubles thirty times to 2^30.
    assert_eq!(
        TimeScale::from_frequency(1),
        Ok(TimeScale {
            mul: 4_000_000_000,
            shift: 30
        })
    );
}

#[test]
fn zero_frequency_is_refused() {
    assert_eq!(TimeScale::from_frequency(0), Err(TimeError::ZeroFrequency));
    assert_eq!(SystemClock::new(0, 0), Err(TimeError::ZeroFrequency));
}

fn worst_error_ppm(frequency: u64) -> f64 {
    let scale = TimeScale::from_frequency(frequency).expect("non-zero frequency");
    let mut worst: f64 = 0.0;
    for seconds in [1u64, 2, 3, 7, 10, 33, 50, 99, 100] {
        let ticks = frequency * seconds;
        let expected = (seconds * NANOSECONDS_PER_SECOND) as f64;
        let measured = scale.ticks_to_ns(ticks) as f64;
        worst = worst.max(((measured - expected) / expected).abs() * 1e6);
    }
    worst
}

#[test]
fn scale_round_trip_is_within_one_ppm() {
    let mut worst: f64 = 0.0;
    // 1 GHz to 5 GHz in 1 MHz steps, plus every step offset by an odd
    // number of hertz.
    for megahertz in 1_000..=5_000u64 {
        worst = worst.max(worst_error_ppm(megahertz * 1_000_000));
        worst = worst.max(worst_error_ppm(megahertz * 1_000_000 + 123_457));
    }
    // Odd counters: PIT, ACPI PM timer, HPET, a 32 kHz crystal, a
    // 25 MHz APIC timer, TSCs that calibrate to awkward values, 2^32.
    for frequency in [
        1,
        32_768,
        1_193_182,
        3_579_545,
        14_318_180,
        25_000_000,
        999_999_999,
        1_000_000_001,
        2_000_000_001,
        2_394_456_789,
        3_999_999_999,
        4_294_967_296,
        4_999_999_937,
    ] {
        worst = worst.max(worst_error_ppm(frequency));
    }
    println!("worst TSC scale error: {worst:.6} ppm");
    assert!(worst < 1.0, "worst error {worst} ppm");
}

#[test]
fn tsc_khz_round_trips_as_linux_computes_it() {
    for frequency in [
        1_000_000_000u64,
        2_394_456_789,
        3_000_000_000,
        4_999_999_937,
    ] {
        let scale = TimeScale::from_frequency(frequency).expect("non-zero frequency");
        let khz = scale.tsc_khz();
        let expected = frequency / 1000;
        // The division truncates, then a negative shift multiplies the
        // error by up to 4 at these frequencies.
        assert!(khz.abs_diff(expected) <= 4, "{frequency} Hz gave {khz} kHz");
    }
}

#[test]
fn huge_deltas_do_not_overflow() {
    let scale = TimeScale::from_frequency(3_000_000_000).expect("non-zero frequency");
    // 2^63 ticks at 3 GHz is about 97 years.
    let nanoseconds = scale.ticks_to_ns(1 << 63);
    let expected = (1u128 << 63) * 1_000_000_000 / 3_000_000_000;
    // Within 1 ppm.
    assert!((nanoseconds as u128).abs_diff(expected) * 1_000_000 < expected);
}

// --- VcpuTimeInfo and the version protocol --------------------------------

fn sample_info() -> VcpuTimeInfo {
    VcpuTimeInfo {
        version: 6,
        tsc_timestamp: 0x1122_3344_5566_7788,
        system_time: 0x0102_0304_0506_0708,
        tsc_to_system_mul: 0xAABB_CCDD,
        tsc_shift: -2,
        flags: TSC_STABLE,
    }
}

#[test]
fn time_info_layout() {
    let bytes = sample_info().encode();
    assert_eq!(bytes[0..4], 6u32.to_le_bytes());
    assert_eq!(bytes[4..8], [0; 4]);
    assert_eq!(bytes[8..16], 0x1122_3344_5566_7788u64.to_le_bytes());
    assert_eq!(bytes[16..24], 0x0102_0304_0506_0708u64.to_le_bytes());
    assert_eq!(bytes[24..28], 0xAABB_CCDDu32.to_le_bytes());
    assert_eq!(bytes[28], 0xFE);
    assert_eq!(bytes[29], 1);
    assert_eq!(bytes[30..32], [0; 2]);
    assert_eq!(VcpuTimeInfo::decode(&bytes), sample_info());
}

#[test]
fn version_helpers_follow_xen() {
    assert_eq!(version_update_begin(0), 1);
    assert_eq!(version_update_end(1), 2);
    // A version left odd by a torn update still ends up odd, then even.
    assert_eq!(version_update_begin(3), 5);
    assert_eq!(version_update_begin(u32::MAX), 1);
    assert_eq!(version_update_end(u32::MAX), 0);
}

#[derive(Debug, PartialEq, Eq)]
enum Store {
    Version(u32),
    Fields(Vec<u8>),
}

/// A record in plain memory that logs every store, and can replay a
/// writer's stores one at a time between a reader's loads.
struct FakeArea {
    bytes: Vec<u8>,
    log: Vec<Store>,
}

impl FakeArea {
    fn new(size: usize) -> Self {
        Self {
            bytes: alloc::vec![0; size],
            log: Vec::new(),
        }
    }
}

impl VersionedWriter for FakeArea {
    fn version(&self) -> u32 {
        u32::from_le_bytes(self.bytes[0..4].try_into().expect("four bytes"))
    }

    fn write_version(&mut self, version: u32) {
        self.bytes[0..4].copy_from_slice(&version.to_le_bytes());
        self.log.push(Store::Version(version));
    }

    fn write_fields(&mut self, fields: &[u8]) {
        self.bytes[4..4 + fields.len()].copy_from_slice(fields);
        self.log.push(Store::Fields(fields.to_vec()));
    }
}

#[test]
fn publish_stores_odd_version_fields_even_version() {
    let mut area = FakeArea::new(VcpuTimeInfo::SIZE);
    let record = sample_info().encode();
    assert_eq!(publish(&mut area, &record), 2);
    assert_eq!(
        area.log,
        [
            Store::Version(1),
            Store::Fields(record[4..].to_vec()),
            Store::Version(2),
        ]
    );
    assert_eq!(
        VcpuTimeInfo::decode(&area.bytes[..].try_into().expect("32 bytes")),
        {
            VcpuTimeInfo {
                version: 2,
                ..sample_info()
            }
        }
    );
    // The next update goes 3, 4.
    assert_eq!(publish(&mut area, &record), 4);
}

/// A guest reading while a writer runs: before each load, the writer makes
/// its next store (if any is left).
struct RacingReader {
    area: FakeArea,
    pending: Vec<Store>,
}

impl RacingReader {
    fn step_writer(&mut self) {
        if !self.pending.is_empty() {
            match self.pending.remove(0) {
                Store::Version(version) => self.area.write_version(version),
                Store::Fields(fields) => self.area.write_fields(&fields),
            }
        }
    }
}

impl VersionedReader for RacingReader {
    fn load_version(&mut self) -> u32 {
        self.step_writer();
        self.area.version()
    }

    fn load_fields(&mut self, fields: &mut [u8; VcpuTimeInfo::SIZE - 4]) {
        self.step_writer();
        fields.copy_from_slice(&self.area.bytes[4..VcpuTimeInfo::SIZE]);
    }
}

#[test]
fn linux_reader_retries_across_an_update() {
    let old = VcpuTimeInfo {
        version: 0,
        tsc_timestamp: 1_000,
        system_time: 5_000,
        tsc_to_system_mul: 0x8000_0000,
        tsc_shift: 0,
        flags: 0,
    };
    let new = VcpuTimeInfo {
        tsc_timestamp: 2_000,
        system_time: 9_000,
        ..old
    };
    let mut area = FakeArea::new(VcpuTimeInfo::SIZE);
    publish(&mut area, &old.encode());
    // Record the stores of the next update without applying them.
    let mut scratch = FakeArea::new(VcpuTimeInfo::SIZE);
    scratch.bytes.copy_from_slice(&area.bytes);
    publish(&mut scratch, &new.encode());
    let mut reader = RacingReader {
        area,
        pending: scratch.log,
    };
    // Loads interleave with the three stores; the first attempts see an odd
    // or changed version and retry. 2 GHz: 4 000 ticks after 2 000 is
    // 2 000 ns after 9 000.
    assert_eq!(read_system_time(&mut reader, 6_000, 10), Some(11_000));
    assert!(reader.pending.is_empty());
}

#[test]
fn linux_reader_gives_up_on_a_stuck_odd_version() {
    let mut area = FakeArea::new(VcpuTimeInfo::SIZE);
    area.write_version(7);
    let mut reader = RacingReader {
        area,
        pending: Vec::new(),
    };
    assert_eq!(read_system_time(&mut reader, 0, 5), None);
}

// --- SystemClock ---------------------------------------------------------

#[test]
fn system_clock_counts_from_its_zero() {
    let clock = SystemClock::new(3_000_000_000, 1_000_000).expect("valid clock");
    assert_eq!(clock.now(1_000_000), SystemTime::ZERO);
    // A lagging pCPU's reading is clamped to zero.
    assert_eq!(clock.now(10), SystemTime::ZERO);
    let one_second = clock.now(1_000_000 + 3_000_000_000).as_nanos();
    assert!(one_second.abs_diff(NANOSECONDS_PER_SECOND) <= 1);
    assert_eq!(clock.ticks_for_ns(1), 3);
    let odd = SystemClock::new(2_500_000_000, 0).expect("valid clock");
    assert_eq!(odd.ticks_for_ns(1), 3);
    assert_eq!(odd.ticks_for_ns(2), 5);
    assert_eq!(odd.ticks_for_ns(u64::MAX), u64::MAX);
}

#[test]
fn guest_reading_agrees_with_the_hypervisor_clock() {
    let frequency = 2_394_456_789;
    let tsc_at_zero = 123_456_789;
    let clock = SystemClock::new(frequency, tsc_at_zero).expect("valid clock");
    // The guest's TSC runs 2^40 ticks behind the host's.
    let offset = (1u64 << 40).wrapping_neg();
    let sampled_at = tsc_at_zero + 5 * frequency;
    let info = clock.time_info(sampled_at, offset, TSC_STABLE);
    assert_eq!(info.tsc_timestamp, sampled_at.wrapping_sub(1 << 40));
    assert_eq!(info.flags, TSC_STABLE);
    for later in [0, 1, 1_000, frequency, 60 * frequency] {
        let host_tsc = sampled_at + later;
        let guest = info.system_time_at(host_tsc.wrapping_add(offset));
        let host = clock.now(host_tsc).as_nanos();
        assert!(guest.abs_diff(host) <= 2, "guest {guest} host {host}");
    }
}

// --- Wallclock -----------------------------------------------------------

#[test]
fn wallclock_is_utc_at_time_zero() {
    let read_at = SystemTime::from_nanos(2_750_000_000);
    let wallclock = Wallclock::from_utc(1_700_000_000, 500_000_000, read_at).expect("valid");
    assert_eq!(
        wallclock,
        Wallclock {
            seconds: 1_699_999_997,
            nanoseconds: 750_000_000
        }
    );
    assert_eq!(wallclock.utc_at(read_at), (1_700_000_000, 500_000_000));
    assert_eq!(
        wallclock.utc_at(SystemTime::from_nanos(3_500_000_001)),
        (1_700_000_001, 250_000_001)
    );
}

#[test]
fn wallclock_rejects_impossible_inputs() {
    assert_eq!(
        Wallclock::from_utc(10, 1_000_000_000, SystemTime::ZERO),
        Err(TimeError::NanosecondsOutOfRange)
    );
    assert_eq!(
        Wallclock::from_utc(1, 0, SystemTime::from_nanos(2_000_000_000)),
        Err(TimeError::WallclockBeforeEpoch)
    );
}

#[test]
fn wallclock_layout_and_publication() {
    let wallclock = Wallclock {
        seconds: 0x1_2345_6789,
        nanoseconds: 999,
    };
    let bytes = wallclock.encode(0);
    assert_eq!(bytes[4..8], 0x2345_6789u32.to_le_bytes());
    assert_eq!(bytes[8..12], 999u32.to_le_bytes());
    assert_eq!(bytes[12..16], 1u32.to_le_bytes());
    let mut area = FakeArea::new(Wallclock::SIZE);
    assert_eq!(publish(&mut area, &bytes), 2);
    assert_eq!(area.bytes, wallclock.encode(2));
}

// --- RTC -----------------------------------------------------------------

const BCD_24_HOUR: u8 = rtc_register::STATUS_B_24_HOUR;
const BINARY_12_HOUR: u8 = rtc_register::STATUS_B_BINARY;

fn reading(
    date: (u8, u8, u8),
    time: (u8, u8, u8),
    century: Option<u8>,
    status_b: u8,
) -> RtcReading {
    RtcReading {
        year: date.0,
        month: date.1,
        day_of_month: date.2,
        hours: time.0,
        minutes: time.1,
        seconds: time.2,
        century,
        status_b,
    }
}

#[test]
fn rtc_decodes_bcd_24_hour_with_century() {
    let leap_day = reading(
        (0x24, 0x02, 0x29),
        (0x13, 0x45, 0x30),
        Some(0x20),
        BCD_24_HOUR,
    );
    assert_eq!(leap_day.to_unix_seconds(), Ok(1_709_214_330));
    let epoch = reading((0x70, 0x01, 0x01), (0, 0, 0), Some(0x19), BCD_24_HOUR);
    assert_eq!(epoch.to_unix_seconds(), Ok(0));
    let century_leap = reading((0x00, 0x03, 0x01), (0, 0, 0), Some(0x21), BCD_24_HOUR);
    assert_eq!(century_leap.to_unix_seconds(), Ok(4_107_542_400));
}

#[test]
fn rtc_decodes_binary_12_hour() {
    // 1:45:30 PM, binary, 2024-02-29.
    let afternoon = reading((24, 2, 29), (0x80 | 1, 45, 30), Some(20), BINARY_12_HOUR);
    assert_eq!(afternoon.to_unix_seconds(), Ok(1_709_214_330));
    // 12 AM is midnight; 12 PM is noon.
    let midnight = reading((70, 1, 1), (12, 0, 0), None, BINARY_12_HOUR);
    assert_eq!(midnight.to_unix_seconds(), Ok(0));
    let noon = reading((70, 1, 1), (0x80 | 12, 0, 0), None, BINARY_12_HOUR);
    assert_eq!(noon.to_unix_seconds(), Ok(12 * 3600));
    // BCD in 12-hour mode: 11 PM.
    let late = reading((0x70, 0x01, 0x01), (0x80 | 0x11, 0, 0), None, 0);
    assert_eq!(late.to_unix_seconds(), Ok(23 * 3600));
}

#[test]
fn rtc_without_century_pivots_at_1970() {
    let last_of_1999 = reading((0x99, 0x12, 0x31), (0x23, 0x59, 0x59), None, BCD_24_HOUR);
    assert_eq!(last_of_1999.to_unix_seconds(), Ok(946_684_799));
    let start_of_2069 = reading((0x69, 0x01, 0x01), (0, 0, 0), None, BCD_24_HOUR);
    assert_eq!(start_of_2069.to_unix_seconds(), Ok(3_124_224_000));
}

#[test]
fn rtc_rejects_bad_registers() {
    let good = reading(
        (0x24, 0x02, 0x29),
        (0x13, 0x45, 0x30),
        Some(0x20),
        BCD_24_HOUR,
    );
    let cases = [
        (
            RtcReading {
                seconds: 0x1A,
                ..good
            },
            RtcError::InvalidBcd(RtcField::Seconds),
        ),
        (
            RtcReading {
                seconds: 0x60,
                ..good
            },
            RtcError::OutOfRange(RtcField::Seconds),
        ),
        (
            RtcReading {
                minutes: 0xF0,
                ..good
            },
            RtcError::InvalidBcd(RtcField::Minutes),
        ),
        (
            RtcReading {
                hours: 0x24,
                ..good
            },
            RtcError::OutOfRange(RtcField::Hours),
        ),
        (
            RtcReading {
                month: 0x13,
                ..good
            },
            RtcError::OutOfRange(RtcField::Month),
        ),
        (
            RtcReading {
                month: 0x00,
                ..good
            },
            RtcError::OutOfRange(RtcField::Month),
        ),
        (
            RtcReading { year: 0x23, ..good },
            RtcError::OutOfRange(RtcField::DayOfMonth),
        ),
        (
            RtcReading {
                day_of_month: 0x00,
                ..good
            },
            RtcError::OutOfRange(RtcField::DayOfMonth),
        ),
        (
            RtcReading {
                century: Some(0x2A),
                ..good
            },
            RtcError::InvalidBcd(RtcField::Century),
        ),
        (
            RtcReading {
                year: 0x69,
                century: Some(0x19),
                ..good
            },
            RtcError::OutOfRange(RtcField::Year),
        ),
        (
            RtcReading {
                hours: 0,
                status_b: 0,
                ..good
            },
            RtcError::OutOfRange(RtcField::Hours),
        ),
    ];
    for (bad, error) in cases {
        assert_eq!(bad.to_unix_seconds(), Err(error), "{bad:?}");
    }
}

#[test]
fn rtc_day_count_matches_a_naive_count() {
    // Every first and last day of every month, 1970 to 2399, against a
    // day-by-day tally.
    let mut days_before_month: u64 = 0;
    for year in 1970u32..2400 {
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        for month in 1u8..=12 {
            let length: u8 = match month {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            for day in [1, length] {
                let at = reading(
                    ((year % 100) as u8, month, day),
                    (0, 0, 0),
                    Some((year / 100) as u8),
                    BINARY_12_HOUR | BCD_24_HOUR,
                );
                let expected = (days_before_month + u64::from(day) - 1) * 86_400;
                assert_eq!(at.to_unix_seconds(), Ok(expected), "{year}-{month}-{day}");
            }
            days_before_month += u64::from(length);
        }
    }
}

// --- Timers --------------------------------------------------------------

fn at(milliseconds: u64) -> SystemTime {
    SystemTime::from_nanos(milliseconds * 1_000_000)
}

#[test]
fn singleshot_fires_once_at_its_deadline() {
    let mut timers = VcpuTimers::new();
    assert_eq!(timers.next_deadline(), None);
    timers
        .set_singleshot(at(10), 0, at(1))
        .expect("future deadline");
    assert_eq!(timers.next_deadline(), Some(at(10)));
    assert!(!timers.expire(at(9)));
    assert!(timers.expire(at(10)));
    assert_eq!(timers.next_deadline(), None);
    assert!(!timers.expire(at(20)));
}

#[test]
fn singleshot_in_the_past() {
    let mut timers = VcpuTimers::new();
    // Without the flag: due at once.
    timers.set_singleshot(at(5), 0, at(8)).expect("flag clear");
    assert_eq!(timers.next_deadline(), Some(at(5)));
    assert!(timers.expire(at(8)));
    // With the flag: -ETIME, and an armed timer stays as it was.
    timers
        .set_singleshot(at(50), 0, at(8))
        .expect("future deadline");
    let refused = timers.set_singleshot(at(5), VCPU_SSHOTTMR_FUTURE, at(8));
    assert_eq!(refused, Err(TimerError::DeadlinePassed));
    assert_eq!(
        TimerError::DeadlinePassed.errno().as_return(),
        (-62i64) as u64
    );
    assert_eq!(timers.singleshot_deadline(), Some(at(50)));
    // A deadline equal to now is not in the past.
    timers
        .set_singleshot(at(8), VCPU_SSHOTTMR_FUTURE, at(8))
        .expect("not past");
    // Stopping is idempotent.
    timers.stop_singleshot();
    timers.stop_singleshot();
    assert_eq!(timers.next_deadline(), None);
}

#[test]
fn stopped_singleshot_never_fires_and_a_fired_one_fires_once() {
    // What test-guest's timer-stop-singleshot relies on: stopped before
    // its deadline, the timer fires at no later time; preempted past the
    // deadline, it fires (at the next expiry, before the stop is seen)
    // exactly once, and the stop then finds nothing to stop.
    let mut timers = VcpuTimers::new();
    timers.set_singleshot(at(5), 0, at(0)).expect("armed");
    assert!(!timers.expire(at(4)));
    timers.stop_singleshot();
    for later in [5, 6, 1_000] {
        assert!(!timers.expire(at(later)));
    }
    timers.set_singleshot(at(15), 0, at(10)).expect("armed");
    assert!(timers.expire(at(17)));
    timers.stop_singleshot();
    assert!(!timers.expire(at(18)));
    assert_eq!(timers.next_deadline(), None);
}

#[test]
fn periodic_period_limits() {
    let mut timers = VcpuTimers::new();
    assert_eq!(
        timers.set_periodic(MIN_PERIOD_NS - 1),
        Err(TimerError::InvalidPeriod)
    );
    assert_eq!(timers.set_periodic(0), Err(TimerError::InvalidPeriod));
    assert_eq!(
        timers.set_periodic(MAX_PERIOD_NS + 1),
        Err(TimerError::InvalidPeriod)
    );
    assert_eq!(
        TimerError::InvalidPeriod.errno(),
        xenolith_abi::errno::Errno::EINVAL
    );
    assert_eq!(timers.period_ns(), None);
    timers.set_periodic(MIN_PERIOD_NS).expect("one millisecond");
    timers.set_periodic(MAX_PERIOD_NS).expect("STIME_DELTA_MAX");
    assert_eq!(timers.period_ns(), Some(MAX_PERIOD_NS));
}

#[test]
fn periodic_ticks_without_catching_up() {
    let mut timers = VcpuTimers::new();
    timers.set_periodic(10_000_000).expect("valid period");
    // Never ticked: the first tick is one period after time zero.
    assert_eq!(timers.next_deadline(), Some(at(10)));
    assert!(timers.expire(at(10)));
    assert_eq!(timers.next_deadline(), Some(at(20)));
    // Late by 15 ms: one tick, and the next is a period after it.
    assert!(timers.expire(at(35)));
    assert_eq!(timers.next_deadline(), Some(at(45)));
    assert!(!timers.expire(at(44)));
    timers.stop_periodic();
    timers.stop_periodic();
    assert_eq!(timers.next_deadline(), None);
}

#[test]
fn periodic_set_late_fires_at_once() {
    let mut timers = VcpuTimers::new();
    timers.set_periodic(10_000_000).expect("valid period");
    // Set at 50 ms on a vCPU whose last tick was time zero: due now.
    assert!(timers.expire(at(50)));
    assert_eq!(timers.next_deadline(), Some(at(60)));
}

#[test]
fn next_deadline_is_the_earlier_timer() {
    let mut timers = VcpuTimers::new();
    timers.set_periodic(10_000_000).expect("valid period");
    timers.set_singleshot(at(4), 0, at(0)).expect("future");
    assert_eq!(timers.next_deadline(), Some(at(4)));
    assert!(timers.expire(at(4)));
    assert_eq!(timers.next_deadline(), Some(at(10)));
    // Both due together fire as one event.
    timers.set_singleshot(at(10), 0, at(4)).expect("future");
    assert!(timers.expire(at(10)));
    assert_eq!(timers.next_deadline(), Some(at(20)));
}

#[test]
fn set_timer_op_follows_xen() {
    let mut timers = VcpuTimers::new();
    timers.set_timer_op(at(30).as_nanos(), at(10));
    assert_eq!(timers.singleshot_deadline(), Some(at(30)));
    timers.set_timer_op(0, at(10));
    assert_eq!(timers.singleshot_deadline(), None);
    // Negative as a signed value: 100 ms from now.
    timers.set_timer_op(u64::MAX - 5, at(10));
    assert_eq!(timers.singleshot_deadline(), Some(at(110)));
    // More than 2^50 ns ahead: also 100 ms from now.
    timers.set_timer_op(at(10).as_nanos() + (1 << 50), at(10));
    assert_eq!(timers.singleshot_deadline(), Some(at(110)));
    // Just under 2^50 ahead is taken as given.
    let far = at(10).as_nanos() + (1 << 50) - 1;
    timers.set_timer_op(far, at(10));
    assert_eq!(timers.singleshot_deadline(), Some(SystemTime(far)));
    // In the past: due at once.
    timers.set_timer_op(at(5).as_nanos(), at(10));
    assert!(timers.expire(at(10)));
}

#[test]
fn timer_queue_is_sized_by_vcpu_count() {
    let mut queue = TimerQueue::with_capacity(2);
    assert!(queue.is_empty());
    queue.insert(7u32).expect("room");
    assert_eq!(queue.insert(7), Err(TimerQueueError::AlreadyPresent));
    queue.insert(3).expect("room");
    assert_eq!(queue.insert(9), Err(TimerQueueError::Full));
    assert_eq!(queue.len(), 2);
    assert!(queue.remove(7).is_some());
    assert!(queue.remove(7).is_none());
    queue.insert(9).expect("room again");
    assert!(queue.timers_mut(42).is_none());
}

#[test]
fn timer_queue_finds_and_fires_the_earliest() {
    let mut queue = TimerQueue::with_capacity(4);
    for vcpu in 0u32..4 {
        queue.insert(vcpu).expect("room");
    }
    assert_eq!(queue.next_deadline(), None);
    let timers = |queue: &mut TimerQueue<u32>, vcpu| *queue.timers_mut(vcpu).expect("present");
    queue
        .timers_mut(2)
        .expect("present")
        .set_singleshot(at(30), 0, at(0))
        .expect("future");
    queue
        .timers_mut(1)
        .expect("present")
        .set_singleshot(at(20), 0, at(0))
        .expect("future");
    queue
        .timers_mut(3)
        .expect("present")
        .set_singleshot(at(20), 0, at(0))
        .expect("future");
    queue
        .timers_mut(0)
        .expect("present")
        .set_periodic(25_000_000)
        .expect("valid");
    // A tie goes to the lower vCPU.
    assert_eq!(queue.next_deadline(), Some((at(20), 1)));
    let mut fired = Vec::new();
    assert_eq!(queue.expire(at(26), |vcpu| fired.push(vcpu)), 3);
    assert_eq!(fired, [0, 1, 3]);
    assert_eq!(queue.next_deadline(), Some((at(30), 2)));
    assert_eq!(timers(&mut queue, 0).next_deadline(), Some(at(51)));
    assert_eq!(
        queue.timers(2).and_then(VcpuTimers::singleshot_deadline),
        Some(at(30))
    );
}

#[test]
fn system_time_arithmetic_saturates() {
    assert_eq!(SystemTime::MAX.saturating_add_ns(1), SystemTime::MAX);
    assert_eq!(at(1).saturating_ns_since(at(2)), 0);
    assert_eq!(at(3).saturating_ns_since(at(1)), 2_000_000);
    assert_eq!(
        alloc::format!("{}", SystemTime::from_nanos(1_000_000_007)),
        "1.000000007s"
    );
}

// --- PitCalibration --------------------------------------------------------

/// The TSC the simulated machine runs at.
const SIMULATED_TSC_HZ: u64 = 2_596_000_000;
/// A 30 ms window, as the hypervisor uses.
const SIMULATED_WINDOW: u64 = 35_795;

/// A stall of the measuring CPU: where it starts (ns since the counter was
/// loaded), how long it lasts, and whether the sample it interrupts
/// latches the PIT before the stall (true) or after it.
#[derive(Clone, Copy)]
struct Stall {
    at_ns: u64,
    length_ns: u64,
    latch_before: bool,
}

/// Samples as the hypervisor's loop records them on a machine whose TSC
/// runs at [`SIMULATED_TSC_HZ`]: one every 3 µs, each 100 ns wide, unless
/// a stall falls into it; the PIT count is truncated to whole ticks.
fn simulated_samples(stalls: &[Stall]) -> Vec<PitSample> {
    let tsc = |ns: u64| ns * SIMULATED_TSC_HZ / NANOSECONDS_PER_SECOND;
    let pit = |ns: u64| ns * PIT_HZ / NANOSECONDS_PER_SECOND;
    let mut samples = Vec::new();
    let mut now_ns = 1_000;
    while pit(now_ns) < SIMULATED_WINDOW + 100 {
        let stall = stalls
            .iter()
            .find(|stall| (now_ns..now_ns + 3_000).contains(&stall.at_ns));
        let (latch_ns, after_ns) = match stall {
            None => (now_ns + 50, now_ns + 100),
            Some(stall) if stall.latch_before => (now_ns + 50, now_ns + stall.length_ns + 100),
            Some(stall) => (
                now_ns + stall.length_ns + 50,
                now_ns + stall.length_ns + 100,
            ),
        };
        samples.push(PitSample {
            tsc_before: tsc(now_ns),
            tsc_after: tsc(after_ns),
            pit_ticks: pit(latch_ns),
        });
        now_ns = after_ns + 2_900;
    }
    samples
}

fn error_ppm_of(estimate: TscEstimate) -> u64 {
    estimate.tsc_hz.abs_diff(SIMULATED_TSC_HZ) * 1_000_000 / SIMULATED_TSC_HZ
}

#[test]
fn calibration_without_stalls_is_accurate() {
    let estimate = estimate_from_samples(SIMULATED_WINDOW, simulated_samples(&[])).unwrap();
    // PIT truncation: at most one tick in 17 900 between the anchors.
    assert!(error_ppm_of(estimate) < 100, "{estimate:?}");
    assert!(estimate.error_ppm < 10, "{estimate:?}");
}

#[test]
fn calibration_ignores_stalls_inside_samples() {
    // 15 ms stalls (a host time slice) inside samples in each quarter
    // and in the middle, latching early and late: the old single-edge
    // measurement would read up to 2.5 times the frequency.
    for latch_before in [true, false] {
        let stalls = [1_000_000, 12_000_000, 27_000_000].map(|at_ns| Stall {
            at_ns,
            length_ns: 15_000_000,
            latch_before,
        });
        let estimate = estimate_from_samples(SIMULATED_WINDOW, simulated_samples(&stalls)).unwrap();
        assert!(error_ppm_of(estimate) < 100, "{estimate:?}");
        assert!(estimate.error_ppm < 10, "{estimate:?}");
    }
}

#[test]
fn calibration_when_only_stalled_samples_are_left_reports_their_error() {
    // Every sample wide and latched late: the estimate says how far off it
    // may be, so the hypervisor measures another window.
    let samples: Vec<PitSample> = simulated_samples(&[])
        .into_iter()
        .map(|sample| PitSample {
            tsc_after: sample.tsc_before + 2_596_000,
            ..sample
        })
        .collect();
    let estimate = estimate_from_samples(SIMULATED_WINDOW, samples).unwrap();
    assert!(estimate.error_ppm > 10_000, "{estimate:?}");
}

#[test]
fn calibration_without_a_sample_in_a_quarter_gives_nothing() {
    // A 25 ms stall swallows the whole last quarter and the window's end.
    let stalls = [Stall {
        at_ns: 20_000_000,
        length_ns: 25_000_000,
        latch_before: false,
    }];
    assert_eq!(
        estimate_from_samples(SIMULATED_WINDOW, simulated_samples(&stalls)),
        None
    );
    assert_eq!(estimate_from_samples(SIMULATED_WINDOW, []), None);
}

#[test]
fn calibration_stops_at_the_window_end_and_skips_torn_samples() {
    let mut calibration = PitCalibration::new(400);
    let sample = |tsc_before, tsc_after, pit_ticks| PitSample {
        tsc_before,
        tsc_after,
        pit_ticks,
    };
    assert_eq!(calibration.add(sample(1_000, 1_100, 10)), Progress::More);
    // TSC reads out of order: ignored, though it would be the narrowest.
    assert_eq!(calibration.add(sample(5_000, 4_000, 20)), Progress::More);
    assert_eq!(calibration.add(sample(2_000, 2_050, 200)), Progress::More);
    assert_eq!(calibration.add(sample(7_000, 7_100, 350)), Progress::More);
    assert_eq!(
        calibration.add(sample(9_000, 9_001, u64::MAX)),
        Progress::Done
    );
    // 6 000 TSC ticks between the anchors' middles over 340 PIT ticks.
    assert_eq!(
        calibration.estimate(),
        Some(TscEstimate {
            tsc_hz: 6_000 * PIT_HZ / 340,
            error_ppm: 101 * 1_000_000 / 6_000,
        })
    );
}

#[test]
fn best_estimate_has_the_smallest_error() {
    let estimate = |tsc_hz, error_ppm| TscEstimate { tsc_hz, error_ppm };
    assert_eq!(
        best_estimate([
            estimate(5_000, 900),
            estimate(2_600, 3),
            estimate(2_700, 40)
        ]),
        Some(estimate(2_600, 3))
    );
    assert_eq!(best_estimate([]), None);
}
