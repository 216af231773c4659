//! The PCI configuration address register (port 0xCF8), written and read
//! for Dom0: the I/O map must intercept its dword accesses because they
//! overlap the reset register at 0xCF9 (see `svm::permissions`).

use x86_64::instructions::port::Port;

/// Reads the configuration address register.
pub fn read_address() -> u32 {
    // SAFETY: a read of the PCI configuration address register, which has
    // no side effect; the hypervisor itself never uses it.
    unsafe { Port::<u32>::new(hypervisor::svm::permissions::PCI_CONFIG_ADDRESS).read() }
}

/// Writes the configuration address register on Dom0's behalf (Dom0 then
/// reaches the selected register through port 0xCFC, which passes through).
pub fn write_address(value: u32) {
    // SAFETY: selecting a configuration register changes nothing by
    // itself; the hypervisor never uses PCI configuration space.
    unsafe { Port::<u32>::new(hypervisor::svm::permissions::PCI_CONFIG_ADDRESS).write(value) }
}
