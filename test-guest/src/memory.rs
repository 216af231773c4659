//! The test guest's only unsafe code. It runs on the identity map of the
//! first 4 GiB that the baremetal entry builds (guest-virtual = guest-
//! physical there; nothing is mapped above), so a page's address is its
//! frame number shifted left by 12. Here live the pages the hypervisor
//! shares or replaces, the window of holes above RAM for grant mappings,
//! volatile reads of boot data, and the deliberately malformed hypercalls
//! of the hostile checks, each with an argument the hypervisor cannot use
//! to reach our memory.

use core::cell::UnsafeCell;

use xen_guest::event_channel::{EVTCHNOP_ALLOC_UNBOUND, EVTCHNOP_STATUS};
use xen_guest::grant_table::{GNTTABOP_QUERY_SIZE, GNTTABOP_SETUP_TABLE};
use xen_guest::hvm::HVMOP_GET_PARAM;
use xen_guest::memory::{
    XENMEM_ADD_TO_PHYSMAP, XENMEM_CURRENT_RESERVATION, XENMEM_DECREASE_RESERVATION,
    XENMEM_MEMORY_MAP, XENMEM_POPULATE_PHYSMAP,
};
use xen_guest::raw::hypercall;
use xen_guest::sched::SCHEDOP_POLL;
use xen_guest::vcpu::{
    VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA,
    VCPUOP_SET_SINGLESHOT_TIMER,
};
use xen_guest::version::{XENVER_EXTRAVERSION, XENVER_GET_FEATURES};
use xen_guest::{FrameSlot, GuestFrame, PAGE_SIZE};
use xenolith_abi::console_io::CONSOLEIO_WRITE;
use xenolith_abi::hypercall::HypercallNumber;

/// The baremetal page tables map exactly [0, 4 GiB).
const IDENTITY_MAP_END: u64 = 1 << 32;

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// The guest image (code, data, stacks, page tables): [start, end).
pub fn image() -> (u64, u64) {
    // Taking the address of a linker symbol reads nothing.
    (
        &raw const __image_start as u64,
        &raw const __image_end as u64,
    )
}

#[repr(C, align(4096))]
struct Page(UnsafeCell<[u8; PAGE_SIZE]>);

// SAFETY: Rust code never reads or writes these pages directly; they are
// reached only through `FrameSlot`s (volatile/atomic) and the hypervisor.
unsafe impl Sync for Page {}

impl Page {
    const fn new() -> Self {
        Self(UnsafeCell::new([0; PAGE_SIZE]))
    }

    fn slot(&'static self) -> Option<FrameSlot> {
        let address = self.0.get() as usize;
        // SAFETY: the page is a static inside the identity map (frame =
        // address >> 12) that only this slot uses: see `Page`'s `Sync`.
        unsafe { FrameSlot::new(GuestFrame(address as u64 >> 12), address) }
    }
}

static SHARED_INFO: Page = Page::new();
static GRANT_TABLE: Page = Page::new();
static VCPU_INFO: Page = Page::new();
static BALLOON: Page = Page::new();
static COPY_SOURCE: Page = Page::new();
static COPY_DEST: Page = Page::new();
static SELF_GRANT: Page = Page::new();
static OFFER: Page = Page::new();
/// Rings and buffers of the hostile front ends (see `checks::frontend`).
static DEVICE: [Page; DEVICE_PAGES] = [const { Page::new() }; DEVICE_PAGES];

/// How many pages the hostile front ends get.
pub const DEVICE_PAGES: usize = 7;

/// The pages of the image the checks hand to the hypervisor.
#[derive(Clone, Copy, Debug)]
pub struct Pages {
    /// Replaced by shared_info.
    pub shared_info: FrameSlot,
    /// Replaced by grant-table frame 0.
    pub grant_table: FrameSlot,
    /// Holds the registered vcpu_info.
    pub vcpu_info: FrameSlot,
    /// Given back and repopulated.
    pub balloon: FrameSlot,
    pub copy_source: FrameSlot,
    pub copy_dest: FrameSlot,
    /// Granted to ourselves and mapped at a hole.
    pub self_grant: FrameSlot,
    /// Granted to the peer in two-guest mode.
    pub offer: FrameSlot,
    /// Rings and buffers the hostile front ends grant to Dom0.
    pub device: [FrameSlot; DEVICE_PAGES],
}

/// The static pages as slots; `None` only if the linker misaligned them.
pub fn pages() -> Option<Pages> {
    Some(Pages {
        shared_info: SHARED_INFO.slot()?,
        grant_table: GRANT_TABLE.slot()?,
        vcpu_info: VCPU_INFO.slot()?,
        balloon: BALLOON.slot()?,
        copy_source: COPY_SOURCE.slot()?,
        copy_dest: COPY_DEST.slot()?,
        self_grant: SELF_GRANT.slot()?,
        offer: OFFER.slot()?,
        device: [
            DEVICE[0].slot()?,
            DEVICE[1].slot()?,
            DEVICE[2].slot()?,
            DEVICE[3].slot()?,
            DEVICE[4].slot()?,
            DEVICE[5].slot()?,
            DEVICE[6].slot()?,
        ],
    })
}

/// A slot for the unpopulated guest-physical page at `address` (where
/// grants get mapped): page-aligned, above the image and inside the
/// identity map. The caller picks it outside RAM.
pub fn hole_slot(address: u64) -> Option<FrameSlot> {
    let (_, image_end) = image();
    let fits = address >= image_end
        && address
            .checked_add(PAGE_SIZE as u64)
            .is_some_and(|end| end <= IDENTITY_MAP_END);
    if !fits {
        return None;
    }
    // SAFETY: identity-mapped (below 4 GiB), and above the image, where
    // no Rust object lives; `new` checks the alignment.
    unsafe { FrameSlot::new(GuestFrame(address >> 12), address as usize) }
}

/// A slot for a page Dom0 shares with us by frame number (the xenstore
/// and console rings the HVM params name): inside the identity map and
/// outside the image. The caller checks the memory map reserves it.
pub fn shared_ring_slot(frame: u64) -> Option<FrameSlot> {
    let address = frame.checked_mul(PAGE_SIZE as u64)?;
    let end = address.checked_add(PAGE_SIZE as u64)?;
    let (image_start, image_end) = image();
    if address == 0 || end > IDENTITY_MAP_END || (address < image_end && image_start < end) {
        return None;
    }
    // SAFETY: identity-mapped (below 4 GiB) and outside the image, so no
    // Rust object lives there; the page is Dom0's and ours, reached only
    // through `FrameSlot`s; `new` checks the alignment.
    unsafe { FrameSlot::new(GuestFrame(frame), address as usize) }
}

/// Copies guest-physical memory (boot data Dom0 left for us) below 4 GiB;
/// false if the range is not inside the identity map or is null.
pub fn read_physical(address: u64, buffer: &mut [u8]) -> bool {
    let Some(end) = address.checked_add(buffer.len() as u64) else {
        return false;
    };
    if address == 0 || end > IDENTITY_MAP_END {
        return false;
    }
    for (index, byte) in buffer.iter_mut().enumerate() {
        let pointer = (address as usize + index) as *const u8;
        // SAFETY: inside the identity map (checked above); boot data is
        // not a Rust object, and a volatile byte read has no alignment.
        *byte = unsafe { pointer.read_volatile() };
    }
    true
}

/// A guest-virtual address nothing is mapped at: at or above 4 GiB (the
/// identity map's end), which includes non-canonical addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unreachable(u64);

impl Unreachable {
    /// Canonical but unmapped.
    pub const UNMAPPED: Self = Self(0x7fff_0000_0000);
    /// Not canonical: no page table can map it.
    pub const NON_CANONICAL: Self = Self(0x8000_0000_0000_0000);

    pub const fn address(self) -> u64 {
        self.0
    }
}

/// Hypercalls whose argument pointer can be replaced by an unreachable
/// address, and where each puts that pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PointerProbe {
    XenVersionFeatures,
    XenVersionExtraversion,
    EventStatus,
    EventAllocUnbound,
    GrantQuerySize,
    HvmGetParam,
    MemoryCurrentReservation,
    MemoryAddToPhysmap,
    MemoryMap,
    VcpuSetSingleshotTimer,
    VcpuRegisterRunstate,
    SchedPoll,
    ConsoleWrite,
}

impl PointerProbe {
    pub const ALL: [Self; 13] = [
        Self::XenVersionFeatures,
        Self::XenVersionExtraversion,
        Self::EventStatus,
        Self::EventAllocUnbound,
        Self::GrantQuerySize,
        Self::HvmGetParam,
        Self::MemoryCurrentReservation,
        Self::MemoryAddToPhysmap,
        Self::MemoryMap,
        Self::VcpuSetSingleshotTimer,
        Self::VcpuRegisterRunstate,
        Self::SchedPoll,
        Self::ConsoleWrite,
    ];

    /// The hypercall's name, for reports.
    pub const fn name(self) -> &'static str {
        match self {
            Self::XenVersionFeatures => "xen_version(get_features)",
            Self::XenVersionExtraversion => "xen_version(extraversion)",
            Self::EventStatus => "evtchn status",
            Self::EventAllocUnbound => "evtchn alloc_unbound",
            Self::GrantQuerySize => "gnttab query_size",
            Self::HvmGetParam => "hvm get_param",
            Self::MemoryCurrentReservation => "memory current_reservation",
            Self::MemoryAddToPhysmap => "memory add_to_physmap",
            Self::MemoryMap => "memory memory_map",
            Self::VcpuSetSingleshotTimer => "vcpu set_singleshot_timer",
            Self::VcpuRegisterRunstate => "vcpu register_runstate",
            Self::SchedPoll => "sched poll",
            Self::ConsoleWrite => "console_io write",
        }
    }

    fn arguments(self, pointer: u64) -> (HypercallNumber, [u64; 5]) {
        use HypercallNumber as H;
        let event = |command: u32| (H::EVENT_CHANNEL_OP, [u64::from(command), pointer, 0, 0, 0]);
        let memory = |command: u64| (H::MEMORY_OP, [command, pointer, 0, 0, 0]);
        match self {
            Self::XenVersionFeatures => (H::XEN_VERSION, [XENVER_GET_FEATURES, pointer, 0, 0, 0]),
            Self::XenVersionExtraversion => {
                (H::XEN_VERSION, [XENVER_EXTRAVERSION, pointer, 0, 0, 0])
            }
            Self::EventStatus => event(EVTCHNOP_STATUS),
            Self::EventAllocUnbound => event(EVTCHNOP_ALLOC_UNBOUND),
            Self::GrantQuerySize => (H::GRANT_TABLE_OP, [GNTTABOP_QUERY_SIZE, pointer, 1, 0, 0]),
            Self::HvmGetParam => (H::HVM_OP, [HVMOP_GET_PARAM, pointer, 0, 0, 0]),
            Self::MemoryCurrentReservation => memory(XENMEM_CURRENT_RESERVATION),
            Self::MemoryAddToPhysmap => memory(XENMEM_ADD_TO_PHYSMAP),
            Self::MemoryMap => memory(XENMEM_MEMORY_MAP),
            Self::VcpuSetSingleshotTimer => {
                (H::VCPU_OP, [VCPUOP_SET_SINGLESHOT_TIMER, 0, pointer, 0, 0])
            }
            Self::VcpuRegisterRunstate => (
                H::VCPU_OP,
                [VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, 0, pointer, 0, 0],
            ),
            Self::SchedPoll => (H::SCHED_OP, [SCHEDOP_POLL, pointer, 0, 0, 0]),
            Self::ConsoleWrite => (H::CONSOLE_IO, [CONSOLEIO_WRITE, 16, pointer, 0, 0]),
        }
    }
}

/// Makes `probe` with its argument pointer at `address`.
pub fn call_with_unreachable(probe: PointerProbe, address: Unreachable) -> i64 {
    let (number, arguments) = probe.arguments(address.address());
    // SAFETY: the only pointer argument is unreachable (nothing is mapped
    // there), and the other arguments are commands, counts and vCPU 0.
    unsafe { hypercall(number, arguments) }
}

/// `SCHEDOP_poll` whose port list is at `address`, with a past timeout.
pub fn poll_with_unreachable_ports(address: Unreachable) -> i64 {
    // struct sched_poll: ports @0, nr_ports @8, timeout @16 (1 ns: past).
    let mut argument: [u64; 3] = [address.address(), 1, 1];
    let pointer = argument.as_mut_ptr() as u64;
    // SAFETY: the structure is ours for the call and its only pointer is
    // unreachable.
    unsafe { hypercall(HypercallNumber::SCHED_OP, [SCHEDOP_POLL, pointer, 0, 0, 0]) }
}

/// `VCPUOP_register_vcpu_time_memory_area` for vCPU 0 at `address` (0
/// unregisters).
pub fn register_time_area_at(address: u64) -> i64 {
    let mut argument: u64 = address;
    let pointer = &mut argument as *mut u64 as u64;
    // SAFETY: the argument is ours for the call; the hypervisor only
    // records `address` and writes there through our page tables later.
    unsafe {
        hypercall(
            HypercallNumber::VCPU_OP,
            [VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA, 0, pointer, 0, 0],
        )
    }
}

/// `XENMEM_memory_map` whose buffer is at `address`.
pub fn memory_map_with_unreachable_buffer(address: Unreachable) -> i64 {
    // struct xen_memory_map: nr_entries @0, buffer @8.
    let mut argument: [u64; 2] = [16, address.address()];
    let pointer = argument.as_mut_ptr() as u64;
    // SAFETY: as in `poll_with_unreachable_ports`.
    unsafe {
        hypercall(
            HypercallNumber::MEMORY_OP,
            [XENMEM_MEMORY_MAP, pointer, 0, 0, 0],
        )
    }
}

/// `GNTTABOP_setup_table(DOMID_SELF, 1 frame)` whose frame list is at
/// `address`: the hypercall result and the element status.
pub fn setup_table_with_unreachable_list(address: Unreachable) -> (i64, i16) {
    // struct gnttab_setup_table: dom u16 @0, nr_frames u32 @4, status s16
    // @8, frame_list @16.
    let mut argument: [u64; 3] = [0x7ff0 | 1 << 32, 0, address.address()];
    let pointer = argument.as_mut_ptr() as u64;
    let arguments = [GNTTABOP_SETUP_TABLE, pointer, 1, 0, 0];
    // SAFETY: as in `poll_with_unreachable_ports`.
    let result = unsafe { hypercall(HypercallNumber::GRANT_TABLE_OP, arguments) };
    (result, argument[1] as u16 as i16)
}

/// `XENMEM_populate_physmap` (or `decrease_reservation`) of
/// `count` extents whose frame list is at `address`.
pub fn reservation_with_unreachable_extents(
    decrease: bool,
    address: Unreachable,
    count: u64,
) -> i64 {
    // struct xen_memory_reservation: extent_start @0, nr_extents @8,
    // extent_order u32 @16, mem_flags u32 @20, domid u16 @24.
    let mut argument: [u64; 4] = [address.address(), count, 0, 0x7ff0];
    let pointer = argument.as_mut_ptr() as u64;
    let command = if decrease {
        XENMEM_DECREASE_RESERVATION
    } else {
        XENMEM_POPULATE_PHYSMAP
    };
    // SAFETY: as in `poll_with_unreachable_ports`; the frame list, the only
    // thing the hypervisor would touch, is unreachable.
    unsafe { hypercall(HypercallNumber::MEMORY_OP, [command, pointer, 0, 0, 0]) }
}

/// Hypercall `number`, which the hypervisor does not have, with every
/// argument zero.
pub fn unknown_hypercall(number: u64) -> i64 {
    // SAFETY: an unknown hypercall does nothing; all arguments are zero
    // (no address of ours).
    unsafe { hypercall(HypercallNumber(number), [0; 5]) }
}

/// `sched_op(command)` with a pointer to 64 zero bytes of our own.
pub fn sched_op_with_scratch(command: u64) -> i64 {
    let mut scratch = [0u64; 8];
    let pointer = scratch.as_mut_ptr() as u64;
    // SAFETY: the only address passed is the scratch buffer, which is ours
    // for the call and large enough for any sched_op argument.
    unsafe { hypercall(HypercallNumber::SCHED_OP, [command, pointer, 0, 0, 0]) }
}

/// `console_io(CONSOLEIO_write, count, text)` with a huge `count`.
pub fn console_write_with_count(text: &'static [u8], count: u64) -> i64 {
    // SAFETY: CONSOLEIO_write only reads; reading past `text` (into our
    // image or unpopulated memory) can change nothing.
    unsafe {
        hypercall(
            HypercallNumber::CONSOLE_IO,
            [CONSOLEIO_WRITE, count, text.as_ptr() as u64, 0, 0],
        )
    }
}

/// Two pages for arguments that straddle a page boundary.
#[repr(C, align(4096))]
struct TwoPages(UnsafeCell<[u8; 2 * PAGE_SIZE]>);

// SAFETY: only `call_straddling` touches it, by raw pointer, and the test
// guest runs on one vCPU without interrupts.
unsafe impl Sync for TwoPages {}

static STRADDLE: TwoPages = TwoPages(UnsafeCell::new([0; 2 * PAGE_SIZE]));

/// Where a straddling argument starts: 3 bytes before the page boundary,
/// so it is misaligned for every field and crosses into the next page.
const STRADDLE_OFFSET: usize = PAGE_SIZE - 3;

/// Hypercalls given a misaligned argument that crosses a page boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StraddleProbe {
    /// `xen_version(XENVER_get_features)`: 8 bytes.
    XenVersionFeatures,
    /// `event_channel_op(EVTCHNOP_status)`: 24 bytes.
    EventStatus,
}

/// Copies `argument` to a misaligned place that crosses a page boundary,
/// makes `probe` with a pointer to it, and returns the result and the
/// argument as the hypervisor left it.
pub fn call_straddling(probe: StraddleProbe, argument: [u8; 24]) -> (i64, [u8; 24]) {
    let (number, command) = match probe {
        StraddleProbe::XenVersionFeatures => (HypercallNumber::XEN_VERSION, XENVER_GET_FEATURES),
        StraddleProbe::EventStatus => (
            HypercallNumber::EVENT_CHANNEL_OP,
            u64::from(EVTCHNOP_STATUS),
        ),
    };
    let base = STRADDLE.0.get().cast::<u8>();
    let place = base.wrapping_add(STRADDLE_OFFSET);
    // SAFETY: [STRADDLE_OFFSET, +24) lies inside the static two pages, which
    // nothing else touches.
    unsafe { core::ptr::copy_nonoverlapping(argument.as_ptr(), place, argument.len()) };
    // SAFETY: the pointer names those 24 bytes, enough for either argument
    // (8 and 24 bytes); the other arguments are plain commands.
    let result = unsafe { hypercall(number, [command, place as u64, 0, 0, 0]) };
    let mut after = [0u8; 24];
    // SAFETY: as for the first copy.
    unsafe { core::ptr::copy_nonoverlapping(place, after.as_mut_ptr(), after.len()) };
    (result, after)
}

/// The xAPIC's version register in its MMIO page (0xFEE00030). The
/// hypervisor does not emulate that page (its APIC is x2APIC-only), so
/// reading it ends the domain; `touch-xapic` asks for it.
pub fn read_xapic_version() -> u32 {
    const XAPIC_VERSION: u64 = 0xfee0_0030;
    // SAFETY: the address lies inside the identity-mapped 4 GiB, so the
    // read is well-formed for the guest; what answers is the hypervisor.
    unsafe { core::ptr::read_volatile(XAPIC_VERSION as *const u32) }
}
