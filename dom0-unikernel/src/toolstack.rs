//! The toolstack: guests defined by xl.cfg files (or `linux` boot-module
//! lines), created, watched and torn down. Creating a guest is libxl's
//! PVH sequence (XEN-ABI.md §10): create the domain, load the kernel,
//! initrd, start info and ACPI tables, offer console and xenstore event
//! channels, set the HVM params, write its xenstore nodes, introduce it,
//! unpause. When a guest stops, its `on_poweroff`/`on_reboot`/`on_crash`
//! action runs.
//!
//! A create answers at once: [`Toolstack::create`] makes the cheap checks
//! (config, name, whether the kernel fits, from its headers), creates the
//! paused domain and its rings and devices, and queues the rest — the
//! kernel's decompression and the copies into guest memory, seconds for a
//! distro kernel under TCG — which [`Toolstack::background_step`] does a
//! bounded step at a time between Dom0's other work, so running guests,
//! the shell and the API are served meanwhile. The guest shows as
//! building until it is unpaused; a build that fails is torn down and its
//! error kept for the API.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use config::{DomainConfig, GuestType, ShutdownAction, Uuid};
use dom0::create_error::CreateError;
use dom0::domain_nodes::{self, GuestRecord};
use dom0::guest_builder::{BuildPlan, GuestSpec, KernelImage};
use dom0::kernel_cache::{CachedKernel, Compressor};
use log::{error, info, warn};
use pvh::bzimage::{Decompression, Progress};
use xenolith_abi::domain::DomainId;
use xenolith_abi::event_channel::Port;
use xenstore::GuestFrame;

use crate::block_service::{self, BlockService};
use crate::console_service::ConsoleService;
use crate::control::{self, StopReason, hvm_param};
use crate::guests;
use crate::hypercall;
use crate::net_service::{self, NetService};
use crate::xenstore_service::XenstoreService;

/// Most RAM a guest may have, in MiB (Dom0 maps guest frames below 4 GiB).
const MEMORY_MAX_MIB: u64 = 3072;
/// Most vCPUs a guest gets: the hypervisor's limit (every one of them has
/// a vcpu_info slot in shared_info).
const GUEST_MAX_VCPUS: u32 = 32;
/// Most guest definitions kept: run-time definitions (the API's creates)
/// reuse slots beyond it.
const MAX_DEFINITIONS: usize = 256;
/// Most bytes the kernel cache keeps (about three Debian kernels).
const KERNEL_CACHE_BYTES: usize = 64 << 20;

/// Most RAM an HVM guest gets: all of it lies below 4 GiB, under the
/// Xen platform device's BAR.
const HVM_MEMORY_MAX_MIB: u64 = 3072;

/// Which kernel file: its bytes (boot modules stay put for good). Two
/// configs naming the same file get two modules with equal bytes.
type KernelKey = &'static [u8];

/// How much of a bzImage's decompressed start the fit check reads: its
/// ELF and program headers (a few hundred bytes at its start).
const HEADER_PREFIX: usize = 64 * 1024;

/// Failed builds kept for the API (the oldest goes first).
const FAILURES_KEPT: usize = 16;

/// A guest as defined: what `create` builds, again on each restart.
#[derive(Clone, Debug)]
pub struct GuestDefinition {
    pub name: String,
    /// Where it came from (a config's module name), for messages.
    pub source: String,
    /// An HVM guest (its bzImage entered by the Linux boot protocol)
    /// rather than PVH.
    pub hvm: bool,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub kernel: &'static [u8],
    pub ramdisk: Option<&'static [u8]>,
    pub cmdline: String,
    pub uuid: Option<Uuid>,
    pub on_poweroff: ShutdownAction,
    pub on_reboot: ShutdownAction,
    pub on_crash: ShutdownAction,
    /// `disk` entries (checked: each can be served).
    pub disks: Vec<config::Disk>,
    /// `vif` entries (checked: each can be served).
    pub vifs: Vec<config::Vif>,
}

impl GuestDefinition {
    /// A definition from a parsed xl.cfg; `file` finds the module named by
    /// a `kernel` or `ramdisk` value.
    pub fn from_config(
        source: &str,
        config: &DomainConfig,
        file: impl Fn(&str) -> Option<&'static [u8]>,
    ) -> Result<Self, String> {
        let hvm = config.guest_type == GuestType::Hvm;
        if hvm && config.kernel.is_none() {
            return Err(
                "type = \"hvm\" needs kernel = (direct kernel boot): there is no \
                 firmware to boot a disk"
                    .into(),
            );
        }
        // The platform device's memory BAR (where an HVM guest maps its
        // grant frames) sits at 3.75 GiB; RAM stays below it.
        if hvm && config.memory.0 > HVM_MEMORY_MAX_MIB {
            return Err(format!(
                "memory = {} MiB: an HVM guest takes at most {HVM_MEMORY_MAX_MIB}",
                config.memory.0
            ));
        }
        let kernel_name = config.kernel.as_deref().ok_or("no kernel")?;
        let kernel = file(kernel_name)
            .ok_or_else(|| format!("kernel {kernel_name:?} is not among the boot modules"))?;
        if hvm && let Err(error) = pvh::linux_boot::parse(kernel) {
            return Err(format!(
                "kernel {kernel_name:?}: {error} (type = \"hvm\" boots a Linux bzImage directly)"
            ));
        }
        let ramdisk = match config.ramdisk.as_deref() {
            Some(name) => Some(
                file(name)
                    .ok_or_else(|| format!("ramdisk {name:?} is not among the boot modules"))?,
            ),
            None => None,
        };
        for disk in &config.disks {
            block_service::check_disk(disk)?;
        }
        for vif in &config.vifs {
            net_service::check_vif(vif)?;
        }
        Ok(Self {
            name: config.name.clone(),
            source: source.into(),
            hvm,
            memory_mib: config.memory.0,
            vcpus: config.vcpus,
            kernel,
            ramdisk,
            cmdline: config.command_line.clone().unwrap_or_default(),
            uuid: config.uuid,
            on_poweroff: config.on_poweroff,
            on_reboot: config.on_reboot,
            on_crash: config.on_crash,
            disks: config.disks.clone(),
            vifs: config.vifs.clone(),
        })
    }
}

/// Where a guest is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestState {
    /// Created, paused, its kernel being decompressed and loaded.
    Building,
    Running,
    /// Stopped and kept (`preserve`), until destroyed.
    Stopped(StopReason),
}

/// A guest that exists.
pub struct Guest {
    pub domain: DomainId,
    /// Index into the definitions.
    pub definition: usize,
    pub name: String,
    uuid: String,
    pub state: GuestState,
    pub memory_mib: u64,
}

/// A create that failed after it was answered (its build), kept so the
/// API can say why: the domain is gone, its id and name stay here.
#[derive(Clone, Debug)]
pub struct FailedBuild {
    pub domain: DomainId,
    pub name: String,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub error: String,
}

/// A guest being built: its domain exists, paused, with its rings and
/// devices; its kernel goes in a step at a time.
struct Build {
    domain: DomainId,
    definition: GuestDefinition,
    vcpus: u32,
    /// When the create began (TSC), for the created line.
    started: u64,
    /// Milliseconds spent decompressing (TSC-timed across steps).
    decompress_ms: Option<u64>,
    stage: Stage,
}

enum Stage {
    /// Waiting for its turn: one build works at a time (each may hold a
    /// decompressed distro kernel, 63 MiB, and its decoder's window).
    Queued,
    Decompressing(Decompression<'static>),
    Loading {
        kernel: Kernel,
        /// Boxed: the start info and ACPI blocks are large.
        plan: alloc::boxed::Box<BuildPlan>,
        /// The next of `plan.copies`.
        next: usize,
        /// A cached run's decoded bytes.
        scratch: Vec<u8>,
    },
}

/// The kernel a build loads.
enum Kernel {
    /// A boot module as it is: a PVH ELF, or an HVM guest's bzImage.
    File(&'static [u8]),
    /// A bzImage's vmlinux, decompressed by this build.
    Decompressed(Vec<u8>),
    /// From the cache, taken out while it is loaded.
    Cached(CachedKernel),
}

/// How guests ended, for `exit-when-idle`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outcomes {
    pub powered_off: u32,
    /// Crashed, destroyed by the operator, or failed to start.
    pub failed: u32,
}

/// Every guest and the services they use.
pub struct Toolstack {
    definitions: Vec<GuestDefinition>,
    guests: BTreeMap<DomainId, Guest>,
    pub xenstore: XenstoreService,
    pub consoles: ConsoleService,
    /// Guests' disks.
    pub blocks: BlockService,
    /// Guests' network interfaces and the bridge.
    pub nets: NetService,
    pub outcomes: Outcomes,
    /// Guests created so far (for UUIDs of guests without one).
    created: u64,
    /// Decompressed kernels kept for the next create, least recently used
    /// first.
    kernels: Vec<(KernelKey, CachedKernel)>,
    /// The kernel being cached, if any.
    caching: Option<Caching>,
    /// Guests being built, in order; the first one works.
    builds: VecDeque<Build>,
    /// Builds that failed after their create was answered, newest last.
    failures: VecDeque<FailedBuild>,
}

/// A kernel being compressed into the cache, a run at a time.
struct Caching {
    key: KernelKey,
    vmlinux: Vec<u8>,
    compressor: Compressor,
    /// When it started (TSC).
    started: u64,
}

impl Toolstack {
    pub fn new() -> Self {
        Self {
            definitions: Vec::new(),
            guests: BTreeMap::new(),
            xenstore: XenstoreService::new(),
            consoles: ConsoleService::default(),
            blocks: BlockService::default(),
            nets: NetService::default(),
            outcomes: Outcomes::default(),
            created: 0,
            kernels: Vec::new(),
            caching: None,
            builds: VecDeque::new(),
            failures: VecDeque::new(),
        }
    }

    /// Adds a definition; returns its index.
    pub fn define(&mut self, definition: GuestDefinition) -> usize {
        self.definitions.push(definition);
        self.definitions.len() - 1
    }

    /// Adds a definition made at run time (the API's create): it takes the
    /// place of the definition with the same guest name, or, when
    /// [`MAX_DEFINITIONS`] are kept, of one no guest uses. Indices of
    /// other definitions never change.
    pub fn define_or_replace(&mut self, definition: GuestDefinition) -> Result<usize, String> {
        let in_use = |index: usize| self.guests.values().any(|guest| guest.definition == index);
        let slot = self
            .definitions
            .iter()
            .position(|known| known.name == definition.name)
            .filter(|&index| !in_use(index))
            .or_else(|| {
                (self.definitions.len() >= MAX_DEFINITIONS)
                    .then(|| (0..self.definitions.len()).find(|&index| !in_use(index)))
                    .flatten()
            });
        match slot {
            Some(index) => {
                if let Some(known) = self.definitions.get_mut(index) {
                    *known = definition;
                }
                Ok(index)
            }
            None if self.definitions.len() < MAX_DEFINITIONS => Ok(self.define(definition)),
            None => Err(format!(
                "{MAX_DEFINITIONS} guest definitions are in use; destroy a guest first"
            )),
        }
    }

    /// The definition named `name` (its guest name or its source).
    pub fn find_definition(&self, name: &str) -> Option<usize> {
        self.definitions
            .iter()
            .position(|definition| definition.name == name)
            .or_else(|| {
                self.definitions
                    .iter()
                    .position(|definition| definition.source == name)
            })
    }

    pub fn guests(&self) -> impl Iterator<Item = &Guest> {
        self.guests.values()
    }

    pub fn guest(&self, domain: DomainId) -> Option<&Guest> {
        self.guests.get(&domain)
    }

    /// The guest named `name`.
    pub fn find_guest(&self, name: &str) -> Option<DomainId> {
        self.guests
            .values()
            .find(|guest| guest.name == name)
            .map(|guest| guest.domain)
    }

    /// Whether every guest has stopped (none exist, or all are preserved).
    pub fn idle(&self) -> bool {
        self.guests
            .values()
            .all(|guest| matches!(guest.state, GuestState::Stopped(_)))
    }

    /// Builds that failed after their create was answered (newest last).
    pub fn failures(&self) -> impl Iterator<Item = &FailedBuild> {
        self.failures.iter()
    }

    /// The failed build of domain `domain`, if one is kept.
    pub fn failure(&self, domain: DomainId) -> Option<&FailedBuild> {
        self.failures
            .iter()
            .find(|failure| failure.domain == domain)
    }

    /// The newest failed build named `name`, if one is kept.
    pub fn find_failure(&self, name: &str) -> Option<DomainId> {
        self.failures
            .iter()
            .rev()
            .find(|failure| failure.name == name)
            .map(|failure| failure.domain)
    }

    /// Forgets a failed build (the API's DELETE of it).
    pub fn forget_failure(&mut self, domain: DomainId) -> bool {
        let before = self.failures.len();
        self.failures.retain(|failure| failure.domain != domain);
        self.failures.len() != before
    }

    /// Creates the guest of definition `index` and queues its build:
    /// returns its id at once, the guest building (paused) until
    /// [`Toolstack::background_step`] has loaded and unpaused it. What
    /// can be checked cheaply is checked before the domain exists (the
    /// config, the name, whether the kernel fits, from its headers), so
    /// those refusals use up no domain id. The error says what went wrong,
    /// by kind (the API's status code follows it) and in words; it is
    /// logged here, once.
    pub fn create(&mut self, index: usize) -> Result<DomainId, CreateError> {
        let started = baremetal::cpu::rdtsc();
        let result = self
            .definitions
            .get(index)
            .cloned()
            .ok_or_else(|| CreateError::BadConfig(String::from("no such definition")))
            .and_then(|definition| self.begin(index, definition, started));
        if let Err(why) = &result {
            self.outcomes.failed += 1;
            let name = self
                .definitions
                .get(index)
                .map_or("?", |definition| definition.name.as_str());
            error!("dom0: cannot create {name}: {why}");
        }
        result.map(|build| {
            let domain = build.domain;
            self.builds.push_back(build);
            domain
        })
    }

    /// The checks, the paused domain, its rings and devices.
    fn begin(
        &mut self,
        index: usize,
        definition: GuestDefinition,
        started: u64,
    ) -> Result<Build, CreateError> {
        if self.find_guest(&definition.name).is_some() {
            return Err(CreateError::NameInUse {
                source: definition.source.clone(),
                name: definition.name.clone(),
            });
        }
        if !(2..=MEMORY_MAX_MIB).contains(&definition.memory_mib) {
            return Err(CreateError::BadConfig(format!(
                "memory = {} MiB: give 2 to {MEMORY_MAX_MIB}",
                definition.memory_mib
            )));
        }
        // Every vCPU has a slot in shared_info up to 32 (Xen's legacy
        // limit, and the hypervisor's per-domain maximum).
        let vcpus = definition.vcpus.clamp(1, GUEST_MAX_VCPUS);
        if vcpus != definition.vcpus {
            warn!(
                "dom0: {}: vcpus = {}: {vcpus} vCPUs run",
                definition.name, definition.vcpus
            );
        }
        self.check_fit(&definition, vcpus)?;
        let memory_kib = definition.memory_mib * 1024;
        let created = if definition.hvm {
            control::create_hvm(vcpus, memory_kib)
        } else {
            control::create(vcpus, memory_kib)
        };
        let domain =
            created.map_err(|code| CreateError::domain_refused(definition.memory_mib, code))?;
        self.created += 1;
        let uuid = match definition.uuid {
            Some(uuid) => uuid.to_string(),
            None => generated_uuid(domain, self.created),
        };
        let guest = Guest {
            domain,
            definition: index,
            name: definition.name.clone(),
            uuid,
            state: GuestState::Building,
            memory_mib: definition.memory_mib,
        };
        // The rings sit in the special pages, whose place depends on the
        // RAM only: they are served from now on, while the kernel loads.
        if let Err(why) = self.set_up(&guest, &definition, memory_kib, vcpus) {
            self.tear_down(&guest);
            return Err(why);
        }
        info!(
            "dom0: building domain {} ({}): {} MiB, {vcpus} vCPUs",
            domain.0, definition.name, definition.memory_mib
        );
        self.guests.insert(domain, guest);
        Ok(Build {
            domain,
            definition,
            vcpus,
            started,
            decompress_ms: None,
            stage: Stage::Queued,
        })
    }

    /// Whether the guest's kernel (and initrd) fit its RAM, known without
    /// decompressing it: an ELF's or an HVM bzImage's headers, a cached
    /// kernel's extent, or the ELF headers at the start of a bzImage's
    /// payload (its first 64 KiB decompressed).
    fn check_fit(&self, definition: &GuestDefinition, vcpus: u32) -> Result<(), CreateError> {
        let memory_kib = definition.memory_mib * 1024;
        let initrd = definition.ramdisk.map_or(0, |initrd| initrd.len() as u64);
        let bad_image = |error: &dyn core::fmt::Display| {
            CreateError::BadImage(format!("the kernel is unusable: {error}"))
        };
        let plain = |kernel| {
            dom0::guest_builder::plan(&GuestSpec {
                kernel,
                memory_kib,
                vcpus,
                cmdline: &definition.cmdline,
                initrd: definition.ramdisk,
            })
            .map(drop)
            .map_err(CreateError::from_build)
        };
        let kernel = definition.kernel;
        if definition.hvm {
            return plain(KernelImage::BzImage(kernel));
        }
        if kernel.starts_with(b"\x7fELF") {
            return plain(KernelImage::Elf(kernel));
        }
        let cached = self
            .kernels
            .iter()
            .find(|(cached, _)| *cached == kernel)
            .map(|(_, cached)| cached.end);
        let end = match cached {
            Some(end) => end,
            None => {
                let payload = pvh::bzimage::payload(kernel).map_err(|error| bad_image(&error))?;
                let size = u64::from(payload.uncompressed_size);
                if size > pvh::bzimage::SUGGESTED_LIMIT as u64 {
                    return Err(bad_image(&pvh::bzimage::BzImageError::TooLarge {
                        limit: pvh::bzimage::SUGGESTED_LIMIT,
                    }));
                }
                let prefix = payload
                    .decompress_prefix(HEADER_PREFIX)
                    .map_err(|error| bad_image(&error))?;
                pvh::image::extent(&prefix, size)
                    .map_err(|error| bad_image(&error))?
                    .1
            }
        };
        dom0::guest_builder::check_fit(memory_kib, end, initrd).map_err(CreateError::from_build)
    }

    /// The domain's rings, xenstore nodes and devices: everything of the
    /// build but its memory, entry point and unpause.
    fn set_up(
        &mut self,
        guest: &Guest,
        definition: &GuestDefinition,
        memory_kib: u64,
        vcpus: u32,
    ) -> Result<(), CreateError> {
        let domain = guest.domain;
        let (store_frame, console_frame) = dom0::guest_builder::special_frames(memory_kib);
        let store_port = offer_port(domain)?;
        let console_port = offer_port(domain)?;
        for (index, value) in [
            (hvm_param::STORE_PFN, store_frame),
            (hvm_param::STORE_EVTCHN, u64::from(store_port.0)),
            (hvm_param::CONSOLE_PFN, console_frame),
            (hvm_param::CONSOLE_EVTCHN, u64::from(console_port.0)),
        ] {
            control::set_hvm_param(domain, index, value).map_err(|code| {
                CreateError::hypervisor(format!("setting HVM param {index}"), code)
            })?;
        }
        self.consoles
            .connect(domain, &guest.name, console_frame, console_port)
            .map_err(|code| CreateError::hypervisor("connecting the console", code))?;
        let record = GuestRecord {
            domain,
            name: &guest.name,
            uuid: &guest.uuid,
            memory_kib,
            max_memory_kib: memory_kib,
            vcpus,
            console: (GuestFrame(console_frame), console_port),
        };
        let (store, toolstack) = self.xenstore.store();
        domain_nodes::introduce(
            store,
            toolstack,
            &record,
            (GuestFrame(store_frame), store_port),
        )
        .map_err(|error| {
            CreateError::Internal(format!("writing its xenstore nodes failed: {error:?}"))
        })?;
        for disk in &definition.disks {
            self.blocks
                .attach(&mut self.xenstore, domain, disk)
                .map_err(|why| CreateError::BadDevice(format!("{}: {why}", disk.vdev)))?;
        }
        for (index, vif) in definition.vifs.iter().enumerate() {
            self.nets
                .attach(&mut self.xenstore, domain, index, vif)
                .map_err(|why| CreateError::BadDevice(format!("vif {index}: {why}")))?;
        }
        // Maps and binds the ring now, before the guest runs.
        self.xenstore.service();
        Ok(())
    }

    /// Stops serving a guest and destroys its domain.
    fn tear_down(&mut self, guest: &Guest) {
        self.consoles.disconnect(guest.domain);
        // Its back ends stop before the domain goes.
        self.blocks.detach(&mut self.xenstore, guest.domain);
        self.nets.detach(&mut self.xenstore, guest.domain);
        let (store, toolstack) = self.xenstore.store();
        if let Err(error) = domain_nodes::release(store, toolstack, guest.domain, &guest.uuid) {
            warn!(
                "dom0: releasing domain {}'s xenstore nodes failed: {error:?}",
                guest.domain.0
            );
        }
        self.xenstore.service();
        match control::destroy(guest.domain) {
            Ok(()) => info!(
                "dom0: destroyed domain {} ({}); free memory {} KiB",
                guest.domain.0,
                guest.name,
                control::free_kib()
            ),
            Err(code) => error!("dom0: destroying domain {} failed: {code}", guest.domain.0),
        }
    }

    /// Destroys a guest at the operator's request; one being built is
    /// dropped with its build (a cached kernel it held goes back).
    pub fn destroy(&mut self, domain: DomainId) -> Result<(), String> {
        let guest = self.guests.remove(&domain).ok_or("no such guest")?;
        // A kept guest had stopped already; any other did not end well.
        if !matches!(guest.state, GuestState::Stopped(_)) {
            self.outcomes.failed += 1;
        }
        if let Some(at) = self.builds.iter().position(|build| build.domain == domain)
            && let Some(build) = self.builds.remove(at)
        {
            info!(
                "dom0: dropped the build of domain {} ({})",
                domain.0, guest.name
            );
            self.release(build);
        }
        self.tear_down(&guest);
        Ok(())
    }

    /// Puts back what a build held that outlives it: a cached kernel.
    fn release(&mut self, build: Build) {
        if let Stage::Loading {
            kernel: Kernel::Cached(kernel),
            ..
        } = build.stage
        {
            self.kernels.push((build.definition.kernel, kernel));
        }
    }

    /// Asks a guest to power off or reboot through `control/shutdown`.
    pub fn request_shutdown(&mut self, domain: DomainId, request: &str) -> Result<(), String> {
        match self.guests.get(&domain) {
            None => return Err("no such guest".into()),
            Some(guest) if guest.state == GuestState::Building => {
                return Err("the guest is still being built; use destroy".into());
            }
            Some(_) => {}
        }
        let (store, toolstack) = self.xenstore.store();
        if !domain_nodes::handles_shutdown_requests(store, toolstack, domain) {
            return Err("the guest has no PV control interface (yet); use destroy".into());
        }
        domain_nodes::request_shutdown(store, toolstack, domain, request)
            .map_err(|error| format!("writing control/shutdown failed: {error:?}"))?;
        self.xenstore.service();
        Ok(())
    }

    /// Looks at every guest after VIRQ_DOM_EXC: runs the action for each
    /// that stopped.
    pub fn on_domain_exception(&mut self) {
        let running: Vec<DomainId> = self
            .guests
            .values()
            .filter(|guest| guest.state == GuestState::Running)
            .map(|guest| guest.domain)
            .collect();
        for domain in running {
            let reason = match control::info(domain) {
                Ok(info) => match info.stopped() {
                    Some(reason) => reason,
                    None => continue,
                },
                Err(_) => {
                    error!("dom0: domain {} vanished", domain.0);
                    self.guests.remove(&domain);
                    self.outcomes.failed += 1;
                    continue;
                }
            };
            self.stopped(domain, reason);
        }
    }

    fn stopped(&mut self, domain: DomainId, reason: StopReason) {
        let Some(guest) = self.guests.get(&domain) else {
            return;
        };
        let Some(definition) = self.definitions.get(guest.definition) else {
            return;
        };
        let action = match reason {
            StopReason::Poweroff => definition.on_poweroff,
            StopReason::Reboot => definition.on_reboot,
            _ => definition.on_crash,
        };
        let index = guest.definition;
        info!(
            "dom0: domain {} ({}) shut down ({}): {}",
            domain.0,
            guest.name,
            reason.name(),
            action_name(action)
        );
        match reason {
            StopReason::Poweroff => self.outcomes.powered_off += 1,
            StopReason::Reboot if matches!(action, ShutdownAction::Restart) => {}
            _ => self.outcomes.failed += 1,
        }
        match action {
            ShutdownAction::Preserve => {
                self.consoles.disconnect(domain);
                let (store, _) = self.xenstore.store();
                store.domain_shut_down(domain);
                self.xenstore.service();
                if let Some(guest) = self.guests.get_mut(&domain) {
                    guest.state = GuestState::Stopped(reason);
                }
            }
            ShutdownAction::Restart
            | ShutdownAction::CoredumpRestart
            | ShutdownAction::RenameRestart
            | ShutdownAction::SoftReset => {
                if let Some(guest) = self.guests.remove(&domain) {
                    self.tear_down(&guest);
                }
                // A refusal is logged by create.
                if let Ok(new) = self.create(index) {
                    info!("dom0: restarted as domain {}", new.0);
                }
            }
            ShutdownAction::Destroy | ShutdownAction::CoredumpDestroy => {
                if let Some(guest) = self.guests.remove(&domain) {
                    self.tear_down(&guest);
                }
            }
        }
    }

    /// Starts keeping a decompressed kernel for the next create of the
    /// same kernel file; returns the bytes held until that is done (0 when
    /// nothing is to be cached).
    fn start_caching(&mut self, key: KernelKey, vmlinux: Vec<u8>) -> u64 {
        // One at a time: a second kernel waiting would hold 63 MiB more.
        if self.caching.is_some() || self.kernels.iter().any(|(cached, _)| *cached == key) {
            return 0;
        }
        match Compressor::new(&vmlinux) {
            Ok(compressor) => {
                let held = vmlinux.len() as u64;
                self.caching = Some(Caching {
                    key,
                    vmlinux,
                    compressor,
                    started: baremetal::cpu::rdtsc(),
                });
                held
            }
            Err(error) => {
                warn!("dom0: not caching the kernel: {error:?}");
                0
            }
        }
    }

    /// Whether background work (a build, kernel caching) waits, or the
    /// disks have completions no interrupt will announce.
    pub fn busy(&self) -> bool {
        !self.builds.is_empty() || self.caching.is_some() || self.blocks.has_pending()
    }

    /// Does one bounded piece of background work: a step of the first
    /// build (a megabyte of its kernel decompressed, or one piece of at
    /// most 1 MiB copied into the guest, or its unpause), else one run (at
    /// most 1 MiB) of the kernel being cached. A build waiting for the
    /// kernel being cached lets the caching finish first (loading from the
    /// cache beats decompressing again).
    pub fn background_step(&mut self) {
        let waits_for_cache = self.builds.front().is_some_and(|build| {
            matches!(build.stage, Stage::Queued)
                && self
                    .caching
                    .as_ref()
                    .is_some_and(|caching| caching.key == build.definition.kernel)
        });
        if waits_for_cache || self.builds.is_empty() {
            self.caching_step();
            return;
        }
        let Some(mut build) = self.builds.pop_front() else {
            return;
        };
        match self.build_step(&mut build) {
            Ok(Progress::More) => self.builds.push_front(build),
            Ok(Progress::Done) => self.built(build),
            Err(why) => self.build_failed(build, why),
        }
    }

    /// One step of `build`.
    fn build_step(&mut self, build: &mut Build) -> Result<Progress, CreateError> {
        let definition = &build.definition;
        let stage = core::mem::replace(&mut build.stage, Stage::Queued);
        build.stage = match stage {
            Stage::Queued => {
                let key = definition.kernel;
                let cached = self
                    .kernels
                    .iter()
                    .position(|(cached, _)| *cached == key)
                    .filter(|_| !definition.hvm);
                if let Some(at) = cached {
                    let (_, kernel) = self.kernels.remove(at);
                    self.loading(build, Kernel::Cached(kernel))?
                } else if definition.hvm || key.starts_with(b"\x7fELF") {
                    self.loading(build, Kernel::File(key))?
                } else {
                    let unusable = |error: pvh::bzimage::BzImageError| {
                        CreateError::BadImage(format!("the kernel is unusable: {error}"))
                    };
                    let payload = pvh::bzimage::payload(key).map_err(unusable)?;
                    Stage::Decompressing(
                        payload
                            .start(pvh::bzimage::SUGGESTED_LIMIT)
                            .map_err(unusable)?,
                    )
                }
            }
            Stage::Decompressing(mut decompression) => {
                let started = baremetal::cpu::rdtsc();
                let progress = decompression.step();
                let spent = guests::milliseconds_since(started);
                build.decompress_ms = Some(build.decompress_ms.unwrap_or(0) + spent);
                let unusable = |error: pvh::bzimage::BzImageError| {
                    CreateError::BadImage(format!("the kernel is unusable: {error}"))
                };
                match progress.map_err(unusable)? {
                    Progress::More => Stage::Decompressing(decompression),
                    Progress::Done => {
                        let vmlinux = decompression.finish().map_err(unusable)?;
                        self.loading(build, Kernel::Decompressed(vmlinux))?
                    }
                }
            }
            Stage::Loading {
                kernel,
                plan,
                next,
                mut scratch,
            } => {
                let spec = spec(definition, build.vcpus, &kernel);
                match plan.copies.get(next) {
                    Some(copy) => {
                        let loaded =
                            guests::load_piece(build.domain, &spec, &plan, copy, &mut scratch);
                        // A cached kernel goes back even when loading fails.
                        if let Err(why) = loaded {
                            build.stage = Stage::Loading {
                                kernel,
                                plan,
                                next,
                                scratch,
                            };
                            return Err(why);
                        }
                        Stage::Loading {
                            kernel,
                            plan,
                            next: next + 1,
                            scratch,
                        }
                    }
                    None => {
                        let entered = guests::set_entry(build.domain, &plan);
                        build.stage = Stage::Loading {
                            kernel,
                            plan,
                            next,
                            scratch,
                        };
                        entered?;
                        return Ok(Progress::Done);
                    }
                }
            }
        };
        Ok(Progress::More)
    }

    /// The loading stage for `kernel`: its plan, made now that the bytes
    /// are there. A cached kernel goes back to the cache if it fails.
    fn loading(&mut self, build: &Build, kernel: Kernel) -> Result<Stage, CreateError> {
        let planned = dom0::guest_builder::plan(&spec(&build.definition, build.vcpus, &kernel))
            .map_err(CreateError::from_build);
        match planned {
            Ok(plan) => Ok(Stage::Loading {
                kernel,
                plan: alloc::boxed::Box::new(plan),
                next: 0,
                scratch: Vec::new(),
            }),
            Err(why) => {
                if let Kernel::Cached(cached) = kernel {
                    self.kernels.push((build.definition.kernel, cached));
                }
                Err(why)
            }
        }
    }

    /// A build loaded and entered: unpause the guest, keep a kernel it
    /// decompressed for the next create.
    fn built(&mut self, build: Build) {
        let domain = build.domain;
        if let Err(code) = control::unpause(domain) {
            return self.build_failed(build, CreateError::hypervisor("unpausing", code));
        }
        let Some(guest) = self.guests.get_mut(&domain) else {
            return self.release(build);
        };
        guest.state = GuestState::Running;
        let created = guests::milliseconds_since(build.started);
        let definition = &build.definition;
        let how = match (&build.stage, build.decompress_ms) {
            _ if definition.hvm => String::from("HVM: the kernel decompresses itself"),
            (_, Some(decompressed)) => format!("{decompressed} ms decompressing the kernel"),
            (
                Stage::Loading {
                    kernel: Kernel::Cached(_),
                    ..
                },
                _,
            ) => String::from("kernel from the cache"),
            _ => String::from("an ELF kernel"),
        };
        let line = format!(
            "dom0: created domain {} ({}) in {created} ms ({how}): {} MiB, command line {:?}",
            domain.0, definition.name, definition.memory_mib, definition.cmdline,
        );
        // A decompressed bzImage is worth keeping for the next create: it
        // is compressed a run at a time between other work (the guest and
        // the consoles go on meanwhile), and counted apart from Dom0's
        // memory until then.
        let key = definition.kernel;
        let pending = match build.stage {
            Stage::Loading {
                kernel: Kernel::Decompressed(vmlinux),
                ..
            } => self.start_caching(key, vmlinux),
            Stage::Loading {
                kernel: Kernel::Cached(kernel),
                ..
            } => {
                self.kernels.push((key, kernel));
                0
            }
            _ => 0,
        };
        info!(
            "{line}; Dom0 uses {} KiB with {} guests",
            crate::memory_in_use().saturating_sub(pending) / 1024,
            self.guests.len()
        );
    }

    /// A build failed after its create was answered: the guest is torn
    /// down, the error logged once and kept for the API.
    fn build_failed(&mut self, build: Build, why: CreateError) {
        let domain = build.domain;
        let name = build.definition.name.clone();
        error!("dom0: cannot create {name} (domain {}): {why}", domain.0);
        self.outcomes.failed += 1;
        if self.failures.len() >= FAILURES_KEPT {
            self.failures.pop_front();
        }
        self.failures.push_back(FailedBuild {
            domain,
            name,
            memory_mib: build.definition.memory_mib,
            vcpus: build.vcpus,
            error: format!("{why}"),
        });
        self.release(build);
        if let Some(guest) = self.guests.remove(&domain) {
            self.tear_down(&guest);
        }
    }

    /// Compresses one run of the kernel being cached; the last one files
    /// it, evicting the least recently used kernels beyond the cache's
    /// bound.
    fn caching_step(&mut self) {
        let Some(caching) = self.caching.as_mut() else {
            return;
        };
        if caching.compressor.step(&caching.vmlinux) {
            return;
        }
        let Some(caching) = self.caching.take() else {
            return;
        };
        let Some(kernel) = caching.compressor.finish() else {
            return;
        };
        let stored = kernel.stored_bytes();
        if stored > KERNEL_CACHE_BYTES {
            return;
        }
        while self
            .kernels
            .iter()
            .map(|(_, kernel)| kernel.stored_bytes())
            .sum::<usize>()
            + stored
            > KERNEL_CACHE_BYTES
        {
            self.kernels.remove(0);
        }
        self.kernels.push((caching.key, kernel));
        info!(
            "dom0: kernel cached in {} ms: {} KiB of vmlinux kept in {} KiB; Dom0 uses {} KiB",
            guests::milliseconds_since(caching.started),
            caching.vmlinux.len() / 1024,
            stored / 1024,
            crate::memory_in_use().saturating_sub(caching.vmlinux.len() as u64) / 1024
        );
    }

    /// Every port the services wait on.
    pub fn ports(&self) -> Vec<Port> {
        self.xenstore
            .ports()
            .chain(self.consoles.ports())
            .chain(self.blocks.ports())
            .chain(self.nets.ports())
            .collect()
    }

    /// Serves rings: console output, xenstore requests, disks (whose
    /// xenstore writes and watch events go out at once).
    pub fn service(&mut self) {
        self.consoles.service();
        self.xenstore.service();
        for _ in 0..4 {
            if !self.blocks.service(&mut self.xenstore) {
                break;
            }
            self.xenstore.service();
        }
        for _ in 0..4 {
            if !self.nets.service(&mut self.xenstore) {
                break;
            }
            self.xenstore.service();
        }
    }
}

/// A port of `domain` that Dom0 may bind (Dom0 serves both its console
/// and its xenstore).
fn offer_port(domain: DomainId) -> Result<Port, CreateError> {
    hypercall::alloc_unbound(domain.0, 0)
        .map(Port)
        .map_err(|code| CreateError::hypervisor("allocating an event channel", code))
}

/// What the builder needs of a definition, for `kernel`.
fn spec<'a>(definition: &'a GuestDefinition, vcpus: u32, kernel: &'a Kernel) -> GuestSpec<'a> {
    GuestSpec {
        kernel: match kernel {
            Kernel::File(bytes) if definition.hvm => KernelImage::BzImage(bytes),
            Kernel::File(bytes) => KernelImage::Elf(bytes),
            Kernel::Decompressed(vmlinux) => KernelImage::Elf(vmlinux),
            Kernel::Cached(cached) => KernelImage::Cached(cached),
        },
        memory_kib: definition.memory_mib * 1024,
        vcpus,
        cmdline: &definition.cmdline,
        initrd: definition.ramdisk,
    }
}

/// A UUID for a guest whose config gives none: random-looking, not
/// reused within a boot (version 4 layout).
fn generated_uuid(domain: DomainId, counter: u64) -> String {
    let mut state = baremetal::cpu::rdtsc() ^ (u64::from(domain.0) << 48) ^ counter;
    let mut bytes = [0u8; 16];
    for byte in &mut bytes {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        *byte = (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    Uuid(bytes).to_string()
}

fn action_name(action: ShutdownAction) -> &'static str {
    match action {
        ShutdownAction::Destroy => "destroying it",
        ShutdownAction::Restart => "restarting it",
        ShutdownAction::Preserve => "keeping it",
        ShutdownAction::CoredumpDestroy => "destroying it (core dumps are not supported)",
        ShutdownAction::CoredumpRestart => "restarting it (core dumps are not supported)",
        ShutdownAction::RenameRestart => "restarting it (rename-restart acts as restart)",
        ShutdownAction::SoftReset => "restarting it (soft-reset acts as restart)",
    }
}
