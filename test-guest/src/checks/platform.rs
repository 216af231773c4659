//! Finding the hypervisor: start info, CPUID leaves, `xen_version`, and
//! what it must refuse outright (unknown hypercalls, PV-only assists).

use xen_guest::version::{self, feature, has_feature};
use xen_guest::{XenError, cpuid, vm_assist};
use xenolith_abi::cpuid::hvm_feature;
use xenolith_abi::start_info::{MAGIC, SIF_INITDOMAIN};

use super::Context;
use crate::memory;
use crate::options::Role;
use crate::report::{Outcome, ensure, expect_error, expect_raw, fail, ok};

pub fn command_line(context: &mut Context) -> Outcome {
    let options = &context.options;
    if let Some(word) = &options.unknown {
        fail!(
            "unknown word {:?} in {:?}",
            word.as_str(),
            context.start.cmdline.as_str()
        );
    }
    if let Some(role) = options.role {
        ensure!(
            options.peer.is_some() && options.port.is_some(),
            "role={} needs peer=<domid> and port=<p>",
            if role == Role::Offer {
                "offer"
            } else {
                "accept"
            }
        );
    }
    Ok(())
}

pub fn start_info(context: &mut Context) -> Outcome {
    let start = &context.start;
    ensure!(
        start.magic == MAGIC,
        "magic {:#x} at {:#x}, expected {MAGIC:#x}",
        start.magic,
        start.address
    );
    ensure!(
        start.version >= 1,
        "version {} has no memory map",
        start.version
    );
    ensure!(!start.memory.is_empty(), "empty memory map");
    ensure!(
        start.flags & SIF_INITDOMAIN == 0,
        "flags {:#x} claim the initial domain",
        start.flags
    );
    let (image_start, image_end) = memory::image();
    ensure!(
        start.ram_covers(image_start, image_end),
        "no RAM entry covers the image {image_start:#x}..{image_end:#x}"
    );
    Ok(())
}

pub fn cpuid_signature(context: &mut Context) -> Outcome {
    let Some(leaves) = cpuid::find() else {
        fail!("no \"XenVMMXenVMM\" signature in 0x40000000..0x40010000");
    };
    ensure!(
        leaves.max_leaf >= leaves.base + 4,
        "highest leaf {:#x} is below base+4 ({:#x})",
        leaves.max_leaf,
        leaves.base + 4
    );
    context.leaves = Some(leaves);
    Ok(())
}

pub fn cpuid_version(context: &mut Context) -> Outcome {
    let Some(leaves) = context.leaves else {
        fail!("no Xen CPUID leaves");
    };
    let version = cpuid::version(leaves);
    ensure!(
        version.major >= 4,
        "version {}.{} is below 4.x",
        version.major,
        version.minor
    );
    Ok(())
}

pub fn cpuid_vcpu_and_domain(context: &mut Context) -> Outcome {
    let Some(features) = context.leaves.and_then(cpuid::hvm_features) else {
        fail!("no CPUID leaf base+4");
    };
    ensure!(
        features.flags & hvm_feature::VCPU_ID_PRESENT != 0,
        "VCPU_ID_PRESENT clear (flags {:#x})",
        features.flags
    );
    ensure!(
        features.flags & hvm_feature::DOMID_PRESENT != 0,
        "DOMID_PRESENT clear (flags {:#x})",
        features.flags
    );
    ensure!(
        features.vcpu == Some(xen_guest::VcpuId::BOOT),
        "boot vCPU id {:?}, expected 0",
        features.vcpu
    );
    let Some(domain) = features.domain else {
        fail!("no domain id");
    };
    ensure!(
        domain.0 != 0 && domain < xen_guest::DomainId::FIRST_RESERVED,
        "domain id {} is not a DomU's",
        domain.0
    );
    context.domain = Some(domain);
    Ok(())
}

pub fn xen_version(context: &mut Context) -> Outcome {
    let version = ok("XENVER_version", version::version())?;
    ensure!(
        version.major >= 4,
        "version {}.{} is below 4.x",
        version.major,
        version.minor
    );
    if let Some(leaves) = context.leaves {
        let from_cpuid = cpuid::version(leaves);
        ensure!(
            from_cpuid == version,
            "hypercall says {}.{}, CPUID says {}.{}",
            version.major,
            version.minor,
            from_cpuid.major,
            from_cpuid.minor
        );
    }
    Ok(())
}

pub fn xen_extraversion(_context: &mut Context) -> Outcome {
    let extra = ok("XENVER_extraversion", version::extraversion())?;
    ensure!(
        extra.bytes.contains(&0),
        "16 bytes without a NUL: {:?}",
        extra.bytes
    );
    Ok(())
}

pub fn xen_features(_context: &mut Context) -> Outcome {
    let submap = ok("XENVER_get_features(0)", version::features(0))?;
    for (bit, name) in [
        (feature::AUTO_TRANSLATED_PHYSMAP, "auto_translated_physmap"),
        (feature::HVM_CALLBACK_VECTOR, "hvm_callback_vector"),
        (feature::HVM_SAFE_PVCLOCK, "hvm_safe_pvclock"),
    ] {
        ensure!(has_feature(submap, bit), "{name} clear in {submap:#x}");
    }
    for (bit, name) in [(feature::HVM_PIRQS, "hvm_pirqs"), (feature::DOM0, "dom0")] {
        ensure!(
            !has_feature(submap, bit),
            "{name} set in {submap:#x} for a DomU"
        );
    }
    expect_error(
        "XENVER_get_features(1)",
        version::features(1),
        &[XenError::EINVAL],
    )
}

pub fn unknown_hypercall(_context: &mut Context) -> Outcome {
    expect_raw(
        "hypercall 60",
        memory::unknown_hypercall(60),
        &[XenError::ENOSYS],
    )?;
    expect_raw(
        "hypercall 0xffffffffffffffff",
        memory::unknown_hypercall(u64::MAX),
        &[XenError::ENOSYS],
    )
}

/// Refusing assists is allowed (Linux ignores it); PV-only ones and
/// unknown ones must be refused.
pub fn vm_assist_refused(_context: &mut Context) -> Outcome {
    let refused = |kind| vm_assist::vm_assist(vm_assist::VMASST_CMD_ENABLE, kind).is_err();
    ensure!(
        refused(vm_assist::VMASST_TYPE_4GB_SEGMENTS),
        "accepted the PV-only 4gb_segments assist"
    );
    ensure!(refused(31), "accepted unknown assist type 31");
    Ok(())
}
