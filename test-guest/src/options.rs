//! The guest's command line: `role=offer|accept peer=<domid> port=<p>`
//! selects the two-guest exchange; without `role` it runs alone. `bench`
//! measures hypercall costs instead of running the checks. For the
//! toolstack's tests (the guest started from an xl.cfg): `rings=indices`
//! or `rings=protocol` abuses the xenstore and console rings after the
//! other checks, `await-input` waits for a byte typed on its console
//! before the verdict, `shutdown=crash|reboot` ends it that way
//! instead of powering off, and `touch-xapic` reads the xAPIC MMIO page
//! after the verdict (which the hypervisor refuses by crashing it).
//! `hostile-vbd` and `hostile-vif` connect to the guest's first vbd or vif
//! as a front end and abuse it (see `checks::hostile_blk` and
//! `checks::hostile_net`).

use arrayvec::ArrayString;
use xen_guest::sched::ShutdownReason;
use xen_guest::{DomainId, Port};

/// Which side of the two-guest grant exchange this guest plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Grants a page to the peer at gref 8 and waits for its event.
    Offer,
    /// Binds the peer's port, maps its gref 8, replies and notifies.
    Accept,
}

/// How the guest abuses the rings Dom0 serves (see `checks::rings`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingAbuse {
    /// Impossible xenstore request indices.
    Indices,
    /// A flood of garbage xenstore requests, then an oversized one.
    Protocol,
}

/// What the command line asks for.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub role: Option<Role>,
    pub peer: Option<DomainId>,
    pub port: Option<Port>,
    /// Measure instead of check (see `bench`).
    pub bench: bool,
    /// Abuse the xenstore and console rings after the other checks.
    pub rings: Option<RingAbuse>,
    /// Wait for a byte typed on the console before the verdict.
    pub await_input: bool,
    /// Read the xAPIC page after the verdict.
    pub touch_xapic: bool,
    /// Abuse the first vbd as a front end.
    pub hostile_vbd: bool,
    /// Abuse the first vif as a front end.
    pub hostile_vif: bool,
    /// How the guest ends (power off unless the command line says).
    pub shutdown: Option<ShutdownReason>,
    /// The first word that could not be understood.
    pub unknown: Option<ArrayString<48>>,
}

/// Parses the words; the first bad one is kept for the `cmdline` check.
pub fn parse(cmdline: &str) -> Options {
    let mut options = Options::default();
    for word in cmdline.split_whitespace() {
        if word == "bench" {
            options.bench = true;
            continue;
        }
        if word == "touch-xapic" {
            options.touch_xapic = true;
            continue;
        }
        if word == "await-input" {
            options.await_input = true;
            continue;
        }
        if word == "hostile-vbd" {
            options.hostile_vbd = true;
            continue;
        }
        if word == "hostile-vif" {
            options.hostile_vif = true;
            continue;
        }
        let understood = match word.split_once('=') {
            Some(("role", "offer")) => {
                options.role = Some(Role::Offer);
                true
            }
            Some(("role", "accept")) => {
                options.role = Some(Role::Accept);
                true
            }
            Some(("peer", value)) => value
                .parse()
                .ok()
                .map(|domid| options.peer = Some(DomainId(domid)))
                .is_some(),
            Some(("port", value)) => value
                .parse()
                .ok()
                .map(|port| options.port = Some(Port(port)))
                .is_some(),
            Some(("rings", "indices")) => {
                options.rings = Some(RingAbuse::Indices);
                true
            }
            Some(("rings", "protocol")) => {
                options.rings = Some(RingAbuse::Protocol);
                true
            }
            Some(("shutdown", "crash")) => {
                options.shutdown = Some(ShutdownReason::Crash);
                true
            }
            Some(("shutdown", "reboot")) => {
                options.shutdown = Some(ShutdownReason::Reboot);
                true
            }
            _ => false,
        };
        if !understood && options.unknown.is_none() {
            let mut kept = ArrayString::new();
            for character in word.chars() {
                if kept.try_push(character).is_err() {
                    break;
                }
            }
            options.unknown = Some(kept);
        }
    }
    options
}
