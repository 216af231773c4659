//! What can go wrong with a ring: bad geometry chosen by the caller, or a
//! front end that broke the protocol.

use core::fmt;

/// A ring fault. Variants naming the front end are guest faults: the owner
/// logs them (rate-limited) and disconnects the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The page count is 0 or above [`crate::MAX_PAGES`] (or the order
    /// above 4).
    InvalidPageCount { pages: usize },
    /// A request or response size of zero, a slot larger than
    /// [`crate::MAX_SLOT_SIZE`], or a slot too large for one slot to fit.
    InvalidSlotSize {
        request_size: usize,
        response_size: usize,
    },
    /// The memory is smaller than the layout needs.
    MemoryTooSmall { needed: usize, available: usize },
    /// The front end published a request producer index more than a ring's
    /// worth ahead of the responses: potential malicious front end. The ring
    /// stays faulted from then on.
    ProducerIndexOutOfRange {
        request_producer: u32,
        response_producer: u32,
        slots: u32,
    },
    /// The back end tried to push a response for which no request was
    /// consumed (it would overwrite an unconsumed request): a back-end bug.
    ResponseWithoutRequest,
    /// A response of the wrong length.
    ResponseSizeMismatch { expected: usize, actual: usize },
}

impl fmt::Display for RingError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidPageCount { pages } => {
                write!(formatter, "ring of {pages} pages (1 to 16 allowed)")
            }
            Self::InvalidSlotSize {
                request_size,
                response_size,
            } => write!(
                formatter,
                "ring slot sizes {request_size}/{response_size} unusable"
            ),
            Self::MemoryTooSmall { needed, available } => write!(
                formatter,
                "ring memory of {available} bytes, {needed} needed"
            ),
            Self::ProducerIndexOutOfRange {
                request_producer,
                response_producer,
                slots,
            } => write!(
                formatter,
                "producer index out of range: potential malicious front end \
                 (req_prod {request_producer}, rsp_prod {response_producer}, {slots} slots)"
            ),
            Self::ResponseWithoutRequest => {
                write!(formatter, "response pushed without a consumed request")
            }
            Self::ResponseSizeMismatch { expected, actual } => write!(
                formatter,
                "response of {actual} bytes, ring takes {expected}"
            ),
        }
    }
}

impl core::error::Error for RingError {}
