//! Guests' virtual local APICs wired to the machine: x2APIC MSR accesses,
//! IPIs between a domain's vCPUs, and the APIC's interrupts offered to the
//! guest through the VMCB's virtual interrupt. Guests start with the APIC
//! already in x2APIC mode (as firmware may leave it), so Linux reaches it
//! through MSRs and never through the xAPIC page.

use alloc::vec::Vec;

use hypervisor::svm::vmcb::Event;
use hypervisor::vlapic::{
    self, Acknowledged, LapicAction, LapicConfig, RealModeEntry, Received, Vector, VirtualLapic,
    is_x2apic_msr,
};
use xenolith_abi::event_channel::VcpuId;

use super::{Machine, Next, VcpuRef};

/// IA32_APIC_BASE.
const MSR_APIC_BASE: u32 = 0x1b;

/// A guest vCPU's APIC: x2APIC offered and switched on.
pub fn x2apic_for_vcpu(index: usize) -> VirtualLapic {
    let mut lapic = VirtualLapic::new(LapicConfig::for_vcpu(VcpuId(index as u32), true, false));
    let bootstrap = if index == 0 { 1 << 8 } else { 0 };
    let enabled = vlapic::DEFAULT_BASE | (1 << 11) | (1 << 10) | bootstrap;
    let _ = lapic.write_apic_base(enabled);
    lapic
}

impl Machine<'_> {
    /// Handles RDMSR/WRMSR of the APIC's MSRs for a vCPU that has one;
    /// `None` when the MSR is not the APIC's (or the vCPU has none).
    pub(super) fn lapic_msr(&mut self, current: VcpuRef, write: bool) -> Option<Next> {
        let now = self.now();
        let vcpu = self.vcpu_mut(current)?;
        let index = vcpu.registers.rcx as u32;
        if index != MSR_APIC_BASE && !is_x2apic_msr(index) {
            return None;
        }
        let value = (vcpu.registers.rdx << 32) | (vcpu.vmcb.rax() & 0xffff_ffff);
        log::debug!(
            "d{} {} APIC MSR {index:#x} {value:#x}",
            current.domain.0,
            if write { "writes" } else { "reads" }
        );
        let entry = self.domains.get_mut(current.domain).ok()?;
        let lapic = entry.vcpus.get_mut(current.index)?.lapic.as_mut()?;
        let result = match (index, write) {
            (MSR_APIC_BASE, false) => Ok((Some(lapic.apic_base()), None)),
            (MSR_APIC_BASE, true) => lapic.write_apic_base(value).map(|action| (None, action)),
            (_, false) => lapic.read_msr(index, now).map(|read| (Some(read), None)),
            (_, true) => lapic
                .write_msr(index, value, now)
                .map(|action| (None, action)),
        };
        let vcpu = self.vcpu_mut(current)?;
        match result {
            Ok((read, action)) => {
                if let Some(read) = read {
                    vcpu.vmcb.set_rax(read & 0xffff_ffff);
                    vcpu.registers.rdx = read >> 32;
                }
                vcpu.advance(2);
                if let Some(LapicAction::SendIpi(ipi)) = action {
                    self.send_ipi(current, ipi);
                }
            }
            Err(_) => vcpu.vmcb.inject(Event::GENERAL_PROTECTION),
        }
        Some(Next::Resume)
    }

    /// Delivers an IPI to the vCPUs of the sender's domain it names.
    fn send_ipi(&mut self, from: VcpuRef, ipi: vlapic::Ipi) {
        let Ok(entry) = self.domains.get_mut(from.domain) else {
            return;
        };
        let lapics = entry
            .vcpus
            .iter()
            .enumerate()
            .filter_map(|(index, state)| state.lapic.as_ref().map(|lapic| (index, lapic)));
        let targets: Vec<usize> = vlapic::route(&ipi, lapics);
        let mut outcomes = Vec::new();
        for target in targets {
            let Some(state) = entry.vcpus.get_mut(target) else {
                continue;
            };
            let Some(lapic) = state.lapic.as_mut() else {
                continue;
            };
            let received = lapic.receive(ipi.message);
            if received == Received::WaitForStartup {
                // Whatever it waited for, it waits for a SIPI now.
                state.wait = None;
                state.lapic_offered = None;
            }
            outcomes.push((target, received));
        }
        for (index, received) in outcomes {
            let which = VcpuRef {
                domain: from.domain,
                index,
            };
            match received {
                Received::Interrupt | Received::Nmi => self.wake(which),
                Received::WaitForStartup => self.stop_for_startup(which),
                Received::Start(entry) => self.start_application_processor(which, &entry),
                Received::Ignored => {}
            }
        }
    }

    /// INIT: the vCPU leaves the CPU until a start-up IPI.
    fn stop_for_startup(&mut self, which: VcpuRef) {
        log::debug!("d{}v{} INIT", which.domain.0, which.index);
        if let Some(vcpu) = self.vcpu_mut(which) {
            vcpu.wait_for_startup();
        }
        let now = self.now();
        let _ = self.scheduler.remove(which, now);
    }

    /// A start-up IPI the vCPU accepted: it starts in real mode at the
    /// trampoline and competes for the CPU.
    fn start_application_processor(&mut self, which: VcpuRef, entry: &RealModeEntry) {
        let Some(vcpu) = self.vcpu_mut(which) else {
            return;
        };
        // The guest decides how often: only its first start is news.
        let level = if vcpu.startups == 0 {
            log::Level::Info
        } else {
            log::Level::Debug
        };
        log::log!(
            level,
            "domain {} starts vCPU {} at {:#x} (real mode)",
            which.domain.0,
            which.index,
            entry.code_base.0
        );
        vcpu.start_in_real_mode(entry);
        self.make_runnable(which);
    }

    /// Injects the vCPU's pending NMI (ICR delivery mode NMI, from itself
    /// or another vCPU) when it may take one; otherwise it stays pending
    /// in the APIC for a later entry.
    pub(super) fn nmi_offer(&mut self, current: VcpuRef) {
        let Some(vcpu) = self
            .hardware
            .get_mut(&current.domain)
            .and_then(|hardware| hardware.vcpus.get_mut(current.index))
        else {
            return;
        };
        if !vcpu.can_take_nmi() {
            return;
        }
        let taken = self
            .domains
            .get_mut(current.domain)
            .ok()
            .and_then(|entry| entry.vcpus.get_mut(current.index))
            .and_then(|state| state.lapic.as_mut())
            .is_some_and(|lapic| lapic.take_pending_nmi());
        if taken {
            vcpu.inject_nmi();
        }
    }

    /// The APIC interrupt to offer the vCPU at this entry, if any.
    pub(super) fn lapic_offer(&mut self, current: VcpuRef) -> Option<u8> {
        let now = self.now();
        let state = self
            .domains
            .get_mut(current.domain)
            .ok()?
            .vcpus
            .get_mut(current.index)?;
        let lapic = state.lapic.as_mut()?;
        let _ = lapic.poll(now);
        // Whether interrupts are on is the CPU's business: the VMCB's
        // virtual interrupt waits for them.
        let vector = lapic.highest_deliverable(true, false)?;
        state.lapic_offered = Some(vector.0);
        Some(vector.0)
    }

    /// The guest took the offered APIC interrupt: it moves into service.
    pub(super) fn lapic_delivered(&mut self, current: VcpuRef) {
        let Some(state) = self
            .domains
            .get_mut(current.domain)
            .ok()
            .and_then(|entry| entry.vcpus.get_mut(current.index))
        else {
            return;
        };
        if let (Some(lapic), Some(vector)) = (state.lapic.as_mut(), state.lapic_offered.take())
            && let Acknowledged::Spurious(_) = lapic.acknowledge(Vector(vector))
        {
            // Nothing to do: the guest ran the vector's handler anyway.
        }
    }
}
