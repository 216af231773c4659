//! The INIT / start-up IPI protocol as seen by the receiving vCPU: INIT
//! parks it in wait-for-SIPI, the first SIPI after that starts it in real
//! mode at `vector · 4 KiB`, and any other SIPI is ignored.

use crate::memory::GuestPhysAddr;

/// Where a vCPU stands in the INIT/SIPI protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitSipiState {
    /// Executing guest code (or halted in it): SIPIs are ignored.
    Running,
    /// Reset by INIT (or an application processor since power-up): must
    /// not run until a SIPI arrives.
    WaitingForStartup,
}

/// The per-vCPU INIT/SIPI state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitSipi {
    state: InitSipiState,
}

impl InitSipi {
    /// A vCPU that runs from power-up: the bootstrap processor.
    pub const fn running() -> Self {
        Self {
            state: InitSipiState::Running,
        }
    }

    /// A vCPU that waits for a SIPI: an application processor after
    /// power-up (SDM 9.4: APs wait for SIPI after their reset).
    pub const fn waiting_for_startup() -> Self {
        Self {
            state: InitSipiState::WaitingForStartup,
        }
    }

    /// The current state.
    pub const fn state(&self) -> InitSipiState {
        self.state
    }

    /// Whether the vCPU must not be scheduled (waiting for a SIPI).
    pub const fn is_waiting_for_startup(&self) -> bool {
        matches!(self.state, InitSipiState::WaitingForStartup)
    }

    /// INIT arrived: the vCPU stops and waits for a SIPI, whatever it was
    /// doing (Xen resets the BSP the same way).
    pub fn init(&mut self) {
        self.state = InitSipiState::WaitingForStartup;
    }

    /// A SIPI with `vector` arrived: starts the vCPU if it was waiting,
    /// otherwise nothing (a SIPI without INIT, or the second SIPI of the
    /// INIT-SIPI-SIPI sequence).
    pub fn startup(&mut self, vector: u8) -> Option<RealModeEntry> {
        match self.state {
            InitSipiState::WaitingForStartup => {
                self.state = InitSipiState::Running;
                Some(RealModeEntry::for_vector(vector))
            }
            InitSipiState::Running => None,
        }
    }
}

/// CR0 after INIT: CD, NW and ET set, protection and paging off.
pub const INIT_CR0: u64 = 0x6000_0010;
/// RFLAGS after INIT: only the always-one bit 1.
pub const INIT_RFLAGS: u64 = 0x2;
/// DR6 after INIT.
pub const INIT_DR6: u64 = 0xffff_0ff0;
/// DR7 after INIT.
pub const INIT_DR7: u64 = 0x400;
/// Limit of every segment in real mode.
pub const REAL_MODE_SEGMENT_LIMIT: u32 = 0xffff;
/// VMCB attribute word of CS in real mode: present, DPL 0, code,
/// readable, accessed (0x9B).
pub const REAL_MODE_CODE_ATTRIBUTES: u16 = 0x009b;
/// VMCB attribute word of DS/ES/FS/GS/SS in real mode: present, DPL 0,
/// data, writable, accessed (0x93).
pub const REAL_MODE_DATA_ATTRIBUTES: u16 = 0x0093;

/// Where a vCPU started by SIPI begins: real mode, CS:IP = `vector·0x100 : 0`.
///
/// The hypervisor loads the rest of the INIT state into the VMCB: CR0 =
/// [`INIT_CR0`], CR2/CR3/CR4 = 0, EFER = SVME only (the guest sees 0),
/// RFLAGS = [`INIT_RFLAGS`], DR6/DR7 = [`INIT_DR6`]/[`INIT_DR7`], every
/// data segment selector 0, base 0, limit [`REAL_MODE_SEGMENT_LIMIT`],
/// attributes [`REAL_MODE_DATA_ATTRIBUTES`]; GDTR/IDTR base 0 limit 0xFFFF;
/// LDTR/TR base 0 limit 0xFFFF (attributes 0x82/0x8B); general registers
/// zero except RDX (CPUID.1 EAX, the family/model/stepping); no event
/// pending, no interrupt shadow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RealModeEntry {
    /// The SIPI vector: the start page number.
    pub vector: u8,
    /// CS selector: `vector << 8`.
    pub code_selector: u16,
    /// CS base: `vector << 12`, the trampoline's guest-physical address.
    pub code_base: GuestPhysAddr,
    /// RIP: 0.
    pub instruction_pointer: u64,
}

impl RealModeEntry {
    /// The entry a SIPI with `vector` asks for.
    pub const fn for_vector(vector: u8) -> Self {
        Self {
            vector,
            code_selector: (vector as u16) << 8,
            code_base: GuestPhysAddr((vector as u64) << 12),
            instruction_pointer: 0,
        }
    }
}
