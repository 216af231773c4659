//! The MC146818-compatible CMOS real-time clock: register numbers and the
//! decoding of one reading (BCD or binary, 12- or 24-hour, century) into
//! seconds since 1970, UTC. The RTC is assumed to keep UTC, as Xen assumes.
//!
//! Reading it (the hypervisor's job, through ports 0x70/0x71): wait until
//! status A's update-in-progress bit is clear, read every register, and
//! read them all again until two readings agree (`RtcReading: PartialEq`).

use core::fmt;

/// CMOS register numbers and status bits.
pub mod rtc_register {
    /// Seconds, 0–59.
    pub const SECONDS: u8 = 0x00;
    /// Minutes, 0–59.
    pub const MINUTES: u8 = 0x02;
    /// Hours: 0–23, or 1–12 with bit 7 set for PM in 12-hour mode.
    pub const HOURS: u8 = 0x04;
    /// Day of the month, 1–31.
    pub const DAY_OF_MONTH: u8 = 0x07;
    /// Month, 1–12.
    pub const MONTH: u8 = 0x08;
    /// Year within the century, 0–99.
    pub const YEAR: u8 = 0x09;
    /// Status A; bit 7 is update-in-progress.
    pub const STATUS_A: u8 = 0x0A;
    /// Status B; holds the format bits below.
    pub const STATUS_B: u8 = 0x0B;
    /// The century register on most PCs. The FADT's `CENTURY` field gives
    /// the index on a given platform; zero there means there is none.
    pub const CENTURY: u8 = 0x32;

    /// Status A: the RTC is updating; the registers may be inconsistent.
    pub const STATUS_A_UPDATE_IN_PROGRESS: u8 = 1 << 7;
    /// Status B: hours run 0–23 (else 1–12 with a PM bit).
    pub const STATUS_B_24_HOUR: u8 = 1 << 1;
    /// Status B: values are binary (else BCD).
    pub const STATUS_B_BINARY: u8 = 1 << 2;
}

/// The RTC registers of one consistent reading, raw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtcReading {
    /// Register 0x00.
    pub seconds: u8,
    /// Register 0x02.
    pub minutes: u8,
    /// Register 0x04.
    pub hours: u8,
    /// Register 0x07.
    pub day_of_month: u8,
    /// Register 0x08.
    pub month: u8,
    /// Register 0x09.
    pub year: u8,
    /// The century register's value, when the platform has one (the FADT's
    /// `CENTURY` index). Without it, years 70–99 are 19xx and 00–69 20xx.
    pub century: Option<u8>,
    /// Register 0x0B, for the format bits.
    pub status_b: u8,
}

/// Which register held a bad value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtcField {
    /// Register 0x00.
    Seconds,
    /// Register 0x02.
    Minutes,
    /// Register 0x04.
    Hours,
    /// Register 0x07.
    DayOfMonth,
    /// Register 0x08.
    Month,
    /// Register 0x09, or the year it makes with the century.
    Year,
    /// The century register.
    Century,
}

/// Why an RTC reading could not be turned into a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtcError {
    /// A BCD register had a nibble above 9.
    InvalidBcd(RtcField),
    /// A field was outside its calendar range (including dates before 1970).
    OutOfRange(RtcField),
}

impl fmt::Display for RtcError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidBcd(field) => write!(formatter, "RTC {field:?} is not valid BCD"),
            Self::OutOfRange(field) => write!(formatter, "RTC {field:?} is out of range"),
        }
    }
}

impl RtcReading {
    /// Seconds since 1970-01-01T00:00:00 UTC.
    pub fn to_unix_seconds(&self) -> Result<u64, RtcError> {
        let binary = self.status_b & rtc_register::STATUS_B_BINARY != 0;
        let decode = |raw: u8, field: RtcField| -> Result<u8, RtcError> {
            if binary {
                return Ok(raw);
            }
            let (high, low) = (raw >> 4, raw & 0x0F);
            if high > 9 || low > 9 {
                return Err(RtcError::InvalidBcd(field));
            }
            Ok(high * 10 + low)
        };
        let in_range = |value: u8, range: core::ops::RangeInclusive<u8>, field: RtcField| {
            if range.contains(&value) {
                Ok(value)
            } else {
                Err(RtcError::OutOfRange(field))
            }
        };

        let seconds = in_range(
            decode(self.seconds, RtcField::Seconds)?,
            0..=59,
            RtcField::Seconds,
        )?;
        let minutes = in_range(
            decode(self.minutes, RtcField::Minutes)?,
            0..=59,
            RtcField::Minutes,
        )?;
        let hours = if self.status_b & rtc_register::STATUS_B_24_HOUR != 0 {
            in_range(
                decode(self.hours, RtcField::Hours)?,
                0..=23,
                RtcField::Hours,
            )?
        } else {
            let afternoon = self.hours & 0x80 != 0;
            let hour = in_range(
                decode(self.hours & 0x7F, RtcField::Hours)?,
                1..=12,
                RtcField::Hours,
            )?;
            // 12 AM is midnight, 12 PM is noon.
            hour % 12 + if afternoon { 12 } else { 0 }
        };
        let month = in_range(
            decode(self.month, RtcField::Month)?,
            1..=12,
            RtcField::Month,
        )?;
        let year_in_century = in_range(decode(self.year, RtcField::Year)?, 0..=99, RtcField::Year)?;
        let year = match self.century {
            Some(raw) => {
                let century =
                    in_range(decode(raw, RtcField::Century)?, 19..=99, RtcField::Century)?;
                u32::from(century) * 100 + u32::from(year_in_century)
            }
            None if year_in_century < 70 => 2000 + u32::from(year_in_century),
            None => 1900 + u32::from(year_in_century),
        };
        if year < 1970 {
            return Err(RtcError::OutOfRange(RtcField::Year));
        }
        let day = in_range(
            decode(self.day_of_month, RtcField::DayOfMonth)?,
            1..=days_in_month(year, month),
            RtcField::DayOfMonth,
        )?;

        let days = days_since_epoch(year, month, day);
        Ok(days * 86_400 + u64::from(hours) * 3_600 + u64::from(minutes) * 60 + u64::from(seconds))
    }
}

const fn is_leap_year(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

const fn days_in_month(year: u32, month: u8) -> u8 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given date (year ≥ 1970, month 1–12, valid
/// day), by the civil-from-days construction of counting in 400-year eras
/// of 146 097 days with years starting in March.
const fn days_since_epoch(year: u32, month: u8, day: u8) -> u64 {
    let year = (if month <= 2 { year - 1 } else { year }) as u64;
    let era = year / 400;
    let year_of_era = year % 400;
    let month_from_march = (month as u64 + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day as u64 - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719 468 days lie between 0000-03-01 and 1970-01-01.
    era * 146_097 + day_of_era - 719_468
}
