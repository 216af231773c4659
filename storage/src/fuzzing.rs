//! The promises the fuzz target `storage` checks on arbitrary disks: GPT
//! reading and store opening never panic, never loop or allocate without
//! bound, and whatever they accept is consistent and usable.
//!
//! The first input byte picks how the rest is used: as a whole disk image,
//! or as patches onto a valid appliance disk (GPT, store, volumes), with
//! or without the CRCs fixed up afterwards (so the parsers behind the CRC
//! checks are reached too). The remaining bytes then drive store
//! operations on whatever opened.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::block::{BlockDevice, PartitionDevice, SECTOR_SIZE};
use crate::bytes::read_u32;
use crate::fake::FakeDisk;
use crate::gpt::Gpt;
use crate::guid::Guid;
use crate::store::format::metadata_crc;
use crate::store::{FormatOptions, SLOT_SECTORS, Store, VolumeKind, VolumeName};

const TEMPLATE_SECTORS: u64 = 2048 + 2048 + 64 * 8 + 2048;
const BLOCK_SECTORS: u32 = 8;

/// A promise the code broke, described.
pub type BrokenPromise = String;

/// Runs every check on `data`; `Err` names a broken promise.
pub fn disk_image(data: &[u8]) -> Result<(), BrokenPromise> {
    let Some((&mode, rest)) = data.split_first() else {
        return Ok(());
    };
    match mode % 3 {
        0 => probe(FakeDisk::from_image(rest), &[]),
        patch_mode => {
            // Then: a patch count (up to 64), 3 bytes per patch, operations.
            let (&count, rest) = rest.split_first().unwrap_or((&0, &[]));
            let patch_bytes = (usize::from(count % 65) * 3).min(rest.len());
            let (patches, operations) = rest.split_at(patch_bytes);
            let mut disk = template()?;
            for patch in patches.chunks_exact(3) {
                let offset = patch_offset(patch[0], patch[1]);
                disk.edit(offset, 1, |byte| byte[0] = patch[2]);
            }
            if patch_mode == 2 {
                fix_checksums(&mut disk);
            }
            probe(disk, operations)
        }
    }
}

/// A valid appliance disk: GPT with a store partition holding a few
/// volumes.
fn template() -> Result<FakeDisk, BrokenPromise> {
    let mut disk = FakeDisk::new(TEMPLATE_SECTORS);
    let gpt = Gpt::with_xenolith_partition(
        TEMPLATE_SECTORS,
        Guid::from_random_bytes([1; 16]),
        Guid::from_random_bytes([2; 16]),
    )
    .map_err(|error| format!("template GPT: {error}"))?;
    gpt.write_new(&mut disk)
        .map_err(|error| format!("template GPT write: {error}"))?;
    let partition = gpt
        .find_xenolith_store()
        .map_err(|error| format!("template: {error}"))?;
    let device = PartitionDevice::new(
        &mut disk,
        partition.first_sector(),
        partition.sector_count(),
    )
    .map_err(|error| format!("template partition: {error}"))?;
    let options = FormatOptions {
        block_sectors: BLOCK_SECTORS,
        ..FormatOptions::new(Guid::from_random_bytes([3; 16]))
    };
    let mut store =
        Store::format(device, options).map_err(|error| format!("template format: {error}"))?;
    for (index, kind) in [
        VolumeKind::Kernel,
        VolumeKind::DiskImage,
        VolumeKind::Config,
    ]
    .into_iter()
    .enumerate()
    {
        let name = VolumeName::new(&format!("volume{index}"))
            .map_err(|error| format!("template name: {error}"))?;
        store
            .create(&name, kind, 4096 * (index as u64 + 1))
            .map_err(|error| format!("template create: {error}"))?;
    }
    Ok(disk)
}

/// Aims a patch at the structures: protective MBR, GPT headers and first
/// entries, and the store's slot headers and tables.
fn patch_offset(selector: u8, offset: u8) -> u64 {
    let within = u64::from(offset) + u64::from(selector & 0x7) * 256;
    let sector = match selector >> 3 {
        0 => 0,
        1 => 1,
        2 => 2,
        3 => TEMPLATE_SECTORS - 1,
        4 => TEMPLATE_SECTORS - 33,
        5 | 6 => 2048,
        _ => 2048 + u64::from(SLOT_SECTORS),
    };
    sector * SECTOR_SIZE as u64 + within % (2 * SECTOR_SIZE as u64)
}

/// Recomputes the GPT and slot CRCs so patched fields reach the checks
/// behind them.
fn fix_checksums(disk: &mut FakeDisk) {
    for (header_lba, array_lba) in [(1, 2), (TEMPLATE_SECTORS - 1, TEMPLATE_SECTORS - 33)] {
        let array = disk.bytes(array_lba * SECTOR_SIZE as u64, 128 * 128);
        let array_crc = crc32fast::hash(&array);
        disk.edit(header_lba * SECTOR_SIZE as u64, 92, |header| {
            header[88..92].copy_from_slice(&array_crc.to_le_bytes());
            header[16..20].fill(0);
            let crc = crc32fast::hash(header);
            header[16..20].copy_from_slice(&crc.to_le_bytes());
        });
    }
    for slot in 0..2u64 {
        let start = (2048 + slot * u64::from(SLOT_SECTORS)) * SECTOR_SIZE as u64;
        let header = disk.bytes(start, SECTOR_SIZE);
        let length = (read_u32(&header, 24) as usize).min(SLOT_SECTORS as usize * SECTOR_SIZE);
        if length >= 16 {
            let bytes = disk.bytes(start, length);
            let crc = metadata_crc(&bytes);
            disk.edit(start + 12, 4, |field| {
                field.copy_from_slice(&crc.to_le_bytes())
            });
        }
    }
}

/// Reads the GPT, opens the store, checks what was accepted, and runs the
/// operations `operations` describes.
fn probe(mut disk: FakeDisk, operations: &[u8]) -> Result<(), BrokenPromise> {
    let Ok((gpt, _report)) = Gpt::read(&mut disk) else {
        return Ok(());
    };
    for partition in gpt.partitions() {
        let inside = partition.entry.first >= gpt.first_usable()
            && partition.entry.first <= partition.entry.last
            && partition.entry.last <= gpt.last_usable()
            && partition.entry.last.0 < disk.sector_count();
        if !inside {
            return Err(format!("accepted partition {partition:?} is out of range"));
        }
    }
    let Ok(partition) = gpt.find_xenolith_store() else {
        return Ok(());
    };
    let device = PartitionDevice::new(
        &mut disk,
        partition.first_sector(),
        partition.sector_count(),
    )
    .map_err(|error| format!("accepted partition lies off the disk: {error}"))?;
    let Ok((mut store, _report)) = Store::open(device) else {
        return Ok(());
    };
    store
        .check()
        .map_err(|fault| format!("opened store is inconsistent: {fault}"))?;
    let ids: Vec<_> = store.volumes().iter().map(|volume| volume.id).collect();
    for id in ids {
        let size = store.volume(id).map(|volume| volume.size).unwrap_or(0);
        let mut buffer = vec![0u8; size.min(1024) as usize];
        store
            .read_at(id, size - buffer.len() as u64, &mut buffer)
            .map_err(|error| format!("reading an accepted volume failed: {error}"))?;
    }
    for (step, operation) in operations.chunks_exact(3).take(32).enumerate() {
        let count = store.volumes().len();
        let size = u64::from(u16::from_le_bytes([operation[1], operation[2]])) * 8;
        let target = store
            .volumes()
            .get(usize::from(operation[1]) % count.max(1))
            .map(|volume| volume.id);
        let _ = match (operation[0] % 4, target) {
            (0, _) => match VolumeName::new(&format!("fuzz{step}")) {
                Ok(name) => store.create(&name, VolumeKind::Initrd, size).map(|_| ()),
                Err(_) => Ok(()),
            },
            (1, Some(id)) => store.resize(id, size),
            (2, Some(id)) => store.delete(id),
            (3, Some(id)) => store.write_at(id, 0, &[operation[2]]),
            _ => Ok(()),
        };
        store
            .check()
            .map_err(|fault| format!("operation left the store inconsistent: {fault}"))?;
    }
    let generation = store.generation();
    let volumes = store.volumes().to_vec();
    let device = store.into_device();
    let first = device.first_sector();
    let disk = device.into_inner();
    let device = PartitionDevice::new(disk, first, partition.sector_count())
        .map_err(|error| format!("partition vanished: {error}"))?;
    let (store, report) = Store::open(device)
        .map_err(|error| format!("store written by this code does not reopen: {error}"))?;
    if report.generation != generation || store.volumes() != &volumes[..] {
        return Err(String::from("reopened store differs from the one closed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::SplitMix64;

    #[test]
    fn the_template_is_a_valid_appliance_disk() {
        let mut disk = template().unwrap();
        let (gpt, report) = Gpt::read(&mut disk).unwrap();
        assert!(report.is_healthy());
        let partition = gpt.find_xenolith_store().unwrap();
        let device = PartitionDevice::new(
            &mut disk,
            partition.first_sector(),
            partition.sector_count(),
        )
        .unwrap();
        let (store, _) = Store::open(device).unwrap();
        assert_eq!(store.volumes().len(), 3);
    }

    #[test]
    fn random_inputs_keep_every_promise() {
        let mut random = SplitMix64::new(99);
        for round in 0..90u64 {
            let length = random.below(400) as usize;
            let mut data: Vec<u8> = (0..length).map(|_| random.next_u64() as u8).collect();
            if let Some(first) = data.first_mut() {
                *first = (round % 3) as u8;
            }
            disk_image(&data).unwrap();
        }
        // Operations on an untouched template.
        let mut data = vec![1u8, 0];
        for index in 0..40u8 {
            data.extend_from_slice(&[index, index.wrapping_mul(7), 3]);
        }
        disk_image(&[]).unwrap();
        disk_image(&data).unwrap();
    }
}
