//! GUIDs as GPT stores them: 16 bytes whose first three fields are
//! little-endian ("mixed-endian"), printed in the usual 8-4-4-4-12 form.

use core::fmt;

/// A GUID in its on-disk byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// The all-zero GUID, which marks an unused GPT partition entry.
    pub const ZERO: Guid = Guid([0; 16]);

    /// The GUID printed as `data1-data2-data3-data4[0..2]-data4[2..8]`.
    pub const fn from_fields(data1: u32, data2: u16, data3: u16, data4: [u8; 8]) -> Guid {
        let a = data1.to_le_bytes();
        let b = data2.to_le_bytes();
        let c = data3.to_le_bytes();
        Guid([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], data4[0], data4[1], data4[2], data4[3],
            data4[4], data4[5], data4[6], data4[7],
        ])
    }

    /// Builds a GUID from 16 random bytes (the host tool's entropy), setting
    /// the version 4 and RFC 4122 variant bits.
    pub fn from_random_bytes(mut bytes: [u8; 16]) -> Guid {
        // Byte 7 is the high byte of little-endian data3; byte 8 leads data4.
        bytes[7] = (bytes[7] & 0x0F) | 0x40;
        bytes[8] = (bytes[8] & 0x3F) | 0x80;
        Guid(bytes)
    }

    /// Whether this is the all-zero GUID.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            formatter,
            "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}",
            b[3],
            b[2],
            b[1],
            b[0],
            b[5],
            b[4],
            b[7],
            b[6],
            b[8],
            b[9],
            b[10],
            b[11],
            b[12],
            b[13],
            b[14],
            b[15]
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Guid({self})")
    }
}

/// The partition type GUID of a Xenolith volume store,
/// `FD5AE24A-792D-4320-8FB6-26DA6458CF12` (a random version 4 GUID chosen
/// for Xenolith; documented in `storage/README.md`).
pub const XENOLITH_STORE_TYPE: Guid = Guid::from_fields(
    0xFD5A_E24A,
    0x792D,
    0x4320,
    [0x8F, 0xB6, 0x26, 0xDA, 0x64, 0x58, 0xCF, 0x12],
);

/// The EFI system partition type GUID, `C12A7328-F81F-11D2-BA4B-00A0C93EC93B`
/// (recognised so tests and tools can name a second, foreign partition).
pub const EFI_SYSTEM_TYPE: Guid = Guid::from_fields(
    0xC12A_7328,
    0xF81F,
    0x11D2,
    [0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B],
);

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn prints_in_the_canonical_mixed_endian_form() {
        assert_eq!(
            format!("{XENOLITH_STORE_TYPE}"),
            "FD5AE24A-792D-4320-8FB6-26DA6458CF12"
        );
        assert_eq!(
            format!("{EFI_SYSTEM_TYPE}"),
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
        );
        // On disk the first field is little-endian.
        assert_eq!(&XENOLITH_STORE_TYPE.0[..4], &[0x4A, 0xE2, 0x5A, 0xFD]);
    }

    #[test]
    fn random_guids_get_version_and_variant_bits() {
        let guid = Guid::from_random_bytes([0xFF; 16]);
        let text = format!("{guid}");
        assert_eq!(&text[14..15], "4");
        assert_eq!(&text[19..20], "B");
        assert!(!guid.is_zero());
        assert!(Guid::ZERO.is_zero());
    }
}
