//! Why the guest stopped: the VMCB exit code and its two information
//! words, decoded once into a value the exit handlers match on.

use crate::memory::GuestPhysAddr;

/// Exit codes (AMD APM vol. 2, appendix C).
pub mod code {
    pub const EXCEPTION_BASE: u64 = 0x40;
    pub const INTR: u64 = 0x60;
    pub const NMI: u64 = 0x61;
    pub const SMI: u64 = 0x62;
    pub const INIT: u64 = 0x63;
    pub const RDTSC: u64 = 0x6e;
    pub const IRET: u64 = 0x74;
    pub const CPUID: u64 = 0x72;
    pub const INVD: u64 = 0x76;
    pub const PAUSE: u64 = 0x77;
    pub const HLT: u64 = 0x78;
    pub const IOIO: u64 = 0x7b;
    pub const MSR: u64 = 0x7c;
    pub const SHUTDOWN: u64 = 0x7f;
    pub const VMRUN: u64 = 0x80;
    pub const VMMCALL: u64 = 0x81;
    pub const VMLOAD: u64 = 0x82;
    pub const VMSAVE: u64 = 0x83;
    pub const STGI: u64 = 0x84;
    pub const CLGI: u64 = 0x85;
    pub const SKINIT: u64 = 0x86;
    pub const RDTSCP: u64 = 0x87;
    pub const ICEBP: u64 = 0x88;
    pub const MONITOR: u64 = 0x8a;
    pub const MWAIT: u64 = 0x8b;
    pub const XSETBV: u64 = 0x8d;
    pub const NESTED_PAGE_FAULT: u64 = 0x400;
    pub const INVALID: u64 = u64::MAX;
}

/// A port access the guest made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoAccess {
    pub port: u16,
    /// 1, 2 or 4 bytes.
    pub size: u8,
    pub input: bool,
    /// INS/OUTS (with or without REP): the data is in guest memory.
    pub string: bool,
    pub repeat: bool,
    /// The RIP after the instruction (AMD gives it even without NRIP save).
    pub next_rip: u64,
}

/// A decoded VM exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmExit {
    Cpuid,
    /// RDMSR (`write == false`) or WRMSR; the index is in ECX.
    Msr {
        write: bool,
    },
    Io(IoAccess),
    Hlt,
    /// IRET (intercepted only while an NMI handler runs).
    Iret,
    Vmmcall,
    /// The guest touched guest-physical memory its nested tables do not
    /// allow. `error` holds the page-fault error code bits.
    NestedPageFault {
        address: GuestPhysAddr,
        error: u64,
    },
    /// A triple fault (or another shutdown condition).
    Shutdown,
    /// An intercepted exception.
    Exception {
        vector: u8,
        error_code: u64,
        info2: u64,
    },
    /// A physical interrupt arrived while the guest ran.
    Interrupt,
    /// An SVM instruction or another instruction the guest may not use.
    Forbidden {
        code: u64,
    },
    /// VMRUN refused the VMCB: a hypervisor bug.
    InvalidState,
    /// Anything not intercepted on purpose.
    Unexpected {
        code: u64,
    },
}

impl VmExit {
    /// Decodes an exit from the VMCB's `EXITCODE`, `EXITINFO1`, `EXITINFO2`.
    pub fn decode(exit_code: u64, info1: u64, info2: u64) -> Self {
        match exit_code {
            code::CPUID => Self::Cpuid,
            code::MSR => Self::Msr {
                write: info1 & 1 == 1,
            },
            code::IOIO => Self::Io(IoAccess {
                port: (info1 >> 16) as u16,
                size: match (info1 >> 4) & 0b111 {
                    0b001 => 1,
                    0b010 => 2,
                    _ => 4,
                },
                input: info1 & 1 == 1,
                string: info1 & (1 << 2) != 0,
                repeat: info1 & (1 << 3) != 0,
                next_rip: info2,
            }),
            code::HLT => Self::Hlt,
            code::IRET => Self::Iret,
            code::VMMCALL => Self::Vmmcall,
            code::NESTED_PAGE_FAULT => Self::NestedPageFault {
                address: GuestPhysAddr(info2),
                error: info1,
            },
            code::SHUTDOWN => Self::Shutdown,
            code::INTR | code::NMI | code::SMI => Self::Interrupt,
            code::VMRUN
            | code::VMLOAD
            | code::VMSAVE
            | code::STGI
            | code::CLGI
            | code::SKINIT
            | code::ICEBP
            | code::INVD
            | code::MONITOR
            | code::MWAIT
            | code::XSETBV => Self::Forbidden { code: exit_code },
            code::INVALID => Self::InvalidState,
            vector @ code::EXCEPTION_BASE..=0x5f => Self::Exception {
                vector: (vector - code::EXCEPTION_BASE) as u8,
                error_code: info1,
                info2,
            },
            other => Self::Unexpected { code: other },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_an_out_byte_to_the_debug_port() {
        // OUT DX, AL to port 0xe9: size 8, type OUT, next RIP in info2.
        let exit = VmExit::decode(code::IOIO, (0xe9 << 16) | (1 << 4), 0x1234);
        assert_eq!(
            exit,
            VmExit::Io(IoAccess {
                port: 0xe9,
                size: 1,
                input: false,
                string: false,
                repeat: false,
                next_rip: 0x1234
            })
        );
    }

    #[test]
    fn decodes_rep_insw() {
        let info1 = (0x1f0 << 16) | (1 << 5) | (1 << 3) | (1 << 2) | 1;
        let VmExit::Io(access) = VmExit::decode(code::IOIO, info1, 0) else {
            panic!("not an I/O exit");
        };
        assert!(access.input && access.string && access.repeat);
        assert_eq!((access.port, access.size), (0x1f0, 2));
    }

    #[test]
    fn decodes_faults_and_invalid_state() {
        assert_eq!(
            VmExit::decode(0x4e, 2, 0xdead),
            VmExit::Exception {
                vector: 14,
                error_code: 2,
                info2: 0xdead
            }
        );
        assert_eq!(VmExit::decode(code::INVALID, 0, 0), VmExit::InvalidState);
        assert_eq!(VmExit::decode(code::MSR, 1, 0), VmExit::Msr { write: true });
        assert_eq!(
            VmExit::decode(code::VMRUN, 0, 0),
            VmExit::Forbidden { code: code::VMRUN }
        );
        assert_eq!(
            VmExit::decode(0x9999, 0, 0),
            VmExit::Unexpected { code: 0x9999 }
        );
    }
}
