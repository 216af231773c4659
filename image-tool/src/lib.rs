//! `xenolith-img`: builds and edits Xenolith appliance disks on the host —
//! a GPT with one Xenolith volume store partition, and named volumes in it
//! (guest disks raw, qcow2 or vmdk, kernels, initrds, configs).
//!
//! Every command is a library function ([`create`], [`import`], [`export`],
//! [`list`], [`remove`], [`new_qcow2`], [`check`]) so tests can call them; [`run`]
//! parses a command line for the binary.
//!
//! The store records a volume's *kind*; the *format* of a disk volume is
//! not recorded: `list` probes it (the qcow2 magic), and Dom0 serves a
//! volume in the format its `disk` entry names (`format=`, raw by default),
//! as xl does — a probe alone cannot be trusted, since a guest may write
//! the qcow2 magic into its raw disk.

pub mod media;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

use disk_formats::{
    BackingFormat, BackingReference, CreateOptions, DiskImage, DiskOffset, ImageError, ImageFormat,
    Qcow2, Raw, Storage, StorageError, StorageOffset, Vmdk, probe_format,
};
use storage::gpt::{FindError, Gpt, GptError, GptReport, MbrKind};
use storage::guid::Guid;
use storage::store::{FormatOptions, OpenReport, SlotFault, Store, StoreError, VolumeName};
use storage::{PartitionDevice, SECTOR_SIZE};

use media::{FileDisk, FileStorage};

pub use storage::store::VolumeKind;

/// The store on an appliance disk file.
pub type DiskStore = Store<PartitionDevice<FileDisk>>;

/// Bytes copied at a time.
const CHUNK: usize = 1 << 20;
/// The config volume Dom0 reads as the appliance config (its `guests`
/// list), not as a guest's xl.cfg.
pub const APPLIANCE_CONFIG: &str = "appliance";
/// The most bytes of a config volume Dom0 reads.
pub const MAX_CONFIG_BYTES: u64 = 64 << 10;

/// The command line the binary takes.
pub const USAGE: &str = "\
usage: xenolith-img create DISK --size SIZE [--force]
       xenolith-img import DISK NAME FILE [--kind disk|kernel|initrd|config] [--convert raw]
       xenolith-img export DISK NAME FILE [--force]
       xenolith-img list DISK
       xenolith-img remove DISK NAME
       xenolith-img new-qcow2 DISK NAME --size SIZE
       xenolith-img check DISK
SIZE is bytes or a number with K, M, G or T (powers of 1024).";

/// Why a command failed.
#[derive(Debug)]
pub enum ToolError {
    /// The command line is wrong.
    Usage(String),
    /// A host file could not be opened, read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        error: std::io::Error,
    },
    /// `create` would overwrite an existing file (pass `--force`), or
    /// `export` an existing output file.
    Exists(PathBuf),
    /// The disk is not a Xenolith appliance disk, or its GPT or store is
    /// damaged. Nothing was written.
    NotAnApplianceDisk {
        /// The disk.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The store refused the operation.
    Store(StoreError),
    /// The GPT could not be written.
    Gpt(GptError),
    /// An image (the file imported or the volume exported) is unreadable
    /// or refused.
    Image {
        /// Which image.
        what: String,
        /// Why.
        error: ImageError,
    },
    /// The input is valid but cannot be used as asked.
    Refused(String),
    /// `check` found the disk's metadata inconsistent.
    Inconsistent {
        /// The disk.
        path: PathBuf,
        /// Everything the check found, a line each.
        report: String,
    },
}

impl ToolError {
    /// Whether the usage text helps.
    pub fn is_usage(&self) -> bool {
        matches!(self, ToolError::Usage(_))
    }

    /// The process exit code: 2 usage, 3 not an appliance disk (foreign or
    /// corrupt), 4 the output exists, 5 `check` found inconsistencies, 1
    /// anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            ToolError::Usage(_) => 2,
            ToolError::NotAnApplianceDisk { .. } => 3,
            ToolError::Exists(_) => 4,
            ToolError::Inconsistent { .. } => 5,
            _ => 1,
        }
    }
}

impl fmt::Display for ToolError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolError::Usage(why) => write!(formatter, "{why}"),
            ToolError::Io { path, error } => write!(formatter, "{}: {error}", path.display()),
            ToolError::Exists(path) => write!(
                formatter,
                "{} exists; refusing to overwrite it (pass --force)",
                path.display()
            ),
            ToolError::NotAnApplianceDisk { path, why } => write!(
                formatter,
                "{}: not a usable Xenolith appliance disk: {why}; nothing was written",
                path.display()
            ),
            ToolError::Store(error) => write!(formatter, "{error}"),
            ToolError::Gpt(error) => write!(formatter, "{error}"),
            ToolError::Image { what, error } => write!(formatter, "{what}: {error}"),
            ToolError::Refused(why) => write!(formatter, "{why}"),
            ToolError::Inconsistent { path, report } => {
                write!(formatter, "{}: inconsistent:\n{report}", path.display())
            }
        }
    }
}

impl std::error::Error for ToolError {}

impl From<StoreError> for ToolError {
    fn from(error: StoreError) -> Self {
        ToolError::Store(error)
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ToolError + '_ {
    move |error| ToolError::Io {
        path: path.to_path_buf(),
        error,
    }
}

fn image_error(what: &str) -> impl FnOnce(ImageError) -> ToolError + '_ {
    move |error| ToolError::Image {
        what: what.to_string(),
        error,
    }
}

fn random_guid() -> Result<Guid, ToolError> {
    let path = Path::new("/dev/urandom");
    let mut bytes = [0u8; 16];
    File::open(path)
        .and_then(|mut file| file.read_exact(&mut bytes))
        .map_err(io_error(path))?;
    Ok(Guid::from_random_bytes(bytes))
}

/// Parses a size: bytes, or a number with `K`, `M`, `G` or `T` (optionally
/// followed by `iB` or `B`), powers of 1024.
pub fn parse_size(text: &str) -> Result<u64, ToolError> {
    let bad = || {
        ToolError::Usage(format!(
            "size {text:?}: give bytes or a number with K, M, G, T"
        ))
    };
    let trimmed = text.trim();
    let trimmed = trimmed
        .strip_suffix("iB")
        .or_else(|| trimmed.strip_suffix('B'))
        .unwrap_or(trimmed);
    let (digits, shift) = match trimmed.chars().last() {
        Some('K' | 'k') => (&trimmed[..trimmed.len() - 1], 10),
        Some('M' | 'm') => (&trimmed[..trimmed.len() - 1], 20),
        Some('G' | 'g') => (&trimmed[..trimmed.len() - 1], 30),
        Some('T' | 't') => (&trimmed[..trimmed.len() - 1], 40),
        _ => (trimmed, 0),
    };
    let number: u64 = digits.parse().map_err(|_| bad())?;
    number.checked_mul(1u64 << shift).ok_or_else(bad)
}

/// Parses a volume kind as the command line spells it.
pub fn parse_kind(text: &str) -> Result<VolumeKind, ToolError> {
    Ok(match text {
        "disk" => VolumeKind::DiskImage,
        "kernel" => VolumeKind::Kernel,
        "initrd" => VolumeKind::Initrd,
        "config" => VolumeKind::Config,
        _ => {
            return Err(ToolError::Usage(format!(
                "kind {text:?}: give disk, kernel, initrd or config"
            )));
        }
    })
}

/// The kind as the command line spells it.
pub fn kind_name(kind: VolumeKind) -> &'static str {
    match kind {
        VolumeKind::DiskImage => "disk",
        VolumeKind::Kernel => "kernel",
        VolumeKind::Initrd => "initrd",
        VolumeKind::Config => "config",
    }
}

fn volume_name(name: &str) -> Result<VolumeName, ToolError> {
    VolumeName::new(name)
        .map_err(|error| ToolError::Refused(format!("volume name {name:?}: {error}")))
}

/// Makes a new appliance disk of `size` bytes (rounded down to whole
/// sectors): a GPT with one Xenolith store partition and an empty store.
/// Refuses an existing file unless `force`.
pub fn create(disk: &Path, size: u64, force: bool) -> Result<String, ToolError> {
    if !force && disk.exists() {
        return Err(ToolError::Exists(disk.to_path_buf()));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(disk)
        .map_err(io_error(disk))?;
    let size = size / SECTOR_SIZE as u64 * SECTOR_SIZE as u64;
    file.set_len(size).map_err(io_error(disk))?;
    let mut device = FileDisk::new(file).map_err(io_error(disk))?;
    let result = (|| {
        let gpt =
            Gpt::with_xenolith_partition(size / SECTOR_SIZE as u64, random_guid()?, random_guid()?)
                .map_err(ToolError::Gpt)?;
        gpt.write_new(&mut device).map_err(ToolError::Gpt)?;
        let partition = gpt
            .find_xenolith_store()
            .map_err(|error| ToolError::Refused(error.to_string()))?;
        let part = PartitionDevice::new(
            &mut device,
            partition.first_sector(),
            partition.sector_count(),
        )
        .map_err(|error| ToolError::Store(StoreError::Device(error)))?;
        let store = Store::format(part, FormatOptions::new(random_guid()?))?;
        Ok(format!(
            "{}: {} MiB appliance disk, store of {} MiB\n",
            disk.display(),
            size >> 20,
            store.capacity_bytes() >> 20
        ))
    })();
    if result.is_err() {
        // A half-made disk is worse than none.
        let _ = std::fs::remove_file(disk);
    }
    result
}

/// Opens the store on an appliance disk; refuses (and explains) a foreign
/// or damaged disk without writing to it.
pub fn open_store(disk: &Path) -> Result<DiskStore, ToolError> {
    open_store_with(disk, true).map(|(store, _, _)| store)
}

/// Opens the store (read-only unless `writable`), with what was found on
/// the way: the GPT's report and the store's.
fn open_store_with(
    disk: &Path,
    writable: bool,
) -> Result<(DiskStore, GptReport, OpenReport), ToolError> {
    let file = OpenOptions::new()
        .read(true)
        .write(writable)
        .open(disk)
        .map_err(io_error(disk))?;
    let mut device = FileDisk::new(file).map_err(io_error(disk))?;
    let refuse = |why: String| ToolError::NotAnApplianceDisk {
        path: disk.to_path_buf(),
        why,
    };
    let (gpt, report) = Gpt::read(&mut device).map_err(|error| match error {
        GptError::NoValidCopy { .. } | GptError::DiskTooSmall { .. } => {
            refuse(format!("no valid GPT ({error})"))
        }
        other => refuse(other.to_string()),
    })?;
    if writable && !report.is_healthy() {
        eprintln!(
            "xenolith-img: warning: {}: GPT is not healthy: {report:?}",
            disk.display()
        );
    }
    let gpt_report = report;
    let partition = gpt.find_xenolith_store().map_err(|error| match error {
        FindError::NotFound => refuse("its GPT has no Xenolith volume store partition".into()),
        other => refuse(other.to_string()),
    })?;
    let part = PartitionDevice::new(device, partition.first_sector(), partition.sector_count())
        .map_err(|error| refuse(format!("the store partition is off the disk ({error})")))?;
    let (store, store_report) = Store::open(part).map_err(|error| match error {
        StoreError::NotAStore
        | StoreError::Corrupt { .. }
        | StoreError::WrongPartitionSize { .. } => refuse(error.to_string()),
        other => ToolError::Store(other),
    })?;
    Ok((store, gpt_report, store_report))
}

/// Checks an appliance disk without writing to it: the GPT (both copies
/// and the protective MBR), the store's metadata (the copy in use, the
/// other copy, the volume table's rules, extents inside the data area and
/// not overlapping, free space accounting for every block), and each
/// qcow2 disk volume's metadata as `qemu-img check` does. Leaked qcow2
/// clusters (what a crash can leave) and a torn other metadata copy (what
/// a crash during an update leaves) are reported but consistent.
pub fn check(disk: &Path) -> Result<String, ToolError> {
    let (mut store, gpt, opened) = open_store_with(disk, false)?;
    let mut lines = Vec::new();
    let mut errors = 0usize;
    let mut problem = |lines: &mut Vec<String>, line: String| {
        errors += 1;
        lines.push(format!("ERROR {line}"));
    };
    match (&gpt.primary, &gpt.backup) {
        (Ok(()), Ok(())) => lines.push("GPT: primary and backup valid".into()),
        (primary, backup) => problem(
            &mut lines,
            format!("GPT: primary {primary:?}, backup {backup:?}"),
        ),
    }
    if gpt.mbr != MbrKind::Protective {
        problem(
            &mut lines,
            format!("GPT: sector 0 is {:?}, not a protective MBR", gpt.mbr),
        );
    }
    let other = match opened.other {
        Ok(generation) if generation < opened.generation => {
            format!("other copy generation {generation}")
        }
        Ok(generation) => {
            problem(
                &mut lines,
                format!(
                    "store: the other metadata copy has generation {generation}, not older than {}",
                    opened.generation
                ),
            );
            format!("other copy generation {generation}")
        }
        Err(SlotFault::NoMagic) => "other copy never written".into(),
        Err(fault) => {
            lines.push(format!(
                "warning: store: the other metadata copy is not usable ({fault}): expected only after a crash during a metadata update"
            ));
            "other copy unusable".into()
        }
    };
    lines.push(format!(
        "store: generation {} (slot {}), {other}; {} volumes; {} of {} MiB free",
        opened.generation,
        opened.slot,
        store.volumes().len(),
        store.free_bytes() >> 20,
        store.capacity_bytes() >> 20
    ));
    if let Err(fault) = store.check() {
        problem(&mut lines, format!("store: volume table: {fault}"));
    }
    // Free space is derived from the extents; it must account for every
    // block exactly once.
    let geometry = *store.geometry();
    let used: u64 = store
        .volumes()
        .iter()
        .map(|volume| volume.allocated_blocks())
        .sum();
    let free: u64 = store.free_runs().iter().map(|run| run.blocks).sum();
    if used + free != geometry.block_count() {
        problem(
            &mut lines,
            format!(
                "store: {used} blocks in volumes and {free} free do not add up to the {} blocks of the data area",
                geometry.block_count()
            ),
        );
    }
    let found = volume_summaries(&store);
    let disks = disk_volume_names(&store);
    for (id, name, kind, size) in found {
        if kind == VolumeKind::Config {
            match config_problems(&mut store, id, &name, size) {
                Ok(line) => lines.push(line),
                Err(why) => problem(&mut lines, format!("volume {name}: {why}")),
            }
            continue;
        }
        if kind != VolumeKind::DiskImage {
            lines.push(format!("volume {name}: {}, {size} bytes", kind_name(kind)));
            continue;
        }
        let mut view = media::VolumeStorage::new(&mut store, id);
        match probe_format(&mut view) {
            Ok(ImageFormat::Raw) => lines.push(format!("volume {name}: raw disk, {size} bytes")),
            Ok(ImageFormat::Qcow2) => {
                let options = disk_formats::OpenOptions {
                    read_only: true,
                    depth: 0,
                };
                let mut backing = backing_checker(&disks, &name);
                let checked =
                    Qcow2::open(view, options, &mut backing).and_then(|mut image| image.check());
                match checked {
                    Ok(report) => {
                        let line = format!("volume {name}: qcow2: {report}");
                        if report.is_consistent() {
                            lines.push(line);
                        } else {
                            problem(&mut lines, line);
                        }
                        for detail in &report.problems {
                            lines.push(format!("  {detail}"));
                        }
                    }
                    Err(error) => problem(&mut lines, format!("volume {name}: qcow2: {error}")),
                }
            }
            Ok(ImageFormat::Vmdk) => match Vmdk::open(view) {
                Ok(image) => lines.push(format!(
                    "volume {name}: vmdk (monolithicSparse, served read-only), {} bytes virtual, \
                     {size} stored",
                    image.virtual_size()
                )),
                Err(error) => problem(&mut lines, format!("volume {name}: vmdk: {error}")),
            },
            Err(error) => problem(&mut lines, format!("volume {name}: {error}")),
        }
    }
    let mut text = lines.join("\n");
    text.push('\n');
    if errors > 0 {
        return Err(ToolError::Inconsistent {
            path: disk.to_path_buf(),
            report: text,
        });
    }
    text.push_str(&format!("{}: consistent\n", disk.display()));
    Ok(text)
}

/// Copies `length` bytes from `read` into volume `id`.
fn copy_into(
    store: &mut DiskStore,
    id: storage::store::VolumeId,
    length: u64,
    mut read: impl FnMut(u64, &mut [u8]) -> Result<(), ToolError>,
) -> Result<(), ToolError> {
    let mut buffer = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < length {
        let count = (length - done).min(CHUNK as u64) as usize;
        read(done, &mut buffer[..count])?;
        if buffer[..count].iter().any(|&byte| byte != 0) {
            // New volumes read as zeros already.
            store.write_at(id, done, &buffer[..count])?;
        }
        done += count as u64;
    }
    Ok(())
}

/// Imports `file` as volume `name` of `kind`. A disk is stored as it is
/// (raw, or qcow2 after a successful open); with `convert_raw` a qcow2 file
/// becomes a raw volume of its virtual size.
pub fn import(
    disk: &Path,
    name: &str,
    file: &Path,
    kind: VolumeKind,
    convert_raw: bool,
) -> Result<String, ToolError> {
    let name = volume_name(name)?;
    let mut store = open_store(disk)?;
    if store.lookup(name.as_str()).is_ok() {
        return Err(ToolError::Store(StoreError::NameTaken));
    }
    let input = File::open(file).map_err(io_error(file))?;
    let mut source = FileStorage::new(input).map_err(io_error(file))?;
    let what = file.display().to_string();
    let format = if kind == VolumeKind::DiskImage {
        probe_format(&mut source).map_err(image_error(&what))?
    } else {
        ImageFormat::Raw
    };
    let file_length = source.len();
    if kind == VolumeKind::Config {
        // Refused now rather than found by Dom0 at boot.
        if file_length > MAX_CONFIG_BYTES {
            return Err(ToolError::Refused(format!(
                "{what}: a config is at most {MAX_CONFIG_BYTES} bytes; it is {file_length}"
            )));
        }
        let mut text = vec![0u8; file_length as usize];
        source
            .read_at(StorageOffset(0), &mut text)
            .map_err(|error| image_error(&what)(error.into()))?;
        parse_config(name.as_str(), &text)
            .map_err(|why| ToolError::Refused(format!("{what}: {why}")))?;
    }
    let (stored_format, length) = match format {
        ImageFormat::Qcow2 => {
            // Only an image this code can serve goes in.
            let options = disk_formats::OpenOptions {
                read_only: true,
                depth: 0,
            };
            let disks = disk_volume_names(&store);
            let mut backing = backing_checker(&disks, name.as_str());
            let mut image = Qcow2::open(&mut source, options, &mut backing).map_err(|error| {
                ToolError::Image {
                    what: format!(
                        "{what} (qcow2; a backing file must be a disk volume already in the \
                         store, its format recorded (qemu-img create -F raw|qcow2); or \
                         flatten it with qemu-img convert)"
                    ),
                    error,
                }
            })?;
            if convert_raw && image.backing_name().is_some() {
                return Err(ToolError::Refused(format!(
                    "{what}: --convert of a qcow2 with a backing file; flatten it with qemu-img convert"
                )));
            }
            if convert_raw {
                let size = image.virtual_size();
                return import_as_raw(&mut store, &name, kind, &what, size, |offset, buffer| {
                    image.read(DiskOffset(offset), buffer)
                });
            }
            ("qcow2", file_length)
        }
        ImageFormat::Vmdk => {
            // Only an image this code can serve goes in: monolithicSparse,
            // stored as it is and served read-only, or copied out as raw.
            let mut image = Vmdk::open(&mut source).map_err(|error| ToolError::Image {
                what: format!(
                    "{what} (vmdk; only monolithicSparse is read: convert others with \
                     qemu-img convert -O vmdk -o subformat=monolithicSparse, or -O raw)"
                ),
                error,
            })?;
            if convert_raw {
                let size = image.virtual_size();
                return import_as_raw(&mut store, &name, kind, &what, size, |offset, buffer| {
                    image.read(DiskOffset(offset), buffer)
                });
            }
            ("vmdk", file_length)
        }
        ImageFormat::Raw => {
            if kind == VolumeKind::DiskImage && !file_length.is_multiple_of(SECTOR_SIZE as u64) {
                return Err(ToolError::Refused(format!(
                    "{what}: a raw disk must be whole 512-byte sectors; it is {file_length} bytes"
                )));
            }
            if convert_raw && kind != VolumeKind::DiskImage {
                return Err(ToolError::Usage("--convert applies to disks only".into()));
            }
            ("raw", file_length)
        }
    };
    let id = store.create(&name, kind, length)?;
    let copied = copy_into(&mut store, id, length, |offset, buffer| {
        source
            .read_at(StorageOffset(offset), buffer)
            .map_err(|error| image_error(&what)(error.into()))
    });
    finish(&mut store, id, copied)?;
    Ok(format!(
        "{}: imported {what} ({} {stored_format}, {length} bytes)\n",
        name.as_str(),
        kind_name(kind)
    ))
}

/// Stores an image's virtual disk, read through `read`, as a raw volume.
fn import_as_raw(
    store: &mut DiskStore,
    name: &VolumeName,
    kind: VolumeKind,
    what: &str,
    size: u64,
    mut read: impl FnMut(u64, &mut [u8]) -> Result<(), ImageError>,
) -> Result<String, ToolError> {
    let id = store.create(name, kind, size)?;
    let copied = copy_into(store, id, size, |offset, buffer| {
        read(offset, buffer).map_err(image_error(what))
    });
    finish(store, id, copied)?;
    Ok(format!(
        "{}: imported {what} as raw, {size} bytes\n",
        name.as_str()
    ))
}

/// Flushes after a copy, or deletes the volume the copy failed to fill.
fn finish(
    store: &mut DiskStore,
    id: storage::store::VolumeId,
    copied: Result<(), ToolError>,
) -> Result<(), ToolError> {
    match copied.and_then(|()| Ok(store.flush()?)) {
        Ok(()) => Ok(()),
        Err(error) => {
            let _ = store.delete(id);
            Err(error)
        }
    }
}

/// A config volume's contents, parsed as Dom0 parses them.
enum ParsedConfig {
    Appliance(config::ApplianceConfig),
    Domain(Box<config::DomainConfig>),
}

/// Parses config volume `name`'s bytes: the appliance config for the
/// volume [`APPLIANCE_CONFIG`], an xl.cfg otherwise.
fn parse_config(name: &str, text: &[u8]) -> Result<ParsedConfig, String> {
    let located = |error: config::Error| match error.position {
        Some(_) => format!("line {error}"),
        None => error.to_string(),
    };
    if name == APPLIANCE_CONFIG {
        config::ApplianceConfig::parse_bytes(text)
            .map(ParsedConfig::Appliance)
            .map_err(located)
    } else {
        config::DomainConfig::parse_bytes(text)
            .map(|config| ParsedConfig::Domain(Box::new(config)))
            .map_err(located)
    }
}

/// Checks config volume `name` as Dom0 will use it: it parses, and the
/// volumes it names exist with the right kinds. A line saying what it is,
/// or why Dom0 would refuse it.
fn config_problems(
    store: &mut DiskStore,
    id: storage::store::VolumeId,
    name: &str,
    size: u64,
) -> Result<String, String> {
    if size > MAX_CONFIG_BYTES {
        return Err(format!(
            "a config of {size} bytes; Dom0 reads at most {MAX_CONFIG_BYTES}"
        ));
    }
    let mut text = vec![0u8; size as usize];
    store
        .read_at(id, 0, &mut text)
        .map_err(|error| error.to_string())?;
    let config = match parse_config(name, &text)? {
        ParsedConfig::Appliance(config) => {
            let missing: Vec<&String> = config
                .boot_guests
                .iter()
                .filter(|guest| store.lookup(guest).is_err() && !guest_named(store, guest))
                .collect();
            if !missing.is_empty() {
                // Boot modules may define them: not an error of the disk.
                return Ok(format!(
                    "warning: volume {name}: the appliance config starts {missing:?}, which no config volume defines (boot modules must)"
                ));
            }
            return Ok(format!(
                "volume {name}: appliance config, starts {:?}",
                config.boot_guests
            ));
        }
        ParsedConfig::Domain(config) => config,
    };
    let wanted = [
        (config.kernel.as_deref(), VolumeKind::Kernel, "kernel"),
        (config.ramdisk.as_deref(), VolumeKind::Initrd, "ramdisk"),
    ];
    for (value, kind, key) in wanted {
        let Some(value) = value else {
            if kind == VolumeKind::Kernel {
                return Err("no kernel".into());
            }
            continue;
        };
        match store.lookup(value) {
            Ok(volume) if volume.kind == kind => {}
            Ok(volume) => {
                return Err(format!(
                    "{key} {value:?} is a volume of kind {}, not {}",
                    kind_name(volume.kind),
                    kind_name(kind)
                ));
            }
            Err(_) => return Err(format!("{key} {value:?}: no such volume")),
        }
    }
    for disk in &config.disks {
        if disk.target == "virtio0" {
            return Err(
                "disk target virtio0 is the whole appliance disk, which holds the store".into(),
            );
        }
        match store.lookup(&disk.target) {
            Ok(volume) if volume.kind == VolumeKind::DiskImage => {}
            Ok(_) => {
                return Err(format!(
                    "disk target {:?} is not a disk volume",
                    disk.target
                ));
            }
            Err(_) => return Err(format!("disk target {:?}: no such volume", disk.target)),
        }
    }
    Ok(format!("volume {name}: config of guest {}", config.name))
}

/// Whether a config volume defines a guest called `guest`.
fn guest_named(store: &mut DiskStore, guest: &str) -> bool {
    let configs: Vec<_> = store
        .volumes()
        .iter()
        .filter(|volume| {
            volume.kind == VolumeKind::Config
                && volume.name.as_str() != APPLIANCE_CONFIG
                && volume.size <= MAX_CONFIG_BYTES
        })
        .map(|volume| (volume.id, volume.size))
        .collect();
    configs.into_iter().any(|(id, size)| {
        let mut text = vec![0u8; size as usize];
        store.read_at(id, 0, &mut text).is_ok()
            && config::DomainConfig::parse_bytes(&text).is_ok_and(|config| config.name == guest)
    })
}

/// Writes volume `name`'s bytes to `file` (refusing an existing file
/// unless `force`).
pub fn export(disk: &Path, name: &str, file: &Path, force: bool) -> Result<String, ToolError> {
    let mut store = open_store(disk)?;
    let volume = store.lookup(name)?;
    let (id, size) = (volume.id, volume.size);
    if !force && file.exists() {
        return Err(ToolError::Exists(file.to_path_buf()));
    }
    let output = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(file)
        .map_err(io_error(file))?;
    output.set_len(size).map_err(io_error(file))?;
    let mut buffer = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < size {
        let count = (size - done).min(CHUNK as u64) as usize;
        store.read_at(id, done, &mut buffer[..count])?;
        if buffer[..count].iter().any(|&byte| byte != 0) {
            std::os::unix::fs::FileExt::write_all_at(&output, &buffer[..count], done)
                .map_err(io_error(file))?;
        }
        done += count as u64;
    }
    output.sync_all().map_err(io_error(file))?;
    Ok(format!(
        "{name}: exported {size} bytes to {}\n",
        file.display()
    ))
}

/// One volume as `list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: VolumeKind,
    /// For a disk, the probed format; `None` for other kinds.
    pub format: Option<ImageFormat>,
    /// Its size in bytes.
    pub size: u64,
}

/// Each volume's id, name, kind and size, copied out of the store so that
/// the store can then be borrowed to read each volume.
fn volume_summaries(store: &DiskStore) -> Vec<(storage::store::VolumeId, String, VolumeKind, u64)> {
    store
        .volumes()
        .iter()
        .map(|volume| {
            (
                volume.id,
                volume.name.as_str().to_string(),
                volume.kind,
                volume.size,
            )
        })
        .collect()
}

/// The names of the store's disk-image volumes.
fn disk_volume_names(store: &DiskStore) -> Vec<String> {
    store
        .volumes()
        .iter()
        .filter(|volume| volume.kind == VolumeKind::DiskImage)
        .map(|volume| volume.name.as_str().to_string())
        .collect()
}

/// A resolver for opening qcow2 volume `top` to look at its structure:
/// the backing image it names must be another disk volume in `disks`
/// (Dom0 opens it by that name) with its format recorded (Dom0 never
/// guesses one). Its data is not read here, so an empty stand-in is
/// given; Dom0 checks the whole chain when it opens the disk.
fn backing_checker<'a>(
    disks: &'a [String],
    top: &'a str,
) -> impl FnMut(&BackingReference<'_>) -> Result<Box<dyn DiskImage>, ImageError> + 'a {
    move |reference| {
        if !matches!(
            reference.format,
            Some(BackingFormat::Raw | BackingFormat::Qcow2)
        ) {
            return Err(ImageError::BackingFormatUnknown);
        }
        if reference.name == top {
            return Err(ImageError::BackingLoop);
        }
        if !disks.iter().any(|disk| disk == reference.name) {
            return Err(ImageError::BackingUnavailable);
        }
        Ok(Box::new(Raw::new(MemoryStorage::default(), true)))
    }
}

/// The volumes on `disk`, with their probed formats.
pub fn volumes(disk: &Path) -> Result<Vec<Listing>, ToolError> {
    let mut store = open_store(disk)?;
    let found = volume_summaries(&store);
    let mut listings = Vec::new();
    for (id, name, kind, size) in found {
        let format = if kind == VolumeKind::DiskImage {
            let mut view = media::VolumeStorage::new(&mut store, id);
            Some(probe_format(&mut view).map_err(image_error(&name))?)
        } else {
            None
        };
        listings.push(Listing {
            name,
            kind,
            format,
            size,
        });
    }
    Ok(listings)
}

/// `list`: a table of volumes and the store's free space.
pub fn list(disk: &Path) -> Result<String, ToolError> {
    let listings = volumes(disk)?;
    let store = open_store(disk)?;
    let mut text = format!(
        "{:<24} {:<7} {:<7} {:>14}\n",
        "NAME", "KIND", "FORMAT", "SIZE"
    );
    for listing in &listings {
        let format = match listing.format {
            Some(ImageFormat::Raw) => "raw",
            Some(ImageFormat::Qcow2) => "qcow2",
            Some(ImageFormat::Vmdk) => "vmdk",
            None => "-",
        };
        text.push_str(&format!(
            "{:<24} {:<7} {:<7} {:>14}\n",
            listing.name,
            kind_name(listing.kind),
            format,
            listing.size
        ));
    }
    text.push_str(&format!(
        "{} volumes; {} of {} MiB free\n",
        listings.len(),
        store.free_bytes() >> 20,
        store.capacity_bytes() >> 20
    ));
    Ok(text)
}

/// Deletes volume `name`.
pub fn remove(disk: &Path, name: &str) -> Result<String, ToolError> {
    let mut store = open_store(disk)?;
    let id = store.lookup(name)?.id;
    store.delete(id)?;
    Ok(format!("{name}: removed\n"))
}

/// An image being built in memory.
#[derive(Debug, Default)]
struct MemoryStorage(Vec<u8>);

impl Storage for MemoryStorage {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&mut self, offset: StorageOffset, buffer: &mut [u8]) -> Result<(), StorageError> {
        let range = range(offset, buffer.len(), self.0.len())?;
        buffer.copy_from_slice(&self.0[range]);
        Ok(())
    }
    fn write_at(&mut self, offset: StorageOffset, data: &[u8]) -> Result<(), StorageError> {
        let range = range(offset, data.len(), self.0.len())?;
        self.0[range].copy_from_slice(data);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StorageError> {
        Ok(())
    }
    fn set_len(&mut self, length: u64) -> Result<(), StorageError> {
        let length = usize::try_from(length).map_err(|_| StorageError::NoSpace)?;
        if length > self.0.len() {
            self.0.resize(length, 0);
        }
        Ok(())
    }
}

fn range(
    offset: StorageOffset,
    length: usize,
    size: usize,
) -> Result<std::ops::Range<usize>, StorageError> {
    let start = usize::try_from(offset.0).ok();
    match start.and_then(|start| Some(start..start.checked_add(length)?)) {
        Some(range) if range.end <= size => Ok(range),
        _ => Err(StorageError::OutOfBounds {
            offset: offset.0,
            length: length as u64,
        }),
    }
}

/// Makes an empty qcow2 volume `name` of virtual size `size` (a multiple
/// of 512), 64 KiB clusters, no backing file.
pub fn new_qcow2(disk: &Path, name: &str, size: u64) -> Result<String, ToolError> {
    let name = volume_name(name)?;
    if size == 0 || !size.is_multiple_of(SECTOR_SIZE as u64) {
        return Err(ToolError::Usage(format!(
            "size {size}: a disk is a non-zero number of 512-byte sectors"
        )));
    }
    let mut store = open_store(disk)?;
    let image = Qcow2::create(MemoryStorage::default(), &CreateOptions::new(size))
        .map_err(image_error("the new qcow2 image"))?;
    let bytes = image.0;
    let id = store.create(&name, VolumeKind::DiskImage, bytes.len() as u64)?;
    let written = store.write_at(id, 0, &bytes).map_err(ToolError::from);
    finish(&mut store, id, written)?;
    Ok(format!(
        "{}: empty qcow2 disk of {size} bytes ({} bytes stored)\n",
        name.as_str(),
        bytes.len()
    ))
}

/// Runs a command line (without the program name) and returns its output.
pub fn run(arguments: &[String]) -> Result<String, ToolError> {
    let mut positional = Vec::new();
    let mut size = None;
    let mut kind = None;
    let mut convert = None;
    let mut force = false;
    let mut iter = arguments.iter();
    while let Some(argument) = iter.next() {
        let mut value = |flag: &str| {
            iter.next()
                .cloned()
                .ok_or_else(|| ToolError::Usage(format!("{flag} needs a value")))
        };
        match argument.as_str() {
            "--size" => size = Some(parse_size(&value("--size")?)?),
            "--kind" => kind = Some(parse_kind(&value("--kind")?)?),
            "--convert" => convert = Some(value("--convert")?),
            "--force" => force = true,
            "-h" | "--help" => return Ok(format!("{USAGE}\n")),
            flag if flag.starts_with("--") => {
                return Err(ToolError::Usage(format!("unknown option {flag}")));
            }
            _ => positional.push(argument.as_str()),
        }
    }
    let convert_raw = match convert.as_deref() {
        None => false,
        Some("raw") => true,
        Some(other) => {
            return Err(ToolError::Usage(format!(
                "--convert {other:?}: only raw is supported"
            )));
        }
    };
    let need_size = || size.ok_or_else(|| ToolError::Usage("--size is required".into()));
    let unused = |flag: bool, name: &str| {
        if flag {
            Err(ToolError::Usage(format!("{name} does not apply here")))
        } else {
            Ok(())
        }
    };
    match positional.as_slice() {
        ["create", disk] => {
            unused(kind.is_some() || convert.is_some(), "--kind/--convert")?;
            create(Path::new(disk), need_size()?, force)
        }
        ["import", disk, name, file] => {
            unused(size.is_some() || force, "--size/--force")?;
            let kind = kind.unwrap_or(VolumeKind::DiskImage);
            if convert_raw && kind != VolumeKind::DiskImage {
                return Err(ToolError::Usage("--convert applies to disks only".into()));
            }
            import(Path::new(disk), name, Path::new(file), kind, convert_raw)
        }
        ["export", disk, name, file] => {
            unused(
                size.is_some() || kind.is_some() || convert.is_some(),
                "--size/--kind/--convert",
            )?;
            export(Path::new(disk), name, Path::new(file), force)
        }
        ["list", disk] => {
            unused(
                size.is_some() || kind.is_some() || convert.is_some() || force,
                "an option",
            )?;
            list(Path::new(disk))
        }
        ["remove", disk, name] => {
            unused(
                size.is_some() || kind.is_some() || convert.is_some() || force,
                "an option",
            )?;
            remove(Path::new(disk), name)
        }
        ["check", disk] => {
            unused(
                size.is_some() || kind.is_some() || convert.is_some() || force,
                "an option",
            )?;
            check(Path::new(disk))
        }
        ["new-qcow2", disk, name] => {
            unused(
                kind.is_some() || convert.is_some() || force,
                "--kind/--convert/--force",
            )?;
            new_qcow2(Path::new(disk), name, need_size()?)
        }
        [] => Err(ToolError::Usage("no command".into())),
        [command, ..] => Err(ToolError::Usage(format!(
            "{command}: unknown command or wrong number of arguments"
        ))),
    }
}

#[cfg(test)]
mod tests;
