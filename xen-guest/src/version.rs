//! `xen_version` (hypercall 17): the interface version, the extra-version
//! string and the XENFEAT feature bits.

use crate::error::XenError;
use crate::raw::{self, ValueCall};

pub use xenolith_abi::version::{
    XENVER_EXTRAVERSION, XENVER_GET_FEATURES, XENVER_VERSION, feature,
};

/// The hypervisor's interface version (`XENVER_version`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct XenVersion {
    pub major: u16,
    pub minor: u16,
}

impl XenVersion {
    /// Decodes the packed form: major in bits 31:16, minor in 15:0.
    pub const fn from_packed(packed: u32) -> Self {
        Self {
            major: (packed >> 16) as u16,
            minor: packed as u16,
        }
    }
}

/// `xen_feature_info`: which 32-bit submap to read, and its bits (out).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeatureInfo {
    pub submap_index: u32,
    pub submap: u32,
}

/// `xen_extraversion_t`: 16 bytes, NUL-terminated.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtraVersion {
    pub bytes: [u8; 16],
}

const _: () = assert!(core::mem::size_of::<FeatureInfo>() == 8);
const _: () = assert!(core::mem::size_of::<ExtraVersion>() == 16);

/// `XENVER_version`.
pub fn version() -> Result<XenVersion, XenError> {
    let packed = XenError::check(raw::call_with_values(ValueCall::XenVersion))?;
    Ok(XenVersion::from_packed(packed as u32))
}

/// `XENVER_extraversion`: the raw 16 bytes.
pub fn extraversion() -> Result<ExtraVersion, XenError> {
    let mut argument = ExtraVersion::default();
    XenError::check(raw::call(&raw::GET_EXTRAVERSION, &mut argument))?;
    Ok(argument)
}

/// `XENVER_get_features` for submap `submap_index` (only 0 exists).
pub fn features(submap_index: u32) -> Result<u32, XenError> {
    let mut argument = FeatureInfo {
        submap_index,
        submap: 0,
    };
    XenError::check(raw::call(&raw::GET_FEATURES, &mut argument))?;
    Ok(argument.submap)
}

/// Whether bit `feature` (a [`feature`] constant) is set in submap 0.
pub const fn has_feature(submap: u32, feature: u32) -> bool {
    feature < 32 && submap & (1 << feature) != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn layouts_match_xen() {
        assert_eq!(offset_of!(FeatureInfo, submap_index), 0);
        assert_eq!(offset_of!(FeatureInfo, submap), 4);
    }

    #[test]
    fn version_unpacks() {
        assert_eq!(
            XenVersion::from_packed(0x0004_0011),
            XenVersion {
                major: 4,
                minor: 17
            }
        );
        assert!(has_feature(1 << feature::HVM_CALLBACK_VECTOR, 8));
        assert!(!has_feature(u32::MAX, 32));
    }
}
