//! Placeholder replaced by the hypervisor entry.
#![no_std]
#![no_main]
