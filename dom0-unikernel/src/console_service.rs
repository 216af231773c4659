//! The console back end: drains each guest's console ring into its log,
//! mirrors whole lines to the appliance's serial line as `[name] line`
//! (or the raw bytes, when the operator is attached to that console), and
//! delivers typed input into the ring.

use alloc::collections::BTreeMap;
use alloc::string::String;

use dom0::console_log::ConsoleLog;
use dom0::ring::{CONSOLE_INPUT, CONSOLE_OUTPUT};
use log::warn;
use xen_guest::event_channel;
use xenolith_abi::domain::DomainId;
use xenolith_abi::event_channel::Port;

use crate::console;
use crate::guest_page::GuestPage;

/// Most output taken from one ring per pass (the ring's own size).
const OUTPUT_PER_PASS: usize = 2048;

/// One guest's console.
struct GuestConsole {
    name: String,
    page: GuestPage,
    port: Port,
    log: ConsoleLog,
    /// Corrupted indices were reported once already.
    complained: bool,
}

/// Every guest's console.
#[derive(Default)]
pub struct ConsoleService {
    consoles: BTreeMap<DomainId, GuestConsole>,
    /// The console the operator is attached to: its output goes to the
    /// serial line raw.
    attached: Option<DomainId>,
}

impl ConsoleService {
    /// Starts serving `domain`'s console ring at `frame`, whose guest end is
    /// the unbound port `guest_port`.
    pub fn connect(
        &mut self,
        domain: DomainId,
        name: &str,
        frame: u64,
        guest_port: Port,
    ) -> Result<(), i64> {
        let page = GuestPage::map(domain, frame)?;
        let port = event_channel::bind_interdomain(domain, guest_port).map_err(|error| {
            warn!(
                "dom0: console: cannot bind domain {}'s port: {error:?}",
                domain.0
            );
            -22
        })?;
        self.consoles.insert(
            domain,
            GuestConsole {
                name: name.into(),
                page,
                port,
                log: ConsoleLog::new(),
                complained: false,
            },
        );
        Ok(())
    }

    /// Stops serving `domain`'s console (before it is destroyed), printing
    /// its unfinished last line.
    pub fn disconnect(&mut self, domain: DomainId) {
        self.service_one(domain);
        if let Some(mut guest) = self.consoles.remove(&domain) {
            let name = guest.name.clone();
            guest.log.flush(|line| mirror_line(&name, line));
            let _ = event_channel::close(guest.port);
        }
        if self.attached == Some(domain) {
            self.attached = None;
        }
    }

    /// Dom0's ports of every console (to wait on).
    pub fn ports(&self) -> impl Iterator<Item = Port> + '_ {
        self.consoles.values().map(|guest| guest.port)
    }

    /// Drains every console.
    pub fn service(&mut self) {
        let domains: alloc::vec::Vec<DomainId> = self.consoles.keys().copied().collect();
        for domain in domains {
            self.service_one(domain);
        }
    }

    fn service_one(&mut self, domain: DomainId) {
        let attached = self.attached == Some(domain);
        let Some(guest) = self.consoles.get_mut(&domain) else {
            return;
        };
        let bytes = match CONSOLE_OUTPUT.take(&mut guest.page, OUTPUT_PER_PASS) {
            Ok(bytes) => bytes,
            Err(bad) => {
                if !guest.complained {
                    warn!(
                        "dom0: console: {} corrupted its ring indices ({bad:?}); output discarded",
                        guest.name
                    );
                    guest.complained = true;
                }
                CONSOLE_OUTPUT.reset(&mut guest.page);
                return;
            }
        };
        if bytes.is_empty() {
            return;
        }
        let name = &guest.name;
        guest.log.push(&bytes, |line| {
            if !attached {
                mirror_line(name, line);
            }
        });
        if attached {
            console::write_raw(&bytes);
        }
        // The guest may be waiting for room.
        let _ = event_channel::send(guest.port);
    }

    /// Up to `max_bytes` of `domain`'s console output from offset `since`
    /// (see [`ConsoleLog::read_from`]); `None` if it has no console.
    pub fn read(
        &mut self,
        domain: DomainId,
        since: u64,
        max_bytes: usize,
    ) -> Option<(u64, alloc::vec::Vec<u8>)> {
        self.service_one(domain);
        let guest = self.consoles.get(&domain)?;
        Some(guest.log.read_from(since, max_bytes))
    }

    /// Sends typed bytes to `domain`'s console; returns how many fit.
    pub fn input(&mut self, domain: DomainId, bytes: &[u8]) -> usize {
        let Some(guest) = self.consoles.get_mut(&domain) else {
            return 0;
        };
        let count = CONSOLE_INPUT.produce(&mut guest.page, bytes).unwrap_or(0);
        if count > 0 {
            let _ = event_channel::send(guest.port);
        }
        count
    }

    /// Attaches the operator to `domain`'s console: its output from now on
    /// goes to the serial line raw, starting with its unfinished line (a
    /// prompt). False if it has no console.
    pub fn attach(&mut self, domain: DomainId) -> bool {
        let Some(guest) = self.consoles.get(&domain) else {
            return false;
        };
        console::write_raw(guest.log.partial_line().as_bytes());
        self.attached = Some(domain);
        true
    }

    /// Back to mirroring lines.
    pub fn detach(&mut self) {
        self.attached = None;
    }
}

fn mirror_line(name: &str, line: &str) {
    console::write_line(format_args!("[{name}] {line}"));
}
