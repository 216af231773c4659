//! The management shell on the appliance's serial line: typed bytes come
//! from the hypervisor (console_io read, after VIRQ_CONSOLE), go through
//! the line editor, and run xl-like verbs against the toolstack; while
//! attached to a guest's console they go to that guest instead.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use dom0::shell::{
    self, Command, DomainRow, DomainState, LineEditor, LineEvent, NEWLINE, PROMPT, Target,
};
use xenolith_abi::domain::DomainId;

use crate::console;
use crate::control;
use crate::dom0_network::NetworkStatus;
use crate::hypercall;
use crate::toolstack::{GuestState, Toolstack};

/// The operator's session.
pub struct Management {
    editor: LineEditor,
    attached: Option<DomainId>,
    /// An operator is expected: show the prompt (not under `poweroff` or
    /// `exit-when-idle`, where the serial line is a log; typed commands
    /// still run).
    interactive: bool,
    /// Dom0's address and API, as of this pass.
    network: Option<NetworkStatus>,
}

impl Management {
    pub fn new(interactive: bool) -> Self {
        Self {
            editor: LineEditor::new(),
            attached: None,
            interactive,
            network: None,
        }
    }

    /// Shows the prompt, with what was typed so far, unless it is the
    /// last thing on the screen already.
    pub fn prompt(&mut self) {
        if self.interactive && !console::prompt_shown() && self.attached.is_none() {
            console::write_raw(format!("{PROMPT}{}", self.editor.line()).as_bytes());
            console::set_prompt_shown();
        }
    }

    /// Reads and handles everything the operator typed; `network` is Dom0
    /// on the network (`None` without a NIC), for `info`.
    pub fn service(&mut self, toolstack: &mut Toolstack, network: Option<NetworkStatus>) {
        self.network = network;
        let mut buffer = [0u8; 256];
        // Bounded: the hypervisor's input buffer is finite anyway.
        for _ in 0..64 {
            let count = hypercall::console_read(&mut buffer);
            if count == 0 {
                break;
            }
            self.input(&buffer[..count], toolstack);
        }
        if let Some(domain) = self.attached
            && toolstack
                .guest(domain)
                .is_none_or(|guest| matches!(guest.state, GuestState::Stopped(_)))
        {
            self.attached = None;
            toolstack.consoles.detach();
            console::write_raw(
                format!("{NEWLINE}[domain {} stopped; detached]{NEWLINE}", domain.0).as_bytes(),
            );
            console::clear_prompt_shown();
            self.prompt();
        }
    }

    fn input(&mut self, mut bytes: &[u8], toolstack: &mut Toolstack) {
        while !bytes.is_empty() {
            if let Some(domain) = self.attached {
                let input = shell::split_console_input(bytes);
                let mut forward = input.forward;
                // Bounded: a guest not reading its input loses the rest.
                for _ in 0..8 {
                    if forward.is_empty() {
                        break;
                    }
                    let sent = toolstack.consoles.input(domain, forward);
                    forward = &forward[sent..];
                    if sent == 0 {
                        toolstack.service();
                    }
                }
                if !input.detach_requested {
                    return;
                }
                self.attached = None;
                toolstack.consoles.detach();
                console::write_raw(NEWLINE.as_bytes());
                console::clear_prompt_shown();
                self.prompt();
                bytes = input.after_detach;
                continue;
            }
            let (&byte, rest) = bytes.split_first().unwrap_or((&0, &[]));
            bytes = rest;
            match self.editor.feed(byte, console::write_raw) {
                LineEvent::Editing => {}
                LineEvent::Abandoned => {
                    console::clear_prompt_shown();
                    self.prompt();
                }
                LineEvent::Entered(line) => {
                    console::clear_prompt_shown();
                    self.run(&line, toolstack);
                    self.prompt();
                }
            }
        }
    }

    fn run(&mut self, line: &str, toolstack: &mut Toolstack) {
        let command = match shell::parse(line) {
            Ok(command) => command,
            Err(error) => return say(&format!("{error}")),
        };
        let result = match command {
            Command::Empty => Ok(()),
            Command::Help => {
                console::write_raw(shell::format_help().as_bytes());
                Ok(())
            }
            Command::List => {
                list(toolstack);
                Ok(())
            }
            Command::Info => {
                info(toolstack, self.network);
                Ok(())
            }
            Command::Dmesg => {
                let history = console::history();
                console::write_raw(&crlf(&history));
                Ok(())
            }
            // Answered at once: the guest is built between other work,
            // and its console lines follow when it runs.
            Command::Create { config } => match toolstack.find_definition(config) {
                Some(index) => toolstack
                    .create(index)
                    .map(|domain| say(&format!("building domain {}", domain.0)))
                    .map_err(|why| format!("{why}")),
                None => Err(format!(
                    "no guest config named {config:?} among the boot modules"
                )),
            },
            Command::Destroy(target) => {
                resolve(toolstack, target).and_then(|domain| toolstack.destroy(domain))
            }
            Command::Shutdown(target) => resolve(toolstack, target)
                .and_then(|domain| toolstack.request_shutdown(domain, "poweroff")),
            Command::Reboot(target) => resolve(toolstack, target)
                .and_then(|domain| toolstack.request_shutdown(domain, "reboot")),
            Command::Pause(target) => resolve_built(toolstack, target)
                .and_then(|domain| control::pause(domain).map_err(|code| format!("error {code}"))),
            // Unpausing a guest being built would run a half-loaded kernel.
            Command::Unpause(target) => resolve_built(toolstack, target).and_then(|domain| {
                control::unpause(domain).map_err(|code| format!("error {code}"))
            }),
            Command::Console(target) => resolve(toolstack, target).and_then(|domain| {
                say(&format!(
                    "attached to domain {}'s console; Ctrl-] detaches",
                    domain.0
                ));
                if toolstack.consoles.attach(domain) {
                    self.attached = Some(domain);
                    Ok(())
                } else {
                    Err("it has no console".into())
                }
            }),
        };
        if let Err(why) = result {
            say(&format!("{line}: {why}"));
        }
    }
}

/// Prints one line of shell output.
fn say(text: &str) {
    console::write_raw(format!("{text}{NEWLINE}").as_bytes());
}

/// Line ends for a terminal.
fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    for &byte in bytes {
        if byte == b'\n' {
            out.push(b'\r');
        }
        out.push(byte);
    }
    out
}

fn resolve(toolstack: &Toolstack, target: Target<'_>) -> Result<DomainId, String> {
    match target {
        Target::Id(domain) if toolstack.guest(domain).is_some() => Ok(domain),
        Target::Id(DomainId::DOM0) | Target::Name(shell::DOM0_NAME) => {
            Err("domain 0 is the appliance itself".into())
        }
        Target::Id(domain) => Err(format!("no guest has id {}", domain.0)),
        Target::Name(name) => toolstack
            .find_guest(name)
            .ok_or_else(|| format!("no guest is named {name:?}")),
    }
}

/// As [`resolve`], refusing a guest still being built.
fn resolve_built(toolstack: &Toolstack, target: Target<'_>) -> Result<DomainId, String> {
    let domain = resolve(toolstack, target)?;
    match toolstack.guest(domain) {
        Some(guest) if guest.state == GuestState::Building => {
            Err("the guest is still being built".into())
        }
        _ => Ok(domain),
    }
}

fn list(toolstack: &Toolstack) {
    let mut rows = Vec::new();
    if let Ok(dom0) = control::info(DomainId::DOM0) {
        rows.push(DomainRow {
            name: shell::DOM0_NAME,
            id: DomainId::DOM0,
            memory_mib: dom0.memory_mib(),
            vcpus: dom0.vcpus,
            state: DomainState::RUNNING,
            cpu_time_ns: dom0.cpu_time_ns,
        });
    }
    for guest in toolstack.guests() {
        let info = control::info(guest.domain).ok();
        let state = match (guest.state, info) {
            (GuestState::Stopped(control::StopReason::Crash), _) => DomainState::CRASHED,
            (GuestState::Stopped(_), _) => DomainState::SHUTDOWN,
            (GuestState::Running, Some(info)) if info.paused() => DomainState::PAUSED,
            (GuestState::Running, Some(info)) if info.running() => DomainState::RUNNING,
            (GuestState::Running, Some(info)) if info.blocked() => DomainState::BLOCKED,
            // No vCPU online: neither running nor waiting for an event.
            (GuestState::Running, Some(_)) => DomainState::RUNNABLE,
            (GuestState::Running, None) => DomainState::BLOCKED,
            (GuestState::Building, _) => DomainState::PAUSED,
        };
        rows.push(DomainRow {
            name: &guest.name,
            id: guest.domain,
            memory_mib: guest.memory_mib,
            vcpus: info.map_or(1, |info| info.vcpus),
            state,
            cpu_time_ns: info.map_or(0, |info| info.cpu_time_ns),
        });
    }
    console::write_raw(shell::format_list(&rows).as_bytes());
}

fn info(toolstack: &Toolstack, network: Option<NetworkStatus>) {
    let total = control::total_kib() / 1024;
    let free = control::free_kib() / 1024;
    let guests = toolstack.guests().count();
    say(&format!(
        "hypervisor         : Xenolith {}",
        env!("CARGO_PKG_VERSION")
    ));
    say(&format!("total_memory       : {total}"));
    say(&format!("free_memory        : {free}"));
    say(&format!("guests             : {guests}"));
    say(&format!(
        "dom0_memory_in_use : {} KiB",
        crate::memory_in_use() / 1024
    ));
    let (address, api) = match network {
        None => (String::from("none (no NIC)"), String::from("off")),
        Some(status) => (
            match status.address {
                Some((address, true)) => format!("{address} (dhcp)"),
                Some((address, false)) => format!("{address} (static)"),
                None => String::from("none yet (asking DHCP)"),
            },
            match status.api_port {
                Some(port) => format!("TCP port {port}"),
                None => String::from("off (no api_token)"),
            },
        ),
    };
    say(&format!("dom0_address       : {address}"));
    say(&format!("management_api     : {api}"));
    let (vif_polls, ring_copies) = toolstack.nets.poll_counters();
    say(&format!(
        "dom0_hypercalls    : {} ({vif_polls} vif polls, {ring_copies} vif ring copies)",
        crate::hypercall::count()
    ));
    if let Some((received, sent, dropped)) = toolstack.nets.nic_counters() {
        say(&format!(
            "nic                : {received} frames in, {sent} out, {dropped} dropped (transmit queue full)"
        ));
    }
    // Each vif's traffic and drops by reason, live.
    for (name, connected, counters) in toolstack.nets.vif_counters() {
        let state = if connected {
            "connected"
        } else {
            "not connected"
        };
        say(&format!("{name:<19}: {state}; {counters}"));
    }
}
