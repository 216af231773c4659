//! The crate's only unsafe code: the VMMCALL instruction, the table that
//! pairs each hypercall command with the structure it reads and writes,
//! and volatile/atomic access to pages the hypervisor shares. Shared pages
//! are never referenced as plain Rust data: the hypervisor may write them
//! (or swap the frame behind them) at any time.

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, AtomicU16, AtomicU64, Ordering, fence};

use xenolith_abi::hypercall::HypercallNumber;
use xenolith_abi::sched::{SCHEDOP_BLOCK, SCHEDOP_YIELD};
use xenolith_abi::version::XENVER_VERSION;

use crate::event_channel::{
    AllocUnbound, BindInterdomain, BindIpi, BindPirq, BindVcpu, BindVirq, InitControl,
    PortArgument, ResetArgument, StatusArgument,
};
use crate::grant_table::{
    GetVersion, GrantCopy, MapGrantRef, QuerySize, SetVersion, SetupTable, UnmapGrantRef,
};
use crate::hvm::{HvmParam, UpcallVector};
use crate::memory::{
    AddToPhysmap, DomainIdArgument, E820Entry, MemoryMapArgument, MemoryReservation,
};
use crate::sched::{SchedPoll, SchedShutdown};
use crate::time::VcpuTime;
use crate::types::{GuestFrame, GuestPhysAddr, PAGE_SIZE};
use crate::vcpu::{
    PeriodicTimer, RegisterArea, RegisterVcpuInfo, RunstateInfo, SingleshotTimer,
    VCPUOP_STOP_PERIODIC_TIMER, VCPUOP_STOP_SINGLESHOT_TIMER,
};
use crate::version::{ExtraVersion, FeatureInfo};
use crate::{event_channel as evtchn, grant_table as gnttab, hvm, memory, sched, vcpu, version};

/// Hypercalls made through [`hypercall`] so far: each is an exit to the
/// hypervisor (tens of microseconds under QEMU's TCG), so a program can
/// count what its work costs (Dom0's `info` shows it).
static HYPERCALLS: AtomicU64 = AtomicU64::new(0);

/// Hypercalls made through [`hypercall`] so far.
pub fn hypercalls() -> u64 {
    HYPERCALLS.load(Ordering::Relaxed)
}

/// Hypercall `number` with arguments in RDI, RSI, RDX, R10, R8, as the
/// 64-bit Xen ABI passes them; returns RAX (negative: `-errno`).
///
/// # Safety
/// What the hypercall does with its arguments must be harmless to this
/// program: every argument it takes as a guest address, and every address
/// inside structures it reads, must name memory it may read and write as
/// that hypercall does, for as long as it keeps using it; frames it adds,
/// removes or maps must hold nothing the program uses. Unmapped and
/// non-canonical addresses are harmless: nothing is reachable through them.
pub unsafe fn hypercall(number: HypercallNumber, arguments: [u64; 5]) -> i64 {
    HYPERCALLS.fetch_add(1, Ordering::Relaxed);
    let result: u64;
    // SAFETY: VMMCALL exits to the hypervisor, which touches only what the
    // arguments name (the caller's contract) and clobbers RAX and the five
    // argument registers, all declared here; it does not use our stack.
    unsafe {
        core::arch::asm!(
            "vmmcall",
            inlateout("rax") number.0 => result,
            inlateout("rdi") arguments[0] => _,
            inlateout("rsi") arguments[1] => _,
            inlateout("rdx") arguments[2] => _,
            inlateout("r10") arguments[3] => _,
            inlateout("r8") arguments[4] => _,
            options(nostack),
        );
    }
    result as i64
}

/// Types the hypervisor may write any bytes into: integers and
/// `repr(C)`/`repr(transparent)` structures of integers.
///
/// # Safety
/// Every bit pattern of the type's size must be a valid value.
pub unsafe trait Plain: Copy {}

// SAFETY: integers are valid for every bit pattern.
unsafe impl Plain for u8 {}
// SAFETY: integers are valid for every bit pattern.
unsafe impl Plain for u16 {}
// SAFETY: integers are valid for every bit pattern.
unsafe impl Plain for u32 {}
// SAFETY: integers are valid for every bit pattern.
unsafe impl Plain for u64 {}
// SAFETY: `repr(transparent)` over a u64.
unsafe impl Plain for GuestFrame {}
// SAFETY: `repr(C, packed)` structure of integers only.
unsafe impl Plain for E820Entry {}

/// A guest address inside an argument structure (`XEN_GUEST_HANDLE`):
/// 8 bytes, built only from memory borrowed for `'a`.
#[repr(transparent)]
#[derive(Debug)]
pub struct GuestHandle<'a, T: Plain> {
    address: u64,
    _borrow: PhantomData<&'a mut [T]>,
}

impl<'a, T: Plain> GuestHandle<'a, T> {
    /// A handle to `items`, which the hypervisor may read and write.
    pub fn from_mut_slice(items: &'a mut [T]) -> Self {
        Self {
            address: items.as_mut_ptr() as u64,
            _borrow: PhantomData,
        }
    }

    /// The null handle (for "no buffer").
    pub const fn null() -> Self {
        Self {
            address: 0,
            _borrow: PhantomData,
        }
    }

    /// The guest-virtual address the hypervisor sees.
    pub const fn address(&self) -> u64 {
        self.address
    }
}

/// An argument structure a hypercall reads and writes in place.
///
/// # Safety
/// Implementors are `repr(C)` structures of integers and [`GuestHandle`]s,
/// valid for any bytes the hypervisor writes; guest addresses inside are
/// `GuestHandle`s borrowing their memory for the structure's lifetime;
/// guest frames inside (which the hypervisor may map, unmap or write) come
/// only from [`FrameSlot`]s, through the structure's own constructors.
pub unsafe trait Argument {
    /// The structure with its lifetimes erased, naming it in [`Command`].
    type Kind;
}

macro_rules! arguments {
    ($($kind:ty => $($type:ty),+;)+) => {
        $($(
            // SAFETY: a `repr(C)` argument structure of integers and
            // borrowed `GuestHandle`s whose frame fields are private and
            // set from `FrameSlot`s (checked by its module's tests).
            unsafe impl Argument for $type {
                type Kind = $kind;
            }
        )+)+
    };
}

arguments! {
    FeatureInfo => FeatureInfo;
    ExtraVersion => ExtraVersion;
    SchedShutdown => SchedShutdown;
    SchedPoll<'static> => SchedPoll<'_>;
    AddToPhysmap => AddToPhysmap;
    MemoryMapArgument<'static> => MemoryMapArgument<'_>;
    MemoryReservation<'static> => MemoryReservation<'_>;
    DomainIdArgument => DomainIdArgument;
    RegisterVcpuInfo => RegisterVcpuInfo;
    RegisterArea => RegisterArea;
    SingleshotTimer => SingleshotTimer;
    PeriodicTimer => PeriodicTimer;
    HvmParam => HvmParam;
    UpcallVector => UpcallVector;
    BindInterdomain => BindInterdomain;
    BindVirq => BindVirq;
    BindPirq => BindPirq;
    PortArgument => PortArgument;
    StatusArgument => StatusArgument;
    AllocUnbound => AllocUnbound;
    BindIpi => BindIpi;
    BindVcpu => BindVcpu;
    ResetArgument => ResetArgument;
    InitControl => InitControl;
    MapGrantRef => MapGrantRef;
    UnmapGrantRef => UnmapGrantRef;
    SetupTable<'static> => SetupTable<'_>;
    GrantCopy => GrantCopy;
    QuerySize => QuerySize;
    SetVersion => SetVersion;
    GetVersion => GetVersion;
}

/// A hypercall and sub-command that takes a `K` (by pointer). Only this
/// module pairs commands with structures: the pairing is what makes the
/// calls below safe.
pub(crate) struct Command<K> {
    number: HypercallNumber,
    command: u64,
    _kind: PhantomData<fn(K)>,
}

const fn command<K>(number: HypercallNumber, command: u64) -> Command<K> {
    Command {
        number,
        command,
        _kind: PhantomData,
    }
}

const XEN_VERSION: HypercallNumber = HypercallNumber::XEN_VERSION;
const SCHED_OP: HypercallNumber = HypercallNumber::SCHED_OP;
const MEMORY_OP: HypercallNumber = HypercallNumber::MEMORY_OP;
const VCPU_OP: HypercallNumber = HypercallNumber::VCPU_OP;
const HVM_OP: HypercallNumber = HypercallNumber::HVM_OP;
const EVENT_CHANNEL_OP: HypercallNumber = HypercallNumber::EVENT_CHANNEL_OP;
const GRANT_TABLE_OP: HypercallNumber = HypercallNumber::GRANT_TABLE_OP;

const fn evtchn<K>(op: u32) -> Command<K> {
    command(EVENT_CHANNEL_OP, op as u64)
}

pub(crate) const GET_FEATURES: Command<FeatureInfo> =
    command(XEN_VERSION, version::XENVER_GET_FEATURES);
pub(crate) const GET_EXTRAVERSION: Command<ExtraVersion> =
    command(XEN_VERSION, version::XENVER_EXTRAVERSION);
pub(crate) const SHUTDOWN: Command<SchedShutdown> = command(SCHED_OP, sched::SCHEDOP_SHUTDOWN);
pub(crate) const POLL: Command<SchedPoll<'static>> = command(SCHED_OP, sched::SCHEDOP_POLL);
pub(crate) const ADD_TO_PHYSMAP: Command<AddToPhysmap> =
    command(MEMORY_OP, memory::XENMEM_ADD_TO_PHYSMAP);
pub(crate) const MEMORY_MAP: Command<MemoryMapArgument<'static>> =
    command(MEMORY_OP, memory::XENMEM_MEMORY_MAP);
pub(crate) const POPULATE_PHYSMAP: Command<MemoryReservation<'static>> =
    command(MEMORY_OP, memory::XENMEM_POPULATE_PHYSMAP);
pub(crate) const DECREASE_RESERVATION: Command<MemoryReservation<'static>> =
    command(MEMORY_OP, memory::XENMEM_DECREASE_RESERVATION);
pub(crate) const CURRENT_RESERVATION: Command<DomainIdArgument> =
    command(MEMORY_OP, memory::XENMEM_CURRENT_RESERVATION);
pub(crate) const MAXIMUM_RESERVATION: Command<DomainIdArgument> =
    command(MEMORY_OP, memory::XENMEM_MAXIMUM_RESERVATION);
pub(crate) const REGISTER_VCPU_INFO: Command<RegisterVcpuInfo> =
    command(VCPU_OP, vcpu::VCPUOP_REGISTER_VCPU_INFO);
pub(crate) const REGISTER_RUNSTATE: Command<RegisterArea> =
    command(VCPU_OP, vcpu::VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA);
pub(crate) const REGISTER_TIME_AREA: Command<RegisterArea> =
    command(VCPU_OP, vcpu::VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA);
pub(crate) const SET_SINGLESHOT_TIMER: Command<SingleshotTimer> =
    command(VCPU_OP, vcpu::VCPUOP_SET_SINGLESHOT_TIMER);
pub(crate) const SET_PERIODIC_TIMER: Command<PeriodicTimer> =
    command(VCPU_OP, vcpu::VCPUOP_SET_PERIODIC_TIMER);
pub(crate) const SET_PARAM: Command<HvmParam> = command(HVM_OP, hvm::HVMOP_SET_PARAM);
pub(crate) const GET_PARAM: Command<HvmParam> = command(HVM_OP, hvm::HVMOP_GET_PARAM);
pub(crate) const SET_UPCALL_VECTOR: Command<UpcallVector> =
    command(HVM_OP, hvm::HVMOP_SET_EVTCHN_UPCALL_VECTOR);
pub(crate) const BIND_INTERDOMAIN: Command<BindInterdomain> =
    evtchn(evtchn::EVTCHNOP_BIND_INTERDOMAIN);
pub(crate) const BIND_VIRQ: Command<BindVirq> = evtchn(evtchn::EVTCHNOP_BIND_VIRQ);
pub(crate) const BIND_PIRQ: Command<BindPirq> = evtchn(evtchn::EVTCHNOP_BIND_PIRQ);
pub(crate) const CLOSE: Command<PortArgument> = evtchn(evtchn::EVTCHNOP_CLOSE);
pub(crate) const SEND: Command<PortArgument> = evtchn(evtchn::EVTCHNOP_SEND);
pub(crate) const UNMASK: Command<PortArgument> = evtchn(evtchn::EVTCHNOP_UNMASK);
pub(crate) const STATUS: Command<StatusArgument> = evtchn(evtchn::EVTCHNOP_STATUS);
pub(crate) const ALLOC_UNBOUND: Command<AllocUnbound> = evtchn(evtchn::EVTCHNOP_ALLOC_UNBOUND);
pub(crate) const BIND_IPI: Command<BindIpi> = evtchn(evtchn::EVTCHNOP_BIND_IPI);
pub(crate) const BIND_VCPU: Command<BindVcpu> = evtchn(evtchn::EVTCHNOP_BIND_VCPU);
pub(crate) const RESET: Command<ResetArgument> = evtchn(evtchn::EVTCHNOP_RESET);
pub(crate) const INIT_CONTROL: Command<InitControl> = evtchn(evtchn::EVTCHNOP_INIT_CONTROL);
pub(crate) const MAP_GRANT_REF: Command<MapGrantRef> =
    command(GRANT_TABLE_OP, gnttab::GNTTABOP_MAP_GRANT_REF);
pub(crate) const UNMAP_GRANT_REF: Command<UnmapGrantRef> =
    command(GRANT_TABLE_OP, gnttab::GNTTABOP_UNMAP_GRANT_REF);
pub(crate) const SETUP_TABLE: Command<SetupTable<'static>> =
    command(GRANT_TABLE_OP, gnttab::GNTTABOP_SETUP_TABLE);
pub(crate) const GRANT_COPY: Command<GrantCopy> = command(GRANT_TABLE_OP, gnttab::GNTTABOP_COPY);
pub(crate) const QUERY_SIZE: Command<QuerySize> =
    command(GRANT_TABLE_OP, gnttab::GNTTABOP_QUERY_SIZE);
pub(crate) const SET_VERSION: Command<SetVersion> =
    command(GRANT_TABLE_OP, gnttab::GNTTABOP_SET_VERSION);
pub(crate) const GET_VERSION: Command<GetVersion> =
    command(GRANT_TABLE_OP, gnttab::GNTTABOP_GET_VERSION);

/// `hypercall(number, [command, &argument])`: most hypercalls' shape.
pub(crate) fn call<T: Argument>(command: &Command<T::Kind>, argument: &mut T) -> i64 {
    let pointer = argument as *mut T as u64;
    // SAFETY: `command` takes a `T` (the table above), and `T: Argument`
    // makes any hypervisor write to it valid and every address inside it
    // borrowed memory.
    unsafe { hypercall(command.number, [command.command, pointer, 0, 0, 0]) }
}

/// `vcpu_op(command, vcpu, &argument)`.
pub(crate) fn call_for_vcpu<T: Argument>(
    command: &Command<T::Kind>,
    vcpu: u32,
    argument: &mut T,
) -> i64 {
    let pointer = argument as *mut T as u64;
    // SAFETY: as in `call`; the vCPU id is a plain value.
    unsafe {
        hypercall(
            command.number,
            [command.command, u64::from(vcpu), pointer, 0, 0],
        )
    }
}

/// `grant_table_op(command, &arguments[0], count)`.
pub(crate) fn call_with_array<T: Argument>(command: &Command<T::Kind>, arguments: &mut [T]) -> i64 {
    let pointer = arguments.as_mut_ptr() as u64;
    let count = arguments.len() as u64;
    // SAFETY: as in `call`, for each of the `count` elements of the slice.
    unsafe { hypercall(command.number, [command.command, pointer, count, 0, 0]) }
}

/// Hypercalls whose arguments are plain values (no address, or null).
#[derive(Clone, Copy, Debug)]
pub(crate) enum ValueCall {
    XenVersion,
    Yield,
    Block,
    StopSingleshotTimer { vcpu: u32 },
    StopPeriodicTimer { vcpu: u32 },
    VmAssist { command: u32, kind: u32 },
}

/// Makes a [`ValueCall`].
pub(crate) fn call_with_values(call: ValueCall) -> i64 {
    let (number, arguments) = match call {
        ValueCall::XenVersion => (XEN_VERSION, [XENVER_VERSION, 0, 0, 0, 0]),
        ValueCall::Yield => (SCHED_OP, [SCHEDOP_YIELD, 0, 0, 0, 0]),
        ValueCall::Block => (SCHED_OP, [SCHEDOP_BLOCK, 0, 0, 0, 0]),
        ValueCall::StopSingleshotTimer { vcpu } => (
            VCPU_OP,
            [VCPUOP_STOP_SINGLESHOT_TIMER, u64::from(vcpu), 0, 0, 0],
        ),
        ValueCall::StopPeriodicTimer { vcpu } => (
            VCPU_OP,
            [VCPUOP_STOP_PERIODIC_TIMER, u64::from(vcpu), 0, 0, 0],
        ),
        ValueCall::VmAssist { command, kind } => (
            HypercallNumber::VM_ASSIST,
            [u64::from(command), u64::from(kind), 0, 0, 0],
        ),
    };
    // SAFETY: none of these commands takes an address (their pointer
    // arguments are null and unused), so the hypervisor touches no memory.
    unsafe { hypercall(number, arguments) }
}

/// `console_io(CONSOLEIO_write, bytes.len(), bytes)`.
pub(crate) fn console_write(bytes: &[u8]) -> i64 {
    let arguments = [
        xenolith_abi::console_io::CONSOLEIO_WRITE,
        bytes.len() as u64,
        bytes.as_ptr() as u64,
        0,
        0,
    ];
    // SAFETY: CONSOLEIO_write only reads `count` bytes at the buffer, which
    // is borrowed for the call.
    unsafe { hypercall(HypercallNumber::CONSOLE_IO, arguments) }
}

/// Reads the time-stamp counter (the pvclock's input).
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects and reads no memory.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// One 4 KiB guest page at a fixed virtual address, whose frame the
/// hypervisor may replace (shared_info, grant frames, granted pages, pages
/// given back and repopulated). Accessed only with bounds-checked volatile
/// or atomic operations.
#[derive(Clone, Copy, Debug)]
pub struct FrameSlot {
    frame: GuestFrame,
    base: NonNull<u8>,
}

// SAFETY: the slot is an address; all access through it is volatile or
// atomic, and `new`'s contract makes the page belong to the slots alone.
unsafe impl Send for FrameSlot {}
// SAFETY: as for `Send`.
unsafe impl Sync for FrameSlot {}

impl FrameSlot {
    /// A slot for guest frame `frame`, seen at virtual `address`; `None` if
    /// the address is null or not page-aligned.
    ///
    /// # Safety
    /// For the rest of the program, `address` must map guest frame `frame`
    /// readable and writable, and nothing but `FrameSlot`s (and the
    /// hypervisor) may use the page: no Rust object lives there and no
    /// reference points into it. The frame may be absent (a hole, or given
    /// back): accessing it then traps, so access it only while populated.
    pub unsafe fn new(frame: GuestFrame, address: usize) -> Option<Self> {
        if !address.is_multiple_of(PAGE_SIZE) {
            return None;
        }
        NonNull::new(address as *mut u8).map(|base| Self { frame, base })
    }

    /// The guest frame number.
    pub const fn frame(&self) -> GuestFrame {
        self.frame
    }

    /// The guest-physical address of the page.
    pub const fn guest_physical(&self) -> GuestPhysAddr {
        self.frame.address()
    }

    /// The guest-virtual address of the page.
    pub fn virtual_address(&self) -> u64 {
        self.base.as_ptr() as u64
    }

    /// The address of a naturally aligned `T` at `offset`, if it fits.
    fn place<T>(&self, offset: usize) -> Option<*mut T> {
        let end = offset.checked_add(size_of::<T>())?;
        if end > PAGE_SIZE || !offset.is_multiple_of(align_of::<T>()) {
            return None;
        }
        Some(self.base.as_ptr().wrapping_add(offset).cast::<T>())
    }

    /// Volatile read of a `T` at `offset` (naturally aligned, in the page).
    pub fn load<T: Plain>(&self, offset: usize) -> Option<T> {
        let pointer = self.place::<T>(offset)?;
        // SAFETY: inside the page and aligned (checked by `place`); the page
        // is readable per `new`, and any bytes are a valid `T: Plain`.
        Some(unsafe { pointer.read_volatile() })
    }

    /// Volatile write of `value` at `offset`; false if it does not fit.
    pub fn store<T: Plain>(&self, offset: usize, value: T) -> bool {
        let Some(pointer) = self.place::<T>(offset) else {
            return false;
        };
        // SAFETY: inside the page and aligned (checked by `place`); the page
        // is writable and holds no Rust object per `new`.
        unsafe { pointer.write_volatile(value) };
        true
    }

    /// Copies bytes out of the page from `offset`; false if out of range.
    pub fn read(&self, offset: usize, buffer: &mut [u8]) -> bool {
        if offset
            .checked_add(buffer.len())
            .is_none_or(|end| end > PAGE_SIZE)
        {
            return false;
        }
        for (index, byte) in buffer.iter_mut().enumerate() {
            *byte = self.load(offset + index).unwrap_or(0);
        }
        true
    }

    /// Copies bytes into the page at `offset`; false if out of range.
    pub fn write(&self, offset: usize, data: &[u8]) -> bool {
        if offset
            .checked_add(data.len())
            .is_none_or(|end| end > PAGE_SIZE)
        {
            return false;
        }
        for (index, &byte) in data.iter().enumerate() {
            self.store(offset + index, byte);
        }
        true
    }

    /// Sets every byte of the page to `byte`.
    pub fn fill(&self, byte: u8) {
        let word = u64::from_ne_bytes([byte; 8]);
        for offset in (0..PAGE_SIZE).step_by(8) {
            self.store(offset, word);
        }
    }

    /// The aligned 64-bit word at `offset` as an atomic.
    pub fn atomic_u64(&self, offset: usize) -> Option<&AtomicU64> {
        let pointer = self.place::<u64>(offset)?;
        // SAFETY: aligned and inside the page, which lives for the program
        // (so for `&self`) and is accessed only volatilely or atomically.
        Some(unsafe { AtomicU64::from_ptr(pointer) })
    }

    /// The aligned 16-bit word at `offset` as an atomic.
    pub fn atomic_u16(&self, offset: usize) -> Option<&AtomicU16> {
        let pointer = self.place::<u16>(offset)?;
        // SAFETY: as in `atomic_u64`.
        Some(unsafe { AtomicU16::from_ptr(pointer) })
    }

    /// The byte at `offset` as an atomic.
    pub fn atomic_u8(&self, offset: usize) -> Option<&AtomicU8> {
        let pointer = self.place::<u8>(offset)?;
        // SAFETY: as in `atomic_u64`.
        Some(unsafe { AtomicU8::from_ptr(pointer) })
    }
}

/// Where the hypervisor keeps this vCPU's runstate
/// (`VCPUOP_register_runstate_memory_area`): it may write it at any time
/// after registration, so it is only read volatilely. Make it a `static`.
#[repr(C, align(64))]
pub struct RunstateArea(UnsafeCell<RunstateInfo>);

// SAFETY: only the hypervisor writes it; the program only reads volatilely.
unsafe impl Sync for RunstateArea {}

impl RunstateArea {
    /// An area whose state is -1 and entry time all ones until written.
    pub const fn new() -> Self {
        Self(UnsafeCell::new(RunstateInfo::UNWRITTEN))
    }

    /// A volatile copy of the current contents.
    pub fn read(&self) -> RunstateInfo {
        // SAFETY: the cell is valid, aligned and `RunstateInfo` is valid
        // for any bytes; a racing hypervisor write yields a torn but valid
        // copy, which `XEN_RUNSTATE_UPDATE` lets a reader detect.
        unsafe { self.0.get().read_volatile() }
    }

    /// The guest-virtual address the hypervisor writes.
    pub(crate) fn address(&'static self) -> u64 {
        self.0.get() as u64
    }
}

/// A `vcpu_time_info` the hypervisor keeps current at a guest-virtual
/// address (`VCPUOP_register_vcpu_time_memory_area`). Zero until written.
#[repr(C, align(32))]
pub struct TimeArea(UnsafeCell<[u64; 4]>);

// SAFETY: only the hypervisor writes it; the program only reads volatilely.
unsafe impl Sync for TimeArea {}

impl TimeArea {
    pub const fn new() -> Self {
        Self(UnsafeCell::new([0; 4]))
    }

    /// A consistent copy, read with the version protocol; `None` if it
    /// never held still (or was never written: version 0 and all zero).
    pub fn read(&self) -> Option<VcpuTime> {
        for _ in 0..64 {
            let version = self.word(0) as u32;
            if version & 1 == 1 {
                core::hint::spin_loop();
                continue;
            }
            fence(Ordering::Acquire);
            let words = [self.word(1), self.word(2), self.word(3)];
            fence(Ordering::Acquire);
            if self.word(0) as u32 == version && words != [0; 3] {
                return Some(VcpuTime {
                    version,
                    tsc_timestamp: words[0],
                    system_time: words[1],
                    tsc_to_system_mul: words[2] as u32,
                    tsc_shift: (words[2] >> 32) as u8 as i8,
                    flags: (words[2] >> 40) as u8,
                });
            }
        }
        None
    }

    fn word(&self, index: usize) -> u64 {
        // SAFETY: `index` < 4 at every call site; the cell is valid and
        // aligned, and any bits are a valid u64.
        unsafe { (self.0.get() as *const u64).add(index).read_volatile() }
    }

    /// The guest-virtual address the hypervisor writes.
    pub(crate) fn address(&'static self) -> u64 {
        self.0.get() as u64
    }
}

impl Default for TimeArea {
    fn default() -> Self {
        Self::new()
    }
}

impl Default for RunstateArea {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for RunstateArea {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("RunstateArea").field(&self.read()).finish()
    }
}

/// A zeroed, leaked page standing in for a shared page in host tests.
#[cfg(test)]
pub(crate) fn test_page() -> FrameSlot {
    #[repr(C, align(4096))]
    struct Page([u8; PAGE_SIZE]);
    let page: &'static mut Page = Box::leak(Box::new(Page([0; PAGE_SIZE])));
    let address = page as *mut Page as usize;
    // SAFETY: the page is leaked, so it lives for the rest of the test
    // program, and the reference to it is never used again.
    unsafe { FrameSlot::new(GuestFrame(0x1234), address) }.expect("a page-aligned page")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_check_bounds_and_alignment() {
        let slot = test_page();
        assert!(slot.store::<u64>(4088, 7));
        assert_eq!(slot.load::<u64>(4088), Some(7));
        assert!(!slot.store::<u64>(4092, 7));
        assert_eq!(slot.load::<u32>(4094), None);
        assert_eq!(slot.load::<u32>(2), None);
        assert!(slot.atomic_u64(4).is_none());
        assert!(slot.write(4090, b"abcdef"));
        assert!(!slot.write(4091, b"abcdef"));
        let mut bytes = [0; 6];
        assert!(slot.read(4090, &mut bytes));
        assert_eq!(&bytes, b"abcdef");
        assert!(!slot.read(usize::MAX, &mut bytes));
        slot.fill(0x5a);
        assert_eq!(slot.load::<u8>(4095), Some(0x5a));
        assert_eq!(slot.guest_physical(), GuestPhysAddr(0x123_4000));
    }

    #[test]
    fn slots_refuse_unaligned_addresses() {
        // SAFETY: `new` refuses the address before anything could use it.
        assert!(unsafe { FrameSlot::new(GuestFrame(1), 0x1001) }.is_none());
        // SAFETY: as above, for the null address.
        assert!(unsafe { FrameSlot::new(GuestFrame(1), 0) }.is_none());
    }

    #[test]
    fn handles_are_eight_bytes_and_borrow_their_slice() {
        assert_eq!(size_of::<GuestHandle<'static, u32>>(), 8);
        let mut items = [1u32, 2];
        let handle = GuestHandle::from_mut_slice(&mut items);
        assert_eq!(handle.address(), items.as_ptr() as u64);
        assert_eq!(GuestHandle::<u64>::null().address(), 0);
    }
}
