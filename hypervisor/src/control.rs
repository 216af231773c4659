//! The control interface (Dom0 → hypervisor), decoded: the request bytes
//! Dom0 passes are read once, checked, and turned into a [`Command`]; the
//! answer is written back into the same bytes. See `xenolith_abi::control`
//! for the layout.

use xenolith_abi::control as abi;
use xenolith_abi::domain::DomainId;
use xenolith_abi::errno::Errno;

use crate::domain::{GuestKind, MAX_VCPUS};
use crate::memory::{GuestPhysAddr, GuestVirtAddr, PAGE_SIZE};

/// One decoded control request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Create {
        vcpus: u32,
        memory_pages: u64,
        kind: GuestKind,
    },
    Destroy(DomainId),
    Pause(DomainId),
    Unpause(DomainId),
    GetInfo {
        from: DomainId,
    },
    WriteMemory {
        domain: DomainId,
        address: GuestPhysAddr,
        length: u32,
        buffer: GuestVirtAddr,
    },
    SetVcpuEntry {
        domain: DomainId,
        vcpu: u32,
        entry: u32,
        start_info: GuestPhysAddr,
    },
    SetHvmParam {
        domain: DomainId,
        index: u32,
        value: u64,
    },
    PhysInfo,
    MapFrames {
        domain: DomainId,
        gfn: u64,
        count: u32,
        addresses: GuestVirtAddr,
    },
    UnmapFrames {
        domain: DomainId,
        gfn: u64,
        count: u32,
    },
    /// Power the machine off; a non-zero `status` reports failure.
    PowerOff {
        status: u32,
    },
}

/// The raw request, as Dom0 wrote it.
pub use abi::Request;
use abi::{u32_at, u64_at};

/// Most memory a guest may ask for at creation (64 GiB).
pub const MAX_MEMORY_KIB: u64 = 64 * 1024 * 1024;

/// Decodes and checks a request.
pub fn decode(request: &Request) -> Result<Command, Errno> {
    if u32_at(request, 4) != abi::VERSION {
        return Err(Errno::EINVAL);
    }
    let domain = DomainId(u16::from_le_bytes([request[8], request[9]]));
    let payload = abi::PAYLOAD;
    let real_domain = || {
        if domain == DomainId::DOM0 || domain >= DomainId::FIRST_RESERVED {
            Err(Errno::EINVAL)
        } else {
            Ok(domain)
        }
    };
    Ok(match u32_at(request, 0) {
        abi::CREATE => {
            let vcpus = u32_at(request, payload);
            let flags = u32_at(request, payload + 4);
            let memory_kib = u64_at(request, payload + 8);
            let kind = match flags {
                0 => GuestKind::Pvh,
                abi::CREATE_HVM => GuestKind::Hvm,
                _ => return Err(Errno::EINVAL),
            };
            if vcpus == 0 || vcpus > MAX_VCPUS || memory_kib == 0 || memory_kib > MAX_MEMORY_KIB {
                return Err(Errno::EINVAL);
            }
            Command::Create {
                vcpus,
                memory_pages: memory_kib.div_ceil(PAGE_SIZE / 1024),
                kind,
            }
        }
        abi::DESTROY => Command::Destroy(real_domain()?),
        abi::PAUSE => Command::Pause(real_domain()?),
        abi::UNPAUSE => Command::Unpause(real_domain()?),
        abi::GET_INFO => Command::GetInfo { from: domain },
        abi::WRITE_MEMORY => {
            let length = u32_at(request, payload + 8);
            if length > abi::WRITE_MAX {
                return Err(Errno::EINVAL);
            }
            Command::WriteMemory {
                domain: real_domain()?,
                address: GuestPhysAddr(u64_at(request, payload)),
                length,
                buffer: GuestVirtAddr(u64_at(request, payload + 16)),
            }
        }
        abi::SET_VCPU_ENTRY => {
            let entry = u32::try_from(u64_at(request, payload + 8)).map_err(|_| Errno::EINVAL)?;
            Command::SetVcpuEntry {
                domain: real_domain()?,
                vcpu: u32_at(request, payload),
                entry,
                start_info: GuestPhysAddr(u64_at(request, payload + 16)),
            }
        }
        abi::SET_HVM_PARAM => Command::SetHvmParam {
            domain: real_domain()?,
            index: u32_at(request, payload),
            value: u64_at(request, payload + 8),
        },
        abi::PHYSINFO => Command::PhysInfo,
        abi::MAP_FRAMES | abi::UNMAP_FRAMES => {
            let gfn = u64_at(request, payload);
            let count = u32_at(request, payload + 8);
            if count == 0
                || count > abi::MAP_MAX
                || gfn
                    .checked_add(u64::from(count))
                    .is_none_or(|end| end > 1 << 36)
            {
                return Err(Errno::EINVAL);
            }
            if u32_at(request, 0) == abi::MAP_FRAMES {
                Command::MapFrames {
                    domain: real_domain()?,
                    gfn,
                    count,
                    addresses: GuestVirtAddr(u64_at(request, payload + 16)),
                }
            } else {
                Command::UnmapFrames {
                    domain: real_domain()?,
                    gfn,
                    count,
                }
            }
        }
        abi::POWER_OFF => Command::PowerOff {
            status: u32_at(request, payload),
        },
        _ => return Err(Errno::ENOSYS),
    })
}

/// Writes a CREATE answer (the new domain's id).
pub fn encode_created(request: &mut Request, domain: DomainId) {
    request[8..10].copy_from_slice(&domain.0.to_le_bytes());
}

/// Writes a PHYSINFO answer.
pub fn encode_physinfo(
    request: &mut Request,
    total_pages: u64,
    free_pages: u64,
    tsc_khz: u32,
    domains: u32,
) {
    let payload = abi::PAYLOAD;
    request[payload..payload + 8].copy_from_slice(&total_pages.to_le_bytes());
    request[payload + 8..payload + 16].copy_from_slice(&free_pages.to_le_bytes());
    request[payload + 16..payload + 20].copy_from_slice(&tsc_khz.to_le_bytes());
    request[payload + 20..payload + 24].copy_from_slice(&domains.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(cmd: u32, domain: u16) -> Request {
        let mut request = [0u8; abi::REQUEST_SIZE];
        request[0..4].copy_from_slice(&cmd.to_le_bytes());
        request[4..8].copy_from_slice(&abi::VERSION.to_le_bytes());
        request[8..10].copy_from_slice(&domain.to_le_bytes());
        request
    }

    #[test]
    fn decodes_create_and_rounds_memory_up_to_pages() {
        let mut create = request(abi::CREATE, 0);
        create[16..20].copy_from_slice(&2u32.to_le_bytes());
        create[24..32].copy_from_slice(&(64 * 1024 + 1u64).to_le_bytes());
        assert_eq!(
            decode(&create),
            Ok(Command::Create {
                vcpus: 2,
                memory_pages: 16 * 1024 + 1,
                kind: GuestKind::Pvh,
            })
        );
        // Flag bit 0 asks for HVM; other bits are refused.
        create[20..24].copy_from_slice(&abi::CREATE_HVM.to_le_bytes());
        assert!(matches!(
            decode(&create),
            Ok(Command::Create {
                kind: GuestKind::Hvm,
                ..
            })
        ));
        create[20..24].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(decode(&create), Err(Errno::EINVAL));
    }

    #[test]
    fn refuses_bad_versions_commands_and_sizes() {
        let mut stale = request(abi::PAUSE, 3);
        stale[4] ^= 1;
        assert_eq!(decode(&stale), Err(Errno::EINVAL));
        assert_eq!(decode(&request(77, 3)), Err(Errno::ENOSYS));
        assert_eq!(
            decode(&request(abi::DESTROY, 0)),
            Err(Errno::EINVAL),
            "Dom0 cannot destroy itself"
        );
        assert_eq!(decode(&request(abi::DESTROY, 0x7ff0)), Err(Errno::EINVAL));
        let mut huge = request(abi::CREATE, 0);
        huge[16..20].copy_from_slice(&1u32.to_le_bytes());
        huge[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(decode(&huge), Err(Errno::EINVAL));
        let mut write = request(abi::WRITE_MEMORY, 1);
        write[24..28].copy_from_slice(&(abi::WRITE_MAX + 1).to_le_bytes());
        assert_eq!(decode(&write), Err(Errno::EINVAL));
        let mut entry = request(abi::SET_VCPU_ENTRY, 1);
        entry[24..32].copy_from_slice(&(1u64 << 32).to_le_bytes());
        assert_eq!(decode(&entry), Err(Errno::EINVAL));
    }

    #[test]
    fn frame_mappings_are_bounded() {
        let mut map = request(abi::MAP_FRAMES, 2);
        map[16..24].copy_from_slice(&0x100u64.to_le_bytes());
        map[24..28].copy_from_slice(&4u32.to_le_bytes());
        map[32..40].copy_from_slice(&0x5000u64.to_le_bytes());
        assert_eq!(
            decode(&map),
            Ok(Command::MapFrames {
                domain: DomainId(2),
                gfn: 0x100,
                count: 4,
                addresses: GuestVirtAddr(0x5000)
            })
        );
        map[24..28].copy_from_slice(&(abi::MAP_MAX + 1).to_le_bytes());
        assert_eq!(decode(&map), Err(Errno::EINVAL));
        map[24..28].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(decode(&map), Err(Errno::EINVAL));
        let mut unmap = request(abi::UNMAP_FRAMES, 0);
        unmap[24..28].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(decode(&unmap), Err(Errno::EINVAL), "not Dom0's own frames");
    }

    #[test]
    fn power_off_carries_its_status() {
        let mut power_off = request(abi::POWER_OFF, 0);
        assert_eq!(decode(&power_off), Ok(Command::PowerOff { status: 0 }));
        power_off[16..20].copy_from_slice(&7u32.to_le_bytes());
        assert_eq!(decode(&power_off), Ok(Command::PowerOff { status: 7 }));
        power_off[4] ^= 1;
        assert_eq!(decode(&power_off), Err(Errno::EINVAL), "version checked");
        assert_eq!(decode(&request(13, 0)), Err(Errno::ENOSYS));
    }
}
