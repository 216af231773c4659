//! What a virtual CPU sees: the CPUID and MSR answers the hypervisor gives.

pub mod cpuid;
pub mod msr;
