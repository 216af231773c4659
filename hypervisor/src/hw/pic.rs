//! The legacy 8259 interrupt controllers: masked, so nothing the firmware
//! left running (the PIT tick) interrupts the hypervisor or its guests.

use x86_64::instructions::port::Port;

/// Masks every line of both controllers.
pub fn mask_all() {
    // SAFETY: writing the mask registers of the 8259s only stops them
    // raising interrupts; the hypervisor owns them.
    unsafe {
        Port::<u8>::new(0x21).write(0xff);
        Port::<u8>::new(0xa1).write(0xff);
    }
}

/// Ends a stray interrupt from either controller.
pub fn acknowledge(_vector: u64) {
    // SAFETY: a non-specific end-of-interrupt to both 8259s is harmless
    // even when they raised nothing.
    unsafe {
        Port::<u8>::new(0xa0).write(0x20);
        Port::<u8>::new(0x20).write(0x20);
    }
}
