//! The I/O and MSR permission maps: bitmaps the CPU consults on every port
//! access and RDMSR/WRMSR; a set bit means "exit to the hypervisor".

/// The I/O permission map: one bit per port, 12 KiB (the CPU reads up to
/// three bytes past port 0xffff for wide accesses).
#[repr(C, align(4096))]
pub struct IoPermissionMap {
    bits: [u8; 3 * 4096],
}

impl IoPermissionMap {
    /// A map in which every port passes through.
    pub fn pass_through() -> Self {
        Self {
            bits: [0; 3 * 4096],
        }
    }

    /// Makes accesses to `ports` exit to the hypervisor.
    pub fn intercept(&mut self, ports: core::ops::RangeInclusive<u16>) {
        for port in ports {
            let port = usize::from(port);
            if let Some(byte) = self.bits.get_mut(port / 8) {
                *byte |= 1 << (port % 8);
            }
        }
    }

    /// Whether an access to `port` exits.
    pub fn is_intercepted(&self, port: u16) -> bool {
        let port = usize::from(port);
        self.bits
            .get(port / 8)
            .is_some_and(|byte| byte & (1 << (port % 8)) != 0)
    }
}

/// The MSR permission map: two bits (read, write) per MSR in three ranges,
/// 8 KiB. MSRs outside the ranges always exit.
#[repr(C, align(4096))]
pub struct MsrPermissionMap {
    bits: [u8; 2 * 4096],
}

impl MsrPermissionMap {
    /// A map in which every MSR access exits.
    pub fn intercept_all() -> Self {
        Self {
            bits: [0xff; 2 * 4096],
        }
    }

    /// Lets the guest read and write `msr` directly.
    pub fn pass_through(&mut self, msr: u32) {
        if let Some(bit) = Self::bit_index(msr)
            && let Some(byte) = self.bits.get_mut(bit / 8)
        {
            *byte &= !(0b11 << (bit % 8));
        }
    }

    /// Whether a read (`write == false`) or write of `msr` exits.
    pub fn is_intercepted(&self, msr: u32, write: bool) -> bool {
        let Some(bit) = Self::bit_index(msr) else {
            return true;
        };
        let bit = bit + usize::from(write);
        self.bits
            .get(bit / 8)
            .is_none_or(|byte| byte & (1 << (bit % 8)) != 0)
    }

    /// Index of the read bit of `msr`, or `None` outside the mapped ranges.
    fn bit_index(msr: u32) -> Option<usize> {
        let (base, offset_bytes) = match msr {
            0x0000_0000..=0x0000_1fff => (0x0000_0000, 0x0000),
            0xc000_0000..=0xc000_1fff => (0xc000_0000, 0x0800),
            0xc001_0000..=0xc001_1fff => (0xc001_0000, 0x1000),
            _ => return None,
        };
        Some(offset_bytes * 8 + (msr - base) as usize * 2)
    }
}

/// The PCI configuration address register, ports 0xCF8–0xCFB. The I/O map
/// cannot pass its dword accesses through on their own: they overlap the
/// reset control register at 0xCF9, which the hypervisor intercepts.
pub const PCI_CONFIG_ADDRESS: u16 = 0xcf8;

/// Whether an intercepted port access is a dword access to the PCI
/// configuration address register, which the hypervisor carries out on
/// the hardware for Dom0 (it owns PCI; the data port 0xCFC passes through).
pub fn is_pci_config_address(port: u16, size: u8, string: bool) -> bool {
    port == PCI_CONFIG_ADDRESS && size == 4 && !string
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dword_accesses_at_0xcf8_are_pci_config_address() {
        assert!(is_pci_config_address(0xcf8, 4, false));
        assert!(!is_pci_config_address(0xcf8, 4, true));
        assert!(!is_pci_config_address(0xcf8, 1, false));
        assert!(!is_pci_config_address(0xcf9, 1, false));
        assert!(!is_pci_config_address(0xcfc, 4, false));
        // The reason it is needed: the map cannot tell 0xcf8 from 0xcf9.
        let mut map = IoPermissionMap::pass_through();
        map.intercept(0xcf9..=0xcf9);
        assert!(!map.is_intercepted(0xcf8) && map.is_intercepted(0xcf9));
    }

    #[test]
    fn io_map_intercepts_only_the_named_ports() {
        let mut map = IoPermissionMap::pass_through();
        map.intercept(0x3f8..=0x3ff);
        assert!(map.is_intercepted(0x3f8) && map.is_intercepted(0x3ff));
        assert!(!map.is_intercepted(0x3f7) && !map.is_intercepted(0x400));
        map.intercept(0xffff..=0xffff);
        assert!(map.is_intercepted(0xffff));
    }

    #[test]
    fn msr_map_passes_through_per_range() {
        let mut map = MsrPermissionMap::intercept_all();
        map.pass_through(0xc000_0100); // FS base
        map.pass_through(0x174); // SYSENTER_CS
        assert!(!map.is_intercepted(0xc000_0100, false));
        assert!(!map.is_intercepted(0xc000_0100, true));
        assert!(!map.is_intercepted(0x174, true));
        assert!(map.is_intercepted(0xc000_0080, true)); // EFER stays
        assert!(map.is_intercepted(0x4000_0000, false)); // outside ranges
        // The bit for 0xc0000100 lives at byte 0x800 + 0x100*2/8.
        assert_eq!(MsrPermissionMap::bit_index(0xc000_0100), Some(0x840 * 8));
    }
}
