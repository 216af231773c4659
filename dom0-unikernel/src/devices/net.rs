//! The NIC: virtio-drivers' virtio-net (raw, non-blocking half) with every
//! receive slot filled with a buffer up front and transmissions left in
//! flight. After an interrupt, [`NetDevice::receive`] drains every frame
//! that arrived and reposts the buffers, and [`NetDevice::reclaim`] takes
//! back every sent buffer: one pass per interrupt, however many frames.

use alloc::vec;
use alloc::vec::Vec;

use dom0::virtio_blk::InFlight;
use dom0::virtio_net::Mac;
use virtio_drivers::device::net::VirtIONetRaw;

use super::hal::Dom0Hal;
use super::msix::MsixTransport;

/// Descriptors per queue: receive buffers posted, transmissions in flight.
pub const QUEUE_SIZE: usize = 64;
/// Room for the virtio-net header and a 1514-byte frame.
const BUFFER_LEN: usize = 2048;

/// Why a frame was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetError {
    /// Every transmit slot is in flight: drop, or retry after `reclaim`.
    QueueFull,
    /// Longer than a buffer holds.
    TooLong(usize),
    /// virtio-drivers refused (its error, by name).
    Device(&'static str),
}

impl core::fmt::Display for NetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::QueueFull => write!(f, "transmit queue full"),
            Self::TooLong(length) => write!(f, "{length}-byte frame too long"),
            Self::Device(what) => write!(f, "virtio-net: {what}"),
        }
    }
}

fn device_error(error: virtio_drivers::Error) -> NetError {
    match error {
        virtio_drivers::Error::QueueFull => NetError::QueueFull,
        virtio_drivers::Error::NotReady => NetError::Device("not ready"),
        virtio_drivers::Error::InvalidParam => NetError::Device("invalid parameter"),
        virtio_drivers::Error::DmaError => NetError::Device("no DMA memory"),
        _ => NetError::Device("error"),
    }
}

/// The virtio-net device.
pub struct NetDevice {
    raw: VirtIONetRaw<Dom0Hal, MsixTransport, QUEUE_SIZE>,
    receiving: InFlight<Vec<u8>>,
    sending: InFlight<Vec<u8>>,
    /// Frames received and sent since start.
    pub received: u64,
    pub sent: u64,
}

impl NetDevice {
    /// Starts the device and fills the receive queue.
    pub fn new(transport: MsixTransport) -> Result<Self, NetError> {
        let raw = VirtIONetRaw::new(transport).map_err(device_error)?;
        let mut device = Self {
            raw,
            receiving: InFlight::new(QUEUE_SIZE),
            sending: InFlight::new(QUEUE_SIZE),
            received: 0,
            sent: 0,
        };
        for _ in 0..QUEUE_SIZE {
            if device.post_receive(vec![0; BUFFER_LEN]).is_err() {
                break;
            }
        }
        Ok(device)
    }

    pub fn mac(&self) -> Mac {
        self.raw.mac_address()
    }

    /// Receive buffers the device holds.
    pub fn receive_slots(&self) -> usize {
        self.receiving.len()
    }

    fn post_receive(&mut self, mut buffer: Vec<u8>) -> Result<(), NetError> {
        // SAFETY: `buffer` goes into `receiving` and is untouched until
        // `receive` pops its token with the same buffer.
        let token = unsafe { self.raw.receive_begin(&mut buffer) }.map_err(device_error)?;
        if let Err(buffer) = self.receiving.insert(token, buffer) {
            log::error!("dom0: virtio-net: receive token {token} reused; buffer leaked");
            core::mem::forget(buffer);
        }
        Ok(())
    }

    /// Sends `frame` (an Ethernet frame without FCS): copied behind the
    /// virtio-net header and left in flight until [`reclaim`].
    ///
    /// [`reclaim`]: Self::reclaim
    pub fn send(&mut self, frame: &[u8]) -> Result<(), NetError> {
        let mut buffer = vec![0u8; BUFFER_LEN];
        let header = self
            .raw
            .fill_buffer_header(&mut buffer)
            .map_err(device_error)?;
        let Some(end) = header
            .checked_add(frame.len())
            .filter(|&end| end <= BUFFER_LEN)
        else {
            return Err(NetError::TooLong(frame.len()));
        };
        buffer[header..end].copy_from_slice(frame);
        buffer.truncate(end);
        // SAFETY: `buffer` goes into `sending` and is untouched until
        // `reclaim` pops its token with the same buffer.
        let token = unsafe { self.raw.transmit_begin(&buffer) }.map_err(device_error)?;
        if let Err(buffer) = self.sending.insert(token, buffer) {
            log::error!("dom0: virtio-net: transmit token {token} reused; buffer leaked");
            core::mem::forget(buffer);
        }
        self.sent += 1;
        Ok(())
    }

    /// Takes back every buffer the device has sent; returns how many.
    pub fn reclaim(&mut self) -> usize {
        let mut count = 0;
        while let Some(token) = self.raw.poll_transmit() {
            let Some(buffer) = self.sending.take(token) else {
                log::error!("dom0: virtio-net: device sent unknown token {token}");
                break;
            };
            // SAFETY: the buffer `send` handed over with this token.
            if unsafe { self.raw.transmit_complete(token, &buffer) }.is_err() {
                break;
            }
            count += 1;
        }
        count
    }

    /// Hands every frame that arrived to `sink` and reposts its buffer;
    /// returns how many.
    pub fn receive(&mut self, mut sink: impl FnMut(&[u8])) -> usize {
        let mut count = 0;
        while let Some(token) = self.raw.poll_receive() {
            let Some(mut buffer) = self.receiving.take(token) else {
                log::error!("dom0: virtio-net: device filled unknown token {token}");
                break;
            };
            // SAFETY: the buffer `post_receive` handed over with this token.
            match unsafe { self.raw.receive_complete(token, &mut buffer) } {
                Ok((header, length)) => {
                    if let Some(frame) = buffer.get(header..header + length) {
                        sink(frame);
                    }
                    self.received += 1;
                }
                Err(_) => log::warn!("dom0: virtio-net: a received frame was malformed"),
            }
            count += 1;
            if let Err(error) = self.post_receive(buffer) {
                log::warn!("dom0: virtio-net: reposting a receive buffer failed: {error}");
            }
        }
        count
    }
}
