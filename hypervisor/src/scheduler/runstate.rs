//! Per-vCPU runstate accounting: how long a vCPU has spent running,
//! runnable, blocked and offline, in the shape of Xen's
//! `vcpu_runstate_info` (`xen/include/public/vcpu.h`) so the hypervisor can
//! copy it into the area a guest registers with
//! `VCPUOP_register_runstate_memory_area`.

use crate::time::SystemTime;

/// A vCPU's scheduling state; the discriminants are Xen's `RUNSTATE_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VcpuState {
    /// On a pCPU now (`RUNSTATE_running`).
    Running = 0,
    /// Wants a pCPU and is waiting for one (`RUNSTATE_runnable`).
    Runnable = 1,
    /// Waiting for an event: halted or in `SCHEDOP_block`
    /// (`RUNSTATE_blocked`).
    Blocked = 2,
    /// Not blocked, yet not allowed to run: paused, or out of cap budget
    /// (`RUNSTATE_offline`). Guests count this as stolen time.
    Offline = 3,
}

impl VcpuState {
    /// Every state, in `time[]` order.
    pub const ALL: [Self; 4] = [Self::Running, Self::Runnable, Self::Blocked, Self::Offline];

    /// The value of `vcpu_runstate_info.state`.
    pub const fn as_raw(self) -> i32 {
        self as i32
    }

    /// The index into `vcpu_runstate_info.time`.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// `XEN_RUNSTATE_UPDATE`: set in `state_entry_time` while the record is
/// being rewritten, for guests that enabled `VMASST_TYPE_runstate_update_flag`.
pub const RUNSTATE_UPDATE: u64 = 1 << 63;

/// One vCPU's `vcpu_runstate_info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Runstate {
    /// The state now.
    pub state: VcpuState,
    /// When it entered that state.
    pub state_entry_time: SystemTime,
    /// Nanoseconds spent in each state before entering the current one,
    /// indexed by [`VcpuState::index`].
    pub time_ns: [u64; 4],
}

impl Runstate {
    /// Size of `vcpu_runstate_info`: `state` s32 @0, `state_entry_time`
    /// u64 @8, `time[4]` u64 @16.
    pub const SIZE: usize = 48;

    /// A vCPU that entered `state` at `now` and has no history.
    pub const fn new(state: VcpuState, now: SystemTime) -> Self {
        Self {
            state,
            state_entry_time: now,
            time_ns: [0; 4],
        }
    }

    /// Moves to `state` at `now`, charging the time since the last change
    /// to the old state. A `now` earlier than the last change (a caller's
    /// clock stepping back) charges nothing and keeps the later time.
    pub fn change(&mut self, state: VcpuState, now: SystemTime) {
        if state == self.state {
            return;
        }
        let spent = now.saturating_ns_since(self.state_entry_time);
        let slot = &mut self.time_ns[self.state.index()];
        *slot = slot.saturating_add(spent);
        self.state = state;
        self.state_entry_time = self.state_entry_time.max(now);
    }

    /// Nanoseconds spent in `state`, not counting the current interval.
    pub const fn time_in(&self, state: VcpuState) -> u64 {
        self.time_ns[state.index()]
    }

    /// The record as Xen's `vcpu_runstate_get` reports it at `now`: the
    /// current interval is added to the current state's time;
    /// `state_entry_time` is unchanged.
    pub fn at(&self, now: SystemTime) -> Self {
        let mut snapshot = *self;
        let slot = &mut snapshot.time_ns[self.state.index()];
        *slot = slot.saturating_add(now.saturating_ns_since(self.state_entry_time));
        snapshot
    }

    /// Stolen time as Linux computes it: runnable plus offline.
    pub const fn steal_ns(&self) -> u64 {
        self.time_in(VcpuState::Runnable)
            .saturating_add(self.time_in(VcpuState::Offline))
    }

    /// The 48 bytes of `vcpu_runstate_info`. With `updating`, the
    /// [`RUNSTATE_UPDATE`] bit is set in `state_entry_time`.
    ///
    /// Xen's order for guests with the update flag: store
    /// `state_entry_time` with the bit set, barrier, store the whole record
    /// (bit still set), barrier, store `state_entry_time` without it.
    /// Without the flag: store the record.
    pub fn encode(&self, updating: bool) -> [u8; Self::SIZE] {
        let mut entry_time = self.state_entry_time.as_nanos();
        if updating {
            entry_time |= RUNSTATE_UPDATE;
        }
        let mut bytes = [0u8; Self::SIZE];
        bytes[0..4].copy_from_slice(&self.state.as_raw().to_le_bytes());
        bytes[8..16].copy_from_slice(&entry_time.to_le_bytes());
        for (index, time) in self.time_ns.iter().enumerate() {
            let offset = 16 + 8 * index;
            bytes[offset..offset + 8].copy_from_slice(&time.to_le_bytes());
        }
        bytes
    }
}
