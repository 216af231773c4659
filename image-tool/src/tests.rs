//! The commands on small disks in a temporary directory.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use storage::BlockDevice;

struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "xenolith-img-unit-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        Scratch(path)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn arguments(text: &str) -> Vec<String> {
    text.split_whitespace().map(String::from).collect()
}

#[test]
fn sizes_parse() {
    assert_eq!(parse_size("4096").unwrap(), 4096);
    assert_eq!(parse_size("64M").unwrap(), 64 << 20);
    assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
    assert_eq!(parse_size("1k").unwrap(), 1024);
    assert!(parse_size("").is_err());
    assert!(parse_size("M").is_err());
    assert!(parse_size("12X").is_err());
    assert!(parse_size("99999999999T").is_err());
}

#[test]
fn usage_errors_exit_2() {
    for line in [
        "",
        "frobnicate x",
        "create disk.img",
        "create disk.img --size",
        "import a b",
        "import d n f --kind swap",
        "import d n f --convert vmdk",
        "import d n f --kind kernel --convert raw",
        "list d --size 1M",
        "list d --bogus",
    ] {
        let error = run(&arguments(line)).unwrap_err();
        assert_eq!(error.exit_code(), 2, "{line:?}: {error}");
    }
}

#[test]
fn create_list_import_export_remove() {
    let scratch = Scratch::new();
    let disk = scratch.path("disk.img");
    let disk_name = disk.to_str().unwrap();
    run(&arguments(&format!("create {disk_name} --size 32M"))).unwrap();
    assert_eq!(std::fs::metadata(&disk).unwrap().len(), 32 << 20);

    // Refuses to overwrite without --force.
    let error = run(&arguments(&format!("create {disk_name} --size 32M"))).unwrap_err();
    assert_eq!(error.exit_code(), 4);

    let kernel: Vec<u8> = (0..100_000u32).map(|value| (value % 251) as u8).collect();
    let kernel_file = scratch.path("vmlinuz");
    std::fs::write(&kernel_file, &kernel).unwrap();
    let raw: Vec<u8> = (0..(3u32 << 20)).map(|value| (value % 253) as u8).collect();
    let raw_file = scratch.path("raw.img");
    std::fs::write(&raw_file, &raw).unwrap();

    import(&disk, "vmlinuz", &kernel_file, VolumeKind::Kernel, false).unwrap();
    import(&disk, "root", &raw_file, VolumeKind::DiskImage, false).unwrap();
    new_qcow2(&disk, "data", 1 << 30).unwrap();
    let error = import(&disk, "root", &raw_file, VolumeKind::DiskImage, false).unwrap_err();
    assert!(matches!(error, ToolError::Store(StoreError::NameTaken)));

    let listed = volumes(&disk).unwrap();
    let summary: Vec<_> = listed
        .iter()
        .map(|listing| {
            (
                listing.name.as_str(),
                listing.kind,
                listing.format,
                listing.size,
            )
        })
        .collect();
    assert_eq!(summary[0], ("vmlinuz", VolumeKind::Kernel, None, 100_000));
    assert_eq!(
        summary[1],
        (
            "root",
            VolumeKind::DiskImage,
            Some(ImageFormat::Raw),
            3 << 20
        )
    );
    assert_eq!(summary[2].2, Some(ImageFormat::Qcow2));
    let table = list(&disk).unwrap();
    assert!(
        table.contains("vmlinuz") && table.contains("qcow2"),
        "{table}"
    );

    let out = scratch.path("out");
    export(&disk, "vmlinuz", &out, false).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), kernel);
    assert_eq!(
        export(&disk, "root", &out, false).unwrap_err().exit_code(),
        4
    );
    export(&disk, "root", &out, true).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), raw);

    // The new qcow2 volume opens, reads zeros and takes writes (growing
    // the volume as Dom0's adapter does).
    let mut store = open_store(&disk).unwrap();
    let id = store.lookup("data").unwrap().id;
    {
        let volume = media::VolumeStorage::new(&mut store, id);
        let options = disk_formats::OpenOptions {
            read_only: false,
            depth: 0,
        };
        let mut image = Qcow2::open(volume, options, &mut disk_formats::NoBacking).unwrap();
        assert_eq!(image.virtual_size(), 1 << 30);
        let mut buffer = vec![0xAAu8; 4096];
        image.read(DiskOffset(1 << 20), &mut buffer).unwrap();
        assert!(buffer.iter().all(|&byte| byte == 0));
        image.write(DiskOffset(512 << 20), &[7u8; 8192]).unwrap();
        image.flush().unwrap();
        image.read(DiskOffset(512 << 20), &mut buffer).unwrap();
        assert!(buffer.iter().all(|&byte| byte == 7));
    }
    assert!(store.lookup("data").unwrap().size >= media::GROWTH_STEP);
    drop(store);

    remove(&disk, "root").unwrap();
    assert!(matches!(
        remove(&disk, "root").unwrap_err(),
        ToolError::Store(StoreError::NoSuchVolume)
    ));
    assert_eq!(volumes(&disk).unwrap().len(), 2);
}

#[test]
fn raw_disks_must_be_whole_sectors_but_other_kinds_need_not() {
    let scratch = Scratch::new();
    let disk = scratch.path("disk.img");
    create(&disk, 16 << 20, false).unwrap();
    let odd = scratch.path("odd");
    let mut text = b"name = \"odd\"\nkernel = \"vmlinuz\"\n".to_vec();
    text.resize(1000, b'#');
    std::fs::write(&odd, &text).unwrap();
    assert!(matches!(
        import(&disk, "odd", &odd, VolumeKind::DiskImage, false).unwrap_err(),
        ToolError::Refused(_)
    ));
    import(&disk, "odd", &odd, VolumeKind::Config, false).unwrap();
}

#[test]
fn foreign_and_damaged_disks_are_refused_untouched() {
    let scratch = Scratch::new();
    // Zeros: no GPT.
    let blank = scratch.path("blank.img");
    std::fs::write(&blank, vec![0u8; 4 << 20]).unwrap();
    let error = run(&arguments(&format!("list {}", blank.display()))).unwrap_err();
    assert_eq!(error.exit_code(), 3, "{error}");
    assert!(error.to_string().contains("no valid GPT"), "{error}");
    assert!(std::fs::read(&blank).unwrap().iter().all(|&byte| byte == 0));

    // A GPT without a store partition.
    let foreign = scratch.path("foreign.img");
    std::fs::write(&foreign, vec![0u8; 4 << 20]).unwrap();
    let mut device = FileDisk::new(
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&foreign)
            .unwrap(),
    )
    .unwrap();
    Gpt::new(device.sector_count(), Guid([1; 16]))
        .unwrap()
        .write_new(&mut device)
        .unwrap();
    let error = list(&foreign).unwrap_err();
    assert!(
        error.to_string().contains("no Xenolith volume store"),
        "{error}"
    );

    // A store whose metadata is damaged (both slots).
    let disk = scratch.path("disk.img");
    create(&disk, 16 << 20, false).unwrap();
    let store = open_store(&disk).unwrap();
    let first = store.device().first_sector().0;
    drop(store);
    let mut bytes = std::fs::read(&disk).unwrap();
    for slot in 0..2u64 {
        let at = ((first + slot * 1024) * 512 + 20) as usize;
        bytes[at] ^= 0xFF;
    }
    std::fs::write(&disk, &bytes).unwrap();
    let error = list(&disk).unwrap_err();
    assert_eq!(error.exit_code(), 3);
    assert!(error.to_string().contains("damaged"), "{error}");
    assert_eq!(std::fs::read(&disk).unwrap(), bytes);
}

#[test]
fn a_corrupt_qcow2_is_not_imported() {
    let scratch = Scratch::new();
    let disk = scratch.path("disk.img");
    create(&disk, 16 << 20, false).unwrap();
    let image = Qcow2::create(MemoryStorage::default(), &CreateOptions::new(1 << 20)).unwrap();
    let mut bytes = image.0;
    // L1 table offset far past the end.
    bytes[40..48].copy_from_slice(&(1u64 << 40).to_be_bytes());
    let file = scratch.path("bad.qcow2");
    std::fs::write(&file, &bytes).unwrap();
    let error = import(&disk, "bad", &file, VolumeKind::DiskImage, false).unwrap_err();
    assert!(matches!(error, ToolError::Image { .. }), "{error}");
    assert!(volumes(&disk).unwrap().is_empty());
}

#[test]
fn check_passes_a_good_disk_and_names_what_is_wrong_with_a_bad_one() {
    let scratch = Scratch::new();
    let disk = scratch.path("disk.img");
    let disk_name = disk.to_str().unwrap();
    create(&disk, 32 << 20, false).unwrap();
    let kernel_file = scratch.path("vmlinuz");
    std::fs::write(&kernel_file, [3u8; 5000]).unwrap();
    import(&disk, "vmlinuz", &kernel_file, VolumeKind::Kernel, false).unwrap();
    new_qcow2(&disk, "data", 64 << 20).unwrap();
    let mut store = open_store(&disk).unwrap();
    let id = store.lookup("data").unwrap().id;
    {
        let volume = media::VolumeStorage::new(&mut store, id);
        let options = disk_formats::OpenOptions {
            read_only: false,
            depth: 0,
        };
        let mut image = Qcow2::open(volume, options, &mut disk_formats::NoBacking).unwrap();
        image.write(DiskOffset(5 << 20), &[9u8; 200_000]).unwrap();
        image.flush().unwrap();
    }
    drop(store);

    let report = run(&arguments(&format!("check {disk_name}"))).unwrap();
    assert!(report.contains("GPT: primary and backup valid"), "{report}");
    assert!(
        report.contains("volume vmlinuz: kernel, 5000 bytes"),
        "{report}"
    );
    assert!(
        report.contains("volume data: qcow2:") && report.contains(" 0 corruptions, 0 leaked"),
        "{report}"
    );
    assert!(report.ends_with("consistent\n"), "{report}");

    // The older metadata copy torn: what a crash mid-update leaves.
    let store = open_store(&disk).unwrap();
    let first = store.device().first_sector().0;
    let older_slot = (store.generation() + 1) % 2;
    drop(store);
    let pristine = std::fs::read(&disk).unwrap();
    let mut bytes = pristine.clone();
    bytes[((first + older_slot * 1024) * 512 + 100) as usize] ^= 0xFF;
    std::fs::write(&disk, &bytes).unwrap();
    let report = check(&disk).unwrap();
    assert!(
        report.contains("warning: store: the other metadata copy"),
        "{report}"
    );

    // The backup GPT header damaged: reported, and nothing written.
    let mut bytes = pristine.clone();
    let last = bytes.len() - 512;
    bytes[last + 30] ^= 0xFF;
    std::fs::write(&disk, &bytes).unwrap();
    let error = run(&arguments(&format!("check {disk_name}"))).unwrap_err();
    assert_eq!(error.exit_code(), 5, "{error}");
    assert!(error.to_string().contains("ERROR GPT"), "{error}");
    assert_eq!(std::fs::read(&disk).unwrap(), bytes);

    // The qcow2 header cluster's refcount zeroed: corruption.
    std::fs::write(&disk, &pristine).unwrap();
    let mut store = open_store(&disk).unwrap();
    let mut header = [0u8; 64];
    store.read_at(id, 0, &mut header).unwrap();
    let table = u64::from_be_bytes(header[48..56].try_into().unwrap());
    let mut entry = [0u8; 8];
    store.read_at(id, table, &mut entry).unwrap();
    let block = u64::from_be_bytes(entry);
    store.write_at(id, block, &[0, 0]).unwrap();
    drop(store);
    let error = check(&disk).unwrap_err();
    assert_eq!(error.exit_code(), 5);
    let text = error.to_string();
    assert!(
        text.contains("ERROR volume data: qcow2")
            && text.contains("cluster 0: refcount 0 but 1 references"),
        "{text}"
    );
}

#[test]
fn configs_are_parsed_on_import_and_checked_against_the_store() {
    let scratch = Scratch::new();
    let disk = scratch.path("disk.img");
    create(&disk, 32 << 20, false).unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let path = scratch.path(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    // Not an xl.cfg: refused with the line, nothing stored.
    let bad = file("bad.cfg", b"name = \"x\"\nmemory = lots\n");
    let error = import(&disk, "bad.cfg", &bad, VolumeKind::Config, false).unwrap_err();
    assert!(error.to_string().contains("line 2"), "{error}");
    assert!(volumes(&disk).unwrap().is_empty());

    // A config whose kernel is not there yet imports, and check says so.
    let web = file(
        "web.cfg",
        b"name = \"web\"\nkernel = \"vmlinuz\"\nramdisk = \"initrd\"\n\
          disk = [ \"format=qcow2, vdev=xvda, target=data\" ]\n",
    );
    import(&disk, "web.cfg", &web, VolumeKind::Config, false).unwrap();
    let error = check(&disk).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("ERROR volume web.cfg: kernel \"vmlinuz\": no such volume"),
        "{error}"
    );
    // A kernel of the wrong kind is named as such.
    let blob = file("blob", &[7u8; 4096]);
    import(&disk, "vmlinuz", &blob, VolumeKind::Initrd, false).unwrap();
    let error = check(&disk).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("is a volume of kind initrd, not kernel"),
        "{error}"
    );
    remove(&disk, "vmlinuz").unwrap();
    import(&disk, "vmlinuz", &blob, VolumeKind::Kernel, false).unwrap();
    import(&disk, "initrd", &blob, VolumeKind::Initrd, false).unwrap();
    let error = check(&disk).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("disk target \"data\": no such volume"),
        "{error}"
    );
    new_qcow2(&disk, "data", 1 << 20).unwrap();
    let appliance = file("appliance", b"guests = [ \"web\", \"elsewhere\" ]\n");
    import(&disk, "appliance", &appliance, VolumeKind::Config, false).unwrap();
    let report = check(&disk).unwrap();
    assert!(
        report.contains("volume web.cfg: config of guest web"),
        "{report}"
    );
    assert!(
        report.contains("warning: volume appliance: the appliance config starts [\"elsewhere\"]"),
        "{report}"
    );
    assert!(report.ends_with("consistent\n"), "{report}");
}

/// Runs `qemu-img` (installed by scripts/setup); the test fails without it.
fn qemu_img(arguments: &[&str]) {
    let output = std::process::Command::new("qemu-img")
        .args(arguments)
        .output()
        .expect("qemu-img not runnable: run scripts/setup (Debian's qemu-utils)");
    assert!(
        output.status.success(),
        "qemu-img {arguments:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_vmdk_is_stored_as_vmdk_or_converted_to_raw() {
    let scratch = Scratch::new();
    let disk = scratch.path("disk.img");
    create(&disk, 64 << 20, false).unwrap();
    let source_file = scratch.path("source.raw");
    let mut source = vec![0u8; 3 << 20];
    for (index, byte) in source[100_000..1_500_000].iter_mut().enumerate() {
        *byte = (index * 7 % 251) as u8;
    }
    std::fs::write(&source_file, &source).unwrap();
    let vmdk = scratch.path("image.vmdk");
    let (source_name, vmdk_name) = (source_file.to_str().unwrap(), vmdk.to_str().unwrap());
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "vmdk",
        "-o",
        "subformat=monolithicSparse",
        source_name,
        vmdk_name,
    ]);

    // Stored as it is: listed and checked as vmdk, exported byte for byte.
    import(&disk, "sparse", &vmdk, VolumeKind::DiskImage, false).unwrap();
    let listing = list(&disk).unwrap();
    assert!(
        listing
            .lines()
            .any(|line| line.starts_with("sparse") && line.contains("vmdk")),
        "{listing}"
    );
    let report = check(&disk).unwrap();
    assert!(
        report.contains("volume sparse: vmdk (monolithicSparse, served read-only), 3145728 bytes"),
        "{report}"
    );
    let exported = scratch.path("exported.vmdk");
    export(&disk, "sparse", &exported, false).unwrap();
    assert!(std::fs::read(&exported).unwrap() == std::fs::read(&vmdk).unwrap());

    // Converted: a raw volume holding the virtual disk.
    import(&disk, "flat", &vmdk, VolumeKind::DiskImage, true).unwrap();
    let exported = scratch.path("exported.raw");
    export(&disk, "flat", &exported, false).unwrap();
    assert!(std::fs::read(&exported).unwrap() == source);
    let listing = list(&disk).unwrap();
    assert!(
        listing
            .lines()
            .any(|line| line.starts_with("flat") && line.contains("raw")),
        "{listing}"
    );

    // Other subformats are refused, nothing stored.
    let stream = scratch.path("stream.vmdk");
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "vmdk",
        "-o",
        "subformat=streamOptimized",
        source_name,
        stream.to_str().unwrap(),
    ]);
    let error = import(&disk, "stream", &stream, VolumeKind::DiskImage, false).unwrap_err();
    assert!(error.to_string().contains("streamOptimized"), "{error}");
    assert_eq!(volumes(&disk).unwrap().len(), 2);
}
