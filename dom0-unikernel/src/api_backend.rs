//! The management API's view of Dom0 (`mgmt_api::Backend`): domains from
//! the toolstack and the hypervisor's GET_INFO, creates through the same
//! xl.cfg parser and definitions the boot guests use, consoles from the
//! console back end's history, host facts from PHYSINFO and `xen_version`.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use config::DomainConfig;
use mgmt_api::metrics::{MetricFamily, MetricKind, Sample};
use mgmt_api::{
    Backend, BackendError, BuildStatus, ConsoleChunk, ConsoleOffset, DomainAction, DomainInfo,
    DomainRef, DomainState, HostInfo,
};
use xenolith_abi::domain::DomainId;

use storage::store::VolumeKind;

use crate::control::{self, StopReason};
use crate::store_guests;
use crate::toolstack::{GuestDefinition, GuestState, Toolstack};

/// Physical CPUs: the hypervisor runs every vCPU on the boot CPU.
const PHYSICAL_CPUS: u32 = 1;

/// A kernel or ramdisk a create may name: a `guest-file` boot module's
/// name and bytes, or a store volume's.
pub type GuestFile = (String, &'static [u8]);

/// Most files kept for the API's creates: boot modules, and kernel and
/// initrd volumes read from the store on demand (each read once, kept).
const MAX_FILES: usize = 64;

/// The toolstack, borrowed for one pass of the API.
pub struct ToolstackBackend<'a> {
    /// Every guest and the services they use.
    pub toolstack: &'a mut Toolstack,
    /// What `kernel` and `ramdisk` of a created config may name; kernel
    /// and initrd volumes of the store are read into it when named.
    pub files: &'a mut Vec<GuestFile>,
}

impl ToolstackBackend<'_> {
    /// The guest `domain` names (Dom0 is not one).
    fn resolve(&self, domain: &DomainRef) -> Result<DomainId, BackendError> {
        match domain {
            DomainRef::Id(id) if *id == DomainId::DOM0 => Ok(DomainId::DOM0),
            DomainRef::Id(id) => self
                .toolstack
                .guest(*id)
                .map(|guest| guest.domain)
                .or_else(|| self.toolstack.failure(*id).map(|failure| failure.domain))
                .ok_or(BackendError::NoSuchDomain),
            DomainRef::Name(name) if name == DOM0_NAME => Ok(DomainId::DOM0),
            DomainRef::Name(name) => self
                .toolstack
                .find_guest(name)
                .or_else(|| self.toolstack.find_failure(name))
                .ok_or(BackendError::NoSuchDomain),
        }
    }

    /// Makes sure `name` is among the files: a boot module already, or a
    /// volume of the store, read now. Unknown names are left for the
    /// definition to refuse.
    fn find_file(&mut self, name: &str, kind: VolumeKind) -> Result<(), BackendError> {
        if self.files.iter().any(|(known, _)| known == name) {
            return Ok(());
        }
        let Some(store) = self.toolstack.blocks.store() else {
            return Ok(());
        };
        if store.borrow().lookup(name).is_err() {
            return Ok(());
        }
        if self.files.len() >= MAX_FILES {
            return Err(BackendError::ResourceExhausted(format!(
                "{MAX_FILES} kernel and initrd files are held already"
            )));
        }
        let bytes = store_guests::read_file(&store, name, kind).map_err(|why| {
            BackendError::InvalidConfig(format!("{} {name:?}: {why}", kind_name(kind)))
        })?;
        self.files.push((String::from(name), bytes));
        Ok(())
    }

    fn info(&self, domain: DomainId) -> Result<DomainInfo, BackendError> {
        if domain == DomainId::DOM0 {
            let info = control::info(domain)
                .map_err(|code| BackendError::Internal(format!("GET_INFO failed: {code}")))?;
            return Ok(DomainInfo {
                id: domain,
                name: DOM0_NAME.to_string(),
                memory_mib: info.memory_mib(),
                vcpus: info.vcpus,
                state: DomainState {
                    running: true,
                    ..DomainState::default()
                },
                cpu_time_ns: info.cpu_time_ns,
                build: BuildStatus::Ready,
            });
        }
        let Some(guest) = self.toolstack.guest(domain) else {
            // A build that failed: the domain is gone, its error stays.
            let failure = self
                .toolstack
                .failure(domain)
                .ok_or(BackendError::NoSuchDomain)?;
            return Ok(DomainInfo {
                id: domain,
                name: failure.name.clone(),
                memory_mib: failure.memory_mib,
                vcpus: failure.vcpus,
                state: DomainState {
                    dying: true,
                    ..DomainState::default()
                },
                cpu_time_ns: 0,
                build: BuildStatus::Failed(failure.error.clone()),
            });
        };
        let info = control::info(domain).ok();
        let mut state = DomainState::default();
        match guest.state {
            GuestState::Stopped(StopReason::Crash) => {
                state.shutdown = true;
                state.crashed = true;
            }
            GuestState::Stopped(_) => state.shutdown = true,
            GuestState::Building => state.paused = true,
            GuestState::Running => match info {
                Some(info) if info.paused() => state.paused = true,
                Some(info) if info.running() => state.running = true,
                _ => state.blocked = true,
            },
        }
        Ok(DomainInfo {
            id: domain,
            name: guest.name.clone(),
            memory_mib: guest.memory_mib,
            vcpus: info.map_or(1, |info| info.vcpus),
            state,
            cpu_time_ns: info.map_or(0, |info| info.cpu_time_ns),
            build: if guest.state == GuestState::Building {
                BuildStatus::Building
            } else {
                BuildStatus::Ready
            },
        })
    }
}

/// Dom0's name, as `xl list` shows it.
const DOM0_NAME: &str = "Domain-0";

impl Backend for ToolstackBackend<'_> {
    fn list_domains(&mut self) -> Result<Vec<DomainInfo>, BackendError> {
        let mut domains = Vec::new();
        domains.push(self.info(DomainId::DOM0)?);
        let ids: Vec<DomainId> = self
            .toolstack
            .guests()
            .map(|guest| guest.domain)
            .chain(self.toolstack.failures().map(|failure| failure.domain))
            .collect();
        for id in ids {
            if let Ok(info) = self.info(id) {
                domains.push(info);
            }
        }
        domains.sort_by_key(|domain| domain.id.0);
        Ok(domains)
    }

    fn domain(&mut self, domain: &DomainRef) -> Result<DomainInfo, BackendError> {
        let id = self.resolve(domain)?;
        self.info(id)
    }

    fn create_domain(&mut self, xl_config: &str) -> Result<DomainInfo, BackendError> {
        let config = DomainConfig::parse(xl_config)
            .map_err(|error| BackendError::InvalidConfig(format!("{error}")))?;
        if self.toolstack.find_guest(&config.name).is_some() {
            return Err(BackendError::DomainExists(config.name));
        }
        for (name, kind) in [
            (config.kernel.as_deref(), VolumeKind::Kernel),
            (config.ramdisk.as_deref(), VolumeKind::Initrd),
        ] {
            if let Some(name) = name {
                self.find_file(name, kind)?;
            }
        }
        let files = &*self.files;
        let definition = GuestDefinition::from_config("api", &config, |name| {
            files
                .iter()
                .find(|(file, _)| file == name)
                .map(|(_, bytes)| *bytes)
        })
        .map_err(BackendError::InvalidConfig)?;
        let index = self
            .toolstack
            .define_or_replace(definition)
            .map_err(BackendError::ResourceExhausted)?;
        let domain = self.toolstack.create(index)?;
        self.info(domain)
    }

    fn act(
        &mut self,
        domain: &DomainRef,
        action: DomainAction,
    ) -> Result<DomainInfo, BackendError> {
        let id = self.resolve(domain)?;
        let found = self.info(id)?;
        if id == DomainId::DOM0 {
            return Err(BackendError::InvalidState(format!(
                "Dom0 cannot be told to {}",
                action.name()
            )));
        }
        if let BuildStatus::Failed(_) = found.build {
            // Destroying a failed build forgets it; nothing else applies.
            if action == DomainAction::Destroy && self.toolstack.forget_failure(id) {
                return Ok(found);
            }
            return Err(BackendError::InvalidState(format!(
                "the domain's build failed; it cannot {}",
                action.name()
            )));
        }
        if found.build == BuildStatus::Building && action != DomainAction::Destroy {
            return Err(BackendError::InvalidState(format!(
                "the domain is still being built; it cannot {} yet",
                action.name()
            )));
        }
        let running = self
            .toolstack
            .guest(id)
            .is_some_and(|guest| guest.state == GuestState::Running);
        let needs_running = || {
            if running {
                Ok(())
            } else {
                Err(BackendError::InvalidState(format!(
                    "the domain has stopped; it cannot {}",
                    action.name()
                )))
            }
        };
        match action {
            DomainAction::Destroy => self
                .toolstack
                .destroy(id)
                .map_err(|_| BackendError::NoSuchDomain)?,
            DomainAction::Shutdown | DomainAction::Reboot => {
                needs_running()?;
                let request = if action == DomainAction::Shutdown {
                    "poweroff"
                } else {
                    "reboot"
                };
                self.toolstack
                    .request_shutdown(id, request)
                    .map_err(BackendError::InvalidState)?;
            }
            DomainAction::Pause => {
                needs_running()?;
                if found.state.paused {
                    return Err(BackendError::InvalidState(
                        "the domain is already paused".into(),
                    ));
                }
                control::pause(id)
                    .map_err(|code| BackendError::Internal(format!("pausing failed: {code}")))?;
            }
            DomainAction::Unpause => {
                needs_running()?;
                if !found.state.paused {
                    return Err(BackendError::InvalidState(
                        "the domain is not paused".into(),
                    ));
                }
                control::unpause(id)
                    .map_err(|code| BackendError::Internal(format!("unpausing failed: {code}")))?;
            }
        }
        Ok(found)
    }

    fn console(
        &mut self,
        domain: &DomainRef,
        since: ConsoleOffset,
        max_bytes: usize,
    ) -> Result<ConsoleChunk, BackendError> {
        let id = self.resolve(domain)?;
        if id == DomainId::DOM0 {
            return Err(BackendError::Unsupported(
                "Dom0's output is the appliance's serial line".into(),
            ));
        }
        let (start, data) = self
            .toolstack
            .consoles
            .read(id, since.0, max_bytes)
            .ok_or_else(|| BackendError::InvalidState("the domain's console is closed".into()))?;
        Ok(ConsoleChunk {
            start: ConsoleOffset(start),
            data,
        })
    }

    fn host(&mut self) -> Result<HostInfo, BackendError> {
        let interface = xen_guest::version::version()
            .map(|version| format!(" (Xen interface {}.{})", version.major, version.minor))
            .unwrap_or_default();
        Ok(HostInfo {
            total_memory_mib: control::total_kib() / 1024,
            free_memory_mib: control::free_kib() / 1024,
            cpus: PHYSICAL_CPUS,
            hypervisor_version: format!("Xenolith {}{interface}", env!("CARGO_PKG_VERSION")),
            dom0_version: format!("xenolith-dom0 {}", env!("CARGO_PKG_VERSION")),
            // The TSC counts from the machine's reset, just before the
            // hypervisor starts.
            uptime_seconds: crate::net_service::now().as_secs(),
        })
    }

    fn metrics(&mut self) -> Vec<MetricFamily> {
        let domains = self.list_domains().unwrap_or_default();
        let per_domain =
            |name: &str, help: &str, kind, value: fn(&DomainInfo) -> u64| MetricFamily {
                name: name.into(),
                help: help.into(),
                kind,
                samples: domains
                    .iter()
                    .map(|domain| Sample {
                        labels: alloc::vec![
                            ("domain".into(), domain.name.clone()),
                            ("id".into(), domain.id.0.to_string()),
                        ],
                        value: value(domain),
                    })
                    .collect(),
            };
        let ports = self.toolstack.nets.port_counters();
        let per_port =
            |name: &str, help: &str, value: fn(&bridge::PortCounters) -> u64| MetricFamily {
                name: name.into(),
                help: help.into(),
                kind: MetricKind::Counter,
                samples: ports
                    .iter()
                    .map(|(port, counters)| Sample {
                        labels: alloc::vec![("port".into(), port.clone())],
                        value: value(counters),
                    })
                    .collect(),
            };
        alloc::vec![
            per_port(
                "xenolith_bridge_received_frames_total",
                "Frames that entered xenbr0 through each port.",
                |counters| counters.received_frames,
            ),
            per_port(
                "xenolith_bridge_received_bytes_total",
                "Bytes that entered xenbr0 through each port.",
                |counters| counters.received_bytes,
            ),
            per_port(
                "xenolith_bridge_transmitted_frames_total",
                "Frames xenbr0 handed to each port.",
                |counters| counters.transmitted_frames,
            ),
            per_port(
                "xenolith_bridge_transmitted_bytes_total",
                "Bytes xenbr0 handed to each port.",
                |counters| counters.transmitted_bytes,
            ),
            per_port(
                "xenolith_bridge_dropped_frames_total",
                "Frames each port's traffic lost: refused on the way in, or not taken on the way out.",
                |counters| counters
                    .dropped_on_receive()
                    .saturating_add(counters.dropped_egress),
            ),
            MetricFamily::single(
                "xenolith_host_memory_total_bytes",
                "Memory the hypervisor manages.",
                MetricKind::Gauge,
                control::total_kib() * 1024,
            ),
            MetricFamily::single(
                "xenolith_host_memory_free_bytes",
                "Memory no domain holds.",
                MetricKind::Gauge,
                control::free_kib() * 1024,
            ),
            MetricFamily::single(
                "xenolith_dom0_memory_in_use_bytes",
                "Dom0's image and heap in use.",
                MetricKind::Gauge,
                crate::memory_in_use(),
            ),
            MetricFamily::single(
                "xenolith_guests",
                "Guests that exist (running or kept after stopping).",
                MetricKind::Gauge,
                self.toolstack.guests().count() as u64,
            ),
            per_domain(
                "xenolith_domain_memory_bytes",
                "Memory given to each domain.",
                MetricKind::Gauge,
                |domain| domain.memory_mib << 20,
            ),
            per_domain(
                "xenolith_domain_cpu_seconds_total",
                "CPU time each domain has used.",
                MetricKind::Counter,
                |domain| domain.cpu_time_ns / 1_000_000_000,
            ),
            per_domain(
                "xenolith_domain_vcpus",
                "Virtual CPUs of each domain.",
                MetricKind::Gauge,
                |domain| u64::from(domain.vcpus),
            ),
        ]
    }
}

fn kind_name(kind: VolumeKind) -> &'static str {
    match kind {
        VolumeKind::Initrd => "ramdisk",
        _ => "kernel",
    }
}
