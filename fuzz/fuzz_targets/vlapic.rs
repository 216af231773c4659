//! Fuzzes the virtual local APIC with a guest's sequence of MSR and MMIO
//! accesses, interrupts and time: it must never panic, and an injected
//! vector must be one it accepted.
#![no_main]

use hypervisor::memory::GuestPhysAddr;
use hypervisor::time::SystemTime;
use hypervisor::vlapic::{LapicConfig, TriggerMode, Vector, VirtualLapic};
use libfuzzer_sys::fuzz_target;
use xenolith_abi::event_channel::VcpuId;

fuzz_target!(|data: &[u8]| {
    let mut apic = VirtualLapic::new(LapicConfig::for_vcpu(VcpuId(0), true, true));
    let mut now = 0u64;
    for op in data.chunks_exact(12) {
        let value = u64::from_le_bytes([op[4], op[5], op[6], op[7], op[8], op[9], op[10], op[11]]);
        now = now.saturating_add(u64::from(op[3]) * 1000);
        let time = SystemTime(now);
        match op[0] % 8 {
            0 => {
                let _ = apic.read_msr(0x800 + u32::from(op[1]), time);
            }
            1 => {
                let _ = apic.write_msr(0x800 + u32::from(op[1]), value, time);
            }
            2 => {
                let _ = apic.write_apic_base(value);
            }
            3 => {
                let address = GuestPhysAddr(0xfee0_0000 + u64::from(op[1]) * 16 + u64::from(op[2] % 4));
                let _ = apic.mmio_read(address, usize::from(op[2] % 9), time);
            }
            4 => {
                let address = GuestPhysAddr(0xfee0_0000 + u64::from(op[1]) * 16);
                let _ = apic.mmio_write(address, usize::from(op[2] % 9), value, time);
            }
            5 => {
                let trigger = if op[2] & 1 == 0 { TriggerMode::Edge } else { TriggerMode::Level };
                let _ = apic.accept(Vector(op[1]), trigger);
            }
            6 => {
                if let Some(vector) = apic.highest_deliverable(op[1] & 1 == 1, false) {
                    let _ = apic.acknowledge(vector);
                }
            }
            _ => {
                let _ = apic.poll(time);
            }
        }
    }
});
