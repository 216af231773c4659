//! Hardware access for the hypervisor binary. Every `unsafe` block of the
//! hypervisor lives below this folder, each with its `// SAFETY:` line.

pub mod device_interrupts;
pub mod fpu;
pub mod lapic;
pub mod memory;
pub mod pci;
pub mod pic;
pub mod pit;
pub mod power;
pub mod rtc;
pub mod serial;
pub mod svm;
