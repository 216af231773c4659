//! Small value types a config names: a domain's UUID, a vif's MAC address
//! and a memory size, each parsed from its text form and printed back.

use core::fmt;

/// A domain UUID, as written in `uuid = "..."`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// Reads the hyphenated form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`
    /// (either case), as `libxl_uuid_from_string` does.
    pub fn parse(text: &str) -> Option<Uuid> {
        const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
        let mut bytes = [0u8; 16];
        let mut filled = 0;
        let mut groups = text.split('-');
        for length in GROUPS {
            let group = groups.next()?;
            if group.len() != length || !group.bytes().all(|byte| byte.is_ascii_hexdigit()) {
                return None;
            }
            for pair in group.as_bytes().chunks(2) {
                let pair = core::str::from_utf8(pair).ok()?;
                *bytes.get_mut(filled)? = u8::from_str_radix(pair, 16).ok()?;
                filled += 1;
            }
        }
        if groups.next().is_some() {
            return None;
        }
        Some(Uuid(bytes))
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, byte) in self.0.iter().enumerate() {
            if matches!(index, 4 | 6 | 8 | 10) {
                formatter.write_str("-")?;
            }
            write!(formatter, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// An Ethernet MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacAddress(pub [u8; 6]);

impl MacAddress {
    /// Reads six colon-separated pairs of hex digits: `00:16:3e:12:34:56`.
    pub fn parse(text: &str) -> Option<MacAddress> {
        let mut bytes = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut bytes {
            let part = parts.next()?;
            if part.len() != 2 || !part.bytes().all(|digit| digit.is_ascii_hexdigit()) {
                return None;
            }
            *byte = u8::from_str_radix(part, 16).ok()?;
        }
        if parts.next().is_some() {
            return None;
        }
        Some(MacAddress(bytes))
    }

    /// Whether the group bit is set: such an address cannot belong to one
    /// interface.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, f] = self.0;
        write!(formatter, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
    }
}

/// A memory size in MiB, the unit of xl's `memory` and `maxmem`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mebibytes(pub u64);

impl Mebibytes {
    /// The size in bytes (saturating; configs are capped far below that).
    pub fn bytes(self) -> u64 {
        self.0.saturating_mul(1 << 20)
    }

    /// The size in KiB, libxl's unit.
    pub fn kibibytes(self) -> u64 {
        self.0.saturating_mul(1 << 10)
    }
}

impl fmt::Display for Mebibytes {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} MiB", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn uuid_round_trip() {
        let text = "0c1f9a3e-5d2b-4f6a-8e7d-1b2c3d4e5f60";
        let uuid = Uuid::parse(text).unwrap();
        assert_eq!(uuid.0[0], 0x0c);
        assert_eq!(uuid.0[15], 0x60);
        assert_eq!(uuid.to_string(), text);
        assert_eq!(
            Uuid::parse("0C1F9A3E-5D2B-4F6A-8E7D-1B2C3D4E5F60"),
            Some(uuid)
        );
    }

    #[test]
    fn uuid_rejects_bad_forms() {
        for text in [
            "",
            "0c1f9a3e5d2b4f6a8e7d1b2c3d4e5f60",
            "0c1f9a3e-5d2b-4f6a-8e7d-1b2c3d4e5f6",
            "0c1f9a3e-5d2b-4f6a-8e7d-1b2c3d4e5f600",
            "0c1f9a3e-5d2b-4f6a-8e7d-1b2c3d4e5f60-",
            "0c1f9a3g-5d2b-4f6a-8e7d-1b2c3d4e5f60",
            "0c1f9a3e-5d2b-4f6a-8e7d1b2c-3d4e5f60",
            "+c1f9a3e-5d2b-4f6a-8e7d-1b2c3d4e5f60",
            "0c1f9a3é-5d2b-4f6a-8e7d-1b2c3d4e5f6",
        ] {
            assert_eq!(Uuid::parse(text), None, "{text}");
        }
    }

    #[test]
    fn mac_round_trip_and_rejects() {
        let mac = MacAddress::parse("00:16:3E:0a:0b:0c").unwrap();
        assert_eq!(mac.to_string(), "00:16:3e:0a:0b:0c");
        assert!(!mac.is_multicast());
        assert!(
            MacAddress::parse("01:00:5e:00:00:01")
                .unwrap()
                .is_multicast()
        );
        for text in [
            "",
            "00:16:3e:0a:0b",
            "00:16:3e:0a:0b:0c:0d",
            "0:16:3e:0a:0b:0c",
            "00-16-3e-0a-0b-0c",
            "00:16:3e:0a:0b:+c",
            "00:16:3e:0a:0b:0g",
        ] {
            assert_eq!(MacAddress::parse(text), None, "{text}");
        }
    }

    #[test]
    fn mebibytes_units() {
        assert_eq!(Mebibytes(2).bytes(), 2 << 20);
        assert_eq!(Mebibytes(2).kibibytes(), 2048);
        assert_eq!(Mebibytes(u64::MAX).bytes(), u64::MAX);
        assert_eq!(Mebibytes(512).to_string(), "512 MiB");
    }
}
