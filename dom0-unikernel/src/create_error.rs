//! Why the toolstack could not create a guest: the kind of fault (which
//! decides the API's status code) and the reason a user reads.

use alloc::format;
use alloc::string::String;
use core::fmt;

use mgmt_api::BackendError;

use crate::guest_builder::BuildError;

/// A hypervisor error number as its calls return it (negative).
pub type Errno = i64;

/// Xen's ENOMEM and EAGAIN, negated as the hypervisor returns them: the
/// host has no memory (or no free domain slot) for the guest.
const ENOMEM: Errno = -12;
const EAGAIN: Errno = -11;

/// Why a create failed. Every variant carries what a user needs to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateError {
    /// The definition asks for what no guest can have (memory out of
    /// range, a definition that does not exist).
    BadConfig(String),
    /// The kernel cannot be booted: not a kernel, corrupt, or it does not
    /// fit the guest's RAM.
    BadImage(String),
    /// A disk or vif the config names cannot be served.
    BadDevice(String),
    /// A guest of this name runs already.
    NameInUse {
        /// Where the definition came from (its config file, or "api").
        source: String,
        /// The name in use.
        name: String,
    },
    /// The host has no memory (or domain slot) left for the guest.
    HostOutOfMemory {
        /// The RAM asked for, in MiB.
        memory_mib: u64,
    },
    /// The hypervisor refused a step of the build.
    Hypervisor {
        /// What Dom0 asked for.
        step: String,
        /// The hypervisor's (negative) error number.
        errno: Errno,
    },
    /// Dom0's own part failed (its xenstore, its kernel cache).
    Internal(String),
}

impl CreateError {
    /// The hypervisor's refusal of `step` (`errno` < 0), as a create error:
    /// out of memory is the host's, anything else the hypervisor's.
    pub fn hypervisor(step: impl Into<String>, errno: Errno) -> Self {
        Self::Hypervisor {
            step: step.into(),
            errno,
        }
    }

    /// The refusal to create a domain of `memory_mib`: ENOMEM and EAGAIN
    /// mean the host is full, anything else is the hypervisor's.
    pub fn domain_refused(memory_mib: u64, errno: Errno) -> Self {
        match errno {
            ENOMEM | EAGAIN => Self::HostOutOfMemory { memory_mib },
            _ => Self::hypervisor("creating the domain", errno),
        }
    }

    /// The guest builder's refusal: its image (or kernel) is the fault.
    pub fn from_build(error: BuildError) -> Self {
        Self::BadImage(format!("{error}"))
    }

    /// An error number for callers that deal in them (the test guests).
    pub fn errno(&self) -> Errno {
        match self {
            Self::Hypervisor { errno, .. } => *errno,
            Self::HostOutOfMemory { .. } => ENOMEM,
            _ => -22,
        }
    }

    /// The API's answer: the guest's image or config is the fault (422),
    /// a name clash (409), a full host (503: it clears as guests stop),
    /// else the server's fault (500).
    pub fn to_backend_error(&self) -> BackendError {
        let reason = format!("{self}");
        match self {
            Self::BadConfig(_) | Self::BadImage(_) | Self::BadDevice(_) => {
                BackendError::InvalidConfig(reason)
            }
            Self::NameInUse { name, .. } => BackendError::DomainExists(name.clone()),
            Self::HostOutOfMemory { .. } => BackendError::ResourceExhausted(reason),
            Self::Hypervisor { .. } | Self::Internal(_) => BackendError::Internal(reason),
        }
    }
}

impl fmt::Display for CreateError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadConfig(reason)
            | Self::BadImage(reason)
            | Self::BadDevice(reason)
            | Self::Internal(reason) => formatter.write_str(reason),
            Self::NameInUse { source, name } => {
                write!(formatter, "{source}: a guest named {name:?} already exists")
            }
            Self::HostOutOfMemory { memory_mib } => write!(
                formatter,
                "the host has no room for a guest of {memory_mib} MiB"
            ),
            Self::Hypervisor { step, errno } => {
                write!(formatter, "{step}: the hypervisor refused (error {errno})")
            }
        }
    }
}

impl From<CreateError> for BackendError {
    fn from(error: CreateError) -> Self {
        error.to_backend_error()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_builder::{GuestSpec, KernelImage, plan};

    #[test]
    fn an_image_beyond_the_guests_ram_is_a_422_naming_both() {
        // A kernel whose segment (0x4000 bytes in memory) ends 8 KiB
        // beyond a 4 MiB guest's RAM.
        let image = pvh::image::testing::elf_image(0x3f_e000, 0x2000, Some(0x3f_e000));
        let spec = GuestSpec {
            kernel: KernelImage::Elf(image.bytes()),
            memory_kib: 4 * 1024,
            vcpus: 1,
            cmdline: "",
            initrd: None,
        };
        let Err(refusal) = plan(&spec) else {
            panic!("a 4 MiB guest took a kernel ending beyond it");
        };
        let error = CreateError::from_build(refusal);
        let answer = error.to_backend_error();
        assert_eq!(answer.status(), 422);
        let message = format!("{answer}");
        assert!(message.contains("ends at 0x402000"), "{message}");
        assert!(message.contains("0x400000 bytes of RAM"), "{message}");
    }

    #[test]
    fn a_full_host_is_503_and_says_how_much_was_asked() {
        for errno in [ENOMEM, EAGAIN] {
            let error = CreateError::domain_refused(512, errno);
            assert_eq!(error, CreateError::HostOutOfMemory { memory_mib: 512 });
            let answer = error.to_backend_error();
            assert_eq!(answer.status(), 503);
            assert!(format!("{answer}").contains("512 MiB"));
        }
    }

    #[test]
    fn other_hypervisor_refusals_are_500_with_the_step_and_errno() {
        let error = CreateError::domain_refused(64, -22);
        assert_eq!(error.errno(), -22);
        let answer = error.to_backend_error();
        assert_eq!(answer.status(), 500);
        assert_eq!(
            format!("{answer}"),
            "creating the domain: the hypervisor refused (error -22)"
        );
        let answer = CreateError::hypervisor("unpausing", -3).to_backend_error();
        assert_eq!(answer.status(), 500);
        assert!(format!("{answer}").contains("unpausing"));
    }

    #[test]
    fn config_device_and_name_faults_map_to_their_statuses() {
        let answer = CreateError::BadConfig("memory = 1 MiB: give 2 to 3072".into());
        assert_eq!(answer.to_backend_error().status(), 422);
        let answer = CreateError::BadDevice("xvda: no such volume".into());
        assert_eq!(answer.to_backend_error().status(), 422);
        let clash = CreateError::NameInUse {
            source: "web.cfg".into(),
            name: "web".into(),
        };
        assert_eq!(
            format!("{clash}"),
            "web.cfg: a guest named \"web\" already exists"
        );
        let answer = clash.to_backend_error();
        assert_eq!(answer.status(), 409);
        assert!(format!("{answer}").contains("\"web\""));
        let answer = CreateError::Internal("xenstore full".into()).to_backend_error();
        assert_eq!(answer.status(), 500);
    }
}
