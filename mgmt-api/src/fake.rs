//! A fake toolstack for tests, the CLI's integration tests and fuzzing:
//! domains in a vector, configs checked by the real `config` parser,
//! consoles as byte vectors the test appends to.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::backend::{
    Backend, BackendError, BuildStatus, ConsoleChunk, ConsoleOffset, DomainAction, DomainId,
    DomainInfo, DomainRef, DomainState, HostInfo,
};
use crate::metrics::{MetricFamily, MetricKind, Sample};

/// Most domains the fake holds, Dom0 included.
pub const MAX_FAKE_DOMAINS: usize = 32;

#[derive(Clone, Debug)]
struct FakeDomain {
    info: DomainInfo,
    console: Vec<u8>,
}

/// The fake toolstack. Starts with Dom0 only.
#[derive(Clone, Debug)]
pub struct FakeBackend {
    domains: Vec<FakeDomain>,
    next_id: u16,
    /// What `host` returns.
    pub host: HostInfo,
}

impl Default for FakeBackend {
    fn default() -> FakeBackend {
        FakeBackend::new()
    }
}

impl FakeBackend {
    /// Dom0 alone, on a 4-CPU, 4 GiB host.
    pub fn new() -> FakeBackend {
        FakeBackend {
            domains: alloc::vec![FakeDomain {
                info: DomainInfo {
                    id: DomainId::DOM0,
                    name: String::from("Domain-0"),
                    memory_mib: 256,
                    vcpus: 1,
                    state: DomainState {
                        running: true,
                        ..DomainState::default()
                    },
                    cpu_time_ns: 1_500_000_000,
                    build: BuildStatus::Ready,
                },
                console: Vec::new(),
            }],
            next_id: 1,
            host: HostInfo {
                total_memory_mib: 4096,
                free_memory_mib: 3840,
                cpus: 4,
                hypervisor_version: String::from("xenolith 0.1.0"),
                dom0_version: String::from("xenolith-dom0 0.1.0"),
                uptime_seconds: 42,
            },
        }
    }

    /// Sets a domain's build status (a build finishing or failing).
    pub fn set_build(&mut self, id: DomainId, build: BuildStatus) {
        if let Some(domain) = self.domains.iter_mut().find(|domain| domain.info.id == id) {
            domain.info.build = build;
        }
    }

    /// Appends console output to a domain; false if there is no such domain.
    pub fn push_console(&mut self, domain: &DomainRef, bytes: &[u8]) -> bool {
        match self.find(domain) {
            Some(index) => self
                .domains
                .get_mut(index)
                .map(|entry| entry.console.extend_from_slice(bytes))
                .is_some(),
            None => false,
        }
    }

    /// The domains, as `list_domains` would give them.
    pub fn snapshot(&self) -> Vec<DomainInfo> {
        self.domains
            .iter()
            .map(|entry| entry.info.clone())
            .collect()
    }

    fn find(&self, domain: &DomainRef) -> Option<usize> {
        self.domains.iter().position(|entry| match domain {
            DomainRef::Id(id) => entry.info.id == *id,
            DomainRef::Name(name) => entry.info.name == *name,
        })
    }
}

impl Backend for FakeBackend {
    fn list_domains(&mut self) -> Result<Vec<DomainInfo>, BackendError> {
        Ok(self.snapshot())
    }

    fn domain(&mut self, domain: &DomainRef) -> Result<DomainInfo, BackendError> {
        self.find(domain)
            .and_then(|index| self.domains.get(index))
            .map(|entry| entry.info.clone())
            .ok_or(BackendError::NoSuchDomain)
    }

    fn create_domain(&mut self, xl_config: &str) -> Result<DomainInfo, BackendError> {
        let guest = config::DomainConfig::parse(xl_config)
            .map_err(|error| BackendError::InvalidConfig(format!("{error}")))?;
        if self.find(&DomainRef::Name(guest.name.clone())).is_some() {
            return Err(BackendError::DomainExists(guest.name));
        }
        if self.domains.len() >= MAX_FAKE_DOMAINS || self.next_id >= DomainId::FIRST_RESERVED.0 {
            return Err(BackendError::ResourceExhausted(String::from(
                "no room for another domain",
            )));
        }
        let info = DomainInfo {
            id: DomainId(self.next_id),
            name: guest.name.clone(),
            memory_mib: guest.memory.0,
            vcpus: guest.vcpus,
            state: DomainState {
                blocked: true,
                ..DomainState::default()
            },
            cpu_time_ns: 0,
            build: BuildStatus::Building,
        };
        self.next_id += 1;
        self.domains.push(FakeDomain {
            info: info.clone(),
            console: format!("Booting {}\n", guest.name).into_bytes(),
        });
        Ok(info)
    }

    fn act(
        &mut self,
        domain: &DomainRef,
        action: DomainAction,
    ) -> Result<DomainInfo, BackendError> {
        let index = self.find(domain).ok_or(BackendError::NoSuchDomain)?;
        let entry = self
            .domains
            .get_mut(index)
            .ok_or(BackendError::NoSuchDomain)?;
        let info = entry.info.clone();
        if info.id == DomainId::DOM0 {
            return Err(BackendError::InvalidState(format!(
                "Dom0 cannot be told to {}",
                action.name()
            )));
        }
        match action {
            DomainAction::Shutdown => entry.info.state.shutdown = true,
            DomainAction::Reboot => {}
            DomainAction::Pause if info.state.paused => {
                return Err(BackendError::InvalidState(String::from(
                    "the domain is already paused",
                )));
            }
            DomainAction::Pause => entry.info.state.paused = true,
            DomainAction::Unpause if !info.state.paused => {
                return Err(BackendError::InvalidState(String::from(
                    "the domain is not paused",
                )));
            }
            DomainAction::Unpause => entry.info.state.paused = false,
            DomainAction::Destroy => {
                self.domains.remove(index);
            }
        }
        Ok(info)
    }

    fn console(
        &mut self,
        domain: &DomainRef,
        since: ConsoleOffset,
        max_bytes: usize,
    ) -> Result<ConsoleChunk, BackendError> {
        let index = self.find(domain).ok_or(BackendError::NoSuchDomain)?;
        let console = self
            .domains
            .get(index)
            .map(|entry| entry.console.as_slice())
            .unwrap_or_default();
        let start = usize::try_from(since.0)
            .unwrap_or(usize::MAX)
            .min(console.len());
        let end = start.saturating_add(max_bytes).min(console.len());
        Ok(ConsoleChunk {
            start: ConsoleOffset(u64::try_from(start).unwrap_or(u64::MAX)),
            data: Vec::from(console.get(start..end).unwrap_or_default()),
        })
    }

    fn host(&mut self) -> Result<HostInfo, BackendError> {
        Ok(self.host.clone())
    }

    fn metrics(&mut self) -> Vec<MetricFamily> {
        alloc::vec![MetricFamily {
            name: String::from("xenolith_domain_memory_mib"),
            help: String::from("Memory given to each domain."),
            kind: MetricKind::Gauge,
            samples: self
                .domains
                .iter()
                .map(|entry| Sample {
                    labels: alloc::vec![(String::from("domain"), entry.info.name.clone())],
                    value: entry.info.memory_mib,
                })
                .collect(),
        }]
    }
}
