//! The toolstack: guests defined by xl.cfg files (or `linux` boot-module
//! lines), created, watched and torn down. Creating a guest is libxl's
//! PVH sequence (XEN-ABI.md §10): create the domain, load the kernel,
//! initrd, start info and ACPI tables, offer console and xenstore event
//! channels, set the HVM params, write its xenstore nodes, introduce it,
//! unpause. When a guest stops, its `on_poweroff`/`on_reboot`/`on_crash`
//! action runs.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use alloc::borrow::Cow;

use config::{DomainConfig, GuestType, ShutdownAction, Uuid};
use dom0::create_error::CreateError;
use dom0::domain_nodes::{self, GuestRecord};
use dom0::guest_builder::{GuestSpec, KernelImage};
use dom0::kernel_cache::{CachedKernel, Compressor};
use log::{error, info, warn};
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
            .all(|guest| guest.state != GuestState::Running)
    }

    /// Creates and starts the guest of definition `index`.
    /// The error says what went wrong, by kind (the API's status code
    /// follows it) and in words; it is logged here too.
    pub fn create(&mut self, index: usize) -> Result<DomainId, CreateError> {
        let definition = self
            .definitions
            .get(index)
            .cloned()
            .ok_or_else(|| CreateError::BadConfig(String::from("no such definition")))?;
        if self.find_guest(&definition.name).is_some() {
            self.outcomes.failed += 1;
            return Err(CreateError::NameInUse {
                source: definition.source.clone(),
                name: definition.name.clone(),
            });
        }
        let result = self.build(index, &definition);
        if let Err(why) = &result {
            self.outcomes.failed += 1;
            error!("dom0: cannot create {}: {why}", definition.name);
        }
        result
    }

    fn build(
        &mut self,
        index: usize,
        definition: &GuestDefinition,
    ) -> Result<DomainId, CreateError> {
        let started = baremetal::cpu::rdtsc();
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
        let key = definition.kernel;
        // This kernel is being cached: finishing that beats decompressing.
        if self
            .caching
            .as_ref()
            .is_some_and(|caching| caching.key == key)
        {
            while self.busy() {
                self.background_step();
            }
        }
        // An HVM guest's kernel decompresses itself: nothing to cache.
        let cached = self
            .kernels
            .iter()
            .position(|(cached, _)| *cached == key)
            .filter(|_| !definition.hvm);
        let vmlinux = match cached {
            Some(_) => Cow::Borrowed(&[][..]),
            None if definition.hvm => Cow::Borrowed(&[][..]),
            None => pvh::bzimage::vmlinux(definition.kernel, pvh::bzimage::SUGGESTED_LIMIT)
                .map_err(|error| {
                    CreateError::BadImage(format!("the kernel is unusable: {error:?}"))
                })?,
        };
        let decompressed = guests::milliseconds_since(started);
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
            state: GuestState::Running,
            memory_mib: definition.memory_mib,
        };
        // Taken out while in use, put back as the most recently used.
        let cached_kernel = cached.map(|at| self.kernels.remove(at));
        let kernel = match &cached_kernel {
            Some((_, kernel)) => KernelImage::Cached(kernel),
            None if definition.hvm => KernelImage::BzImage(definition.kernel),
            None => KernelImage::Elf(&vmlinux),
        };
        let spec = GuestSpec {
            kernel,
            memory_kib,
            vcpus,
            cmdline: &definition.cmdline,
            initrd: definition.ramdisk,
        };
        let set_up =
            guests::build(domain, &spec).and_then(|plan| self.set_up(&guest, &spec, &plan));
        self.kernels.extend(cached_kernel);
        if let Err(why) = set_up {
            self.tear_down(&guest);
            return Err(why);
        }
        self.guests.insert(domain, guest);
        if let Err(code) = control::unpause(domain) {
            if let Some(guest) = self.guests.remove(&domain) {
                self.tear_down(&guest);
            }
            return Err(CreateError::hypervisor("unpausing", code));
        }
        let created = guests::milliseconds_since(started);
        // A decompressed bzImage is worth keeping for the next create: it
        // is compressed a run at a time between other work (the guest and
        // the consoles go on meanwhile), and counted apart from Dom0's
        // memory until then.
        let pending = match vmlinux {
            Cow::Owned(vmlinux) => self.start_caching(key, vmlinux),
            Cow::Borrowed(_) => 0,
        };
        info!(
            "dom0: created domain {} ({}) in {created} ms ({}): {} MiB, command line {:?}; Dom0 uses {} KiB with {} guests",
            domain.0,
            definition.name,
            match cached {
                _ if definition.hvm => String::from("HVM: the kernel decompresses itself"),
                Some(_) => String::from("kernel from the cache"),
                None => format!("{decompressed} ms decompressing the kernel"),
            },
            definition.memory_mib,
            definition.cmdline,
            crate::memory_in_use().saturating_sub(pending) / 1024,
            self.guests.len()
        );
        Ok(domain)
    }

    /// Everything between loading and UNPAUSE.
    fn set_up(
        &mut self,
        guest: &Guest,
        spec: &GuestSpec<'_>,
        plan: &dom0::guest_builder::BuildPlan,
    ) -> Result<(), CreateError> {
        let domain = guest.domain;
        let store_port = offer_port(domain)?;
        let console_port = offer_port(domain)?;
        for (index, value) in [
            (hvm_param::STORE_PFN, plan.store_frame),
            (hvm_param::STORE_EVTCHN, u64::from(store_port.0)),
            (hvm_param::CONSOLE_PFN, plan.console_frame),
            (hvm_param::CONSOLE_EVTCHN, u64::from(console_port.0)),
        ] {
            control::set_hvm_param(domain, index, value).map_err(|code| {
                CreateError::hypervisor(format!("setting HVM param {index}"), code)
            })?;
        }
        self.consoles
            .connect(domain, &guest.name, plan.console_frame, console_port)
            .map_err(|code| CreateError::hypervisor("connecting the console", code))?;
        let record = GuestRecord {
            domain,
            name: &guest.name,
            uuid: &guest.uuid,
            memory_kib: spec.memory_kib,
            max_memory_kib: spec.memory_kib,
            vcpus: spec.vcpus,
            console: (GuestFrame(plan.console_frame), console_port),
        };
        let (store, toolstack) = self.xenstore.store();
        domain_nodes::introduce(
            store,
            toolstack,
            &record,
            (GuestFrame(plan.store_frame), store_port),
        )
        .map_err(|error| {
            CreateError::Internal(format!("writing its xenstore nodes failed: {error:?}"))
        })?;
        let disks = self
            .definitions
            .get(guest.definition)
            .map(|definition| definition.disks.clone())
            .unwrap_or_default();
        for disk in &disks {
            self.blocks
                .attach(&mut self.xenstore, domain, disk)
                .map_err(|why| CreateError::BadDevice(format!("{}: {why}", disk.vdev)))?;
        }
        let vifs = self
            .definitions
            .get(guest.definition)
            .map(|definition| definition.vifs.clone())
            .unwrap_or_default();
        for (index, vif) in vifs.iter().enumerate() {
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

    /// Destroys a guest at the operator's request.
    pub fn destroy(&mut self, domain: DomainId) -> Result<(), String> {
        let guest = self.guests.remove(&domain).ok_or("no such guest")?;
        if guest.state == GuestState::Running {
            self.outcomes.failed += 1;
        }
        self.tear_down(&guest);
        Ok(())
    }

    /// Asks a guest to power off or reboot through `control/shutdown`.
    pub fn request_shutdown(&mut self, domain: DomainId, request: &str) -> Result<(), String> {
        if !self.guests.contains_key(&domain) {
            return Err("no such guest".into());
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
                match self.create(index) {
                    Ok(new) => info!("dom0: restarted as domain {}", new.0),
                    Err(why) => error!("dom0: restarting failed: {why}"),
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

    /// Whether background work (kernel caching) waits, or the disks have
    /// completions no interrupt will announce.
    pub fn busy(&self) -> bool {
        self.caching.is_some() || self.blocks.has_pending()
    }

    /// Does one bounded piece of background work: compresses one run (at
    /// most 1 MiB) of the kernel being cached; the last one files it,
    /// evicting the least recently used kernels beyond the cache's bound.
    pub fn background_step(&mut self) {
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
