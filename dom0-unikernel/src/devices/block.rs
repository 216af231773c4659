//! The disk: virtio-blk on virtio-drivers' transport and virtqueue, with
//! up to [`QUEUE_SIZE`] requests in flight (indirect descriptors: one
//! queue slot each). Callers hand over owned buffers with [`submit`],
//! ring the doorbell once per batch with [`kick`], and collect finished
//! requests with [`complete`] after the disk's interrupt — nothing waits
//! inside. (virtio-drivers' own `VirtIOBlk` has a fixed queue of 16.)
//!
//! [`submit`]: BlockDevice::submit
//! [`kick`]: BlockDevice::kick
//! [`complete`]: BlockDevice::complete

use alloc::boxed::Box;
use alloc::vec::Vec;

use dom0::virtio_blk::{self, BlockError, InFlight, Operation};
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::{DeviceStatus, Transport};

use super::hal::Dom0Hal;
use super::msix::MsixTransport;

/// Descriptors in the request queue; with indirect descriptors, requests.
pub const QUEUE_SIZE: usize = 128;
const QUEUE: u16 = 0;
const FEATURE_READ_ONLY: u64 = 1 << 5;
const FEATURE_FLUSH: u64 = 1 << 9;
const FEATURE_INDIRECT: u64 = 1 << 28;
const FEATURE_EVENT_INDEX: u64 = 1 << 29;
const FEATURE_VERSION_1: u64 = 1 << 32;

/// One request: what to do, where, and the buffer (read into, or written
/// from; empty for a flush). `tag` comes back in the completion.
#[derive(Debug)]
pub struct Request {
    pub tag: u64,
    pub operation: Operation,
    pub sector: u64,
    pub buffer: Vec<u8>,
}

/// A finished request, with its buffer back.
#[derive(Debug)]
pub struct Completion {
    pub tag: u64,
    pub operation: Operation,
    pub sector: u64,
    pub buffer: Vec<u8>,
    pub result: Result<(), BlockError>,
}

/// A request the device owns: header, data and status stay where they are
/// (heap) until the device gives the descriptor back.
struct Pending {
    request: Request,
    header: Box<[u8; 16]>,
    status: Box<[u8; 1]>,
}

/// The virtio-blk device.
pub struct BlockDevice {
    transport: MsixTransport,
    queue: VirtQueue<Dom0Hal, QUEUE_SIZE>,
    capacity: u64,
    read_only: bool,
    flush: bool,
    in_flight: InFlight<Pending>,
    /// Requests added since the last doorbell.
    unannounced: usize,
}

fn queue_error(error: virtio_drivers::Error) -> BlockError {
    BlockError::Queue(match error {
        virtio_drivers::Error::QueueFull => return BlockError::QueueFull,
        virtio_drivers::Error::NotReady => "not ready",
        virtio_drivers::Error::InvalidParam => "invalid parameter",
        virtio_drivers::Error::DmaError => "no DMA memory",
        _ => "error",
    })
}

impl BlockDevice {
    /// Negotiates features, sets the queue up and starts the device.
    pub fn new(mut transport: MsixTransport) -> Result<Self, virtio_drivers::Error> {
        transport.set_status(DeviceStatus::empty());
        transport.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
        let offered = transport.read_device_features();
        let wanted = FEATURE_READ_ONLY
            | FEATURE_FLUSH
            | FEATURE_INDIRECT
            | FEATURE_EVENT_INDEX
            | FEATURE_VERSION_1;
        let features = offered & wanted;
        transport.write_driver_features(features);
        transport.set_status(
            DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK,
        );
        if !transport.get_status().contains(DeviceStatus::FEATURES_OK) {
            transport.set_status(DeviceStatus::FAILED);
            return Err(virtio_drivers::Error::Unsupported);
        }
        let capacity = transport.read_consistent(|| {
            let low: u32 = transport.read_config_space(0)?;
            let high: u32 = transport.read_config_space(4)?;
            Ok(u64::from(high) << 32 | u64::from(low))
        })?;
        let queue = VirtQueue::new(
            &mut transport,
            QUEUE,
            features & FEATURE_INDIRECT != 0,
            features & FEATURE_EVENT_INDEX != 0,
        )?;
        transport.finish_init();
        Ok(Self {
            transport,
            queue,
            capacity,
            read_only: features & FEATURE_READ_ONLY != 0,
            flush: features & FEATURE_FLUSH != 0,
            in_flight: InFlight::new(QUEUE_SIZE),
            unannounced: 0,
        })
    }

    /// Size in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Whether the device has a write cache that flushes empty (without
    /// the feature it writes through).
    pub fn has_flush(&self) -> bool {
        self.flush
    }

    /// Requests in flight now, and the most there ever were.
    pub fn in_flight(&self) -> (usize, usize) {
        (self.in_flight.len(), self.in_flight.most())
    }

    /// Queues `request` for the device (announced at the next [`kick`]).
    /// A full queue or a bad request gives the request back: back-pressure,
    /// nothing is lost.
    ///
    /// [`kick`]: Self::kick
    pub fn submit(&mut self, request: Request) -> Result<(), (Request, BlockError)> {
        let length = request.buffer.len();
        if let Err(error) = virtio_blk::check(
            request.operation,
            request.sector,
            length,
            self.capacity,
            self.read_only,
        ) {
            return Err((request, error));
        }
        if request.operation == Operation::Flush && !self.flush {
            // Without the flush feature the device writes through.
            return Err((request, BlockError::Unsupported));
        }
        let mut pending = Pending {
            header: Box::new(virtio_blk::header(request.operation, request.sector)),
            status: Box::new([0xff]),
            request,
        };
        // SAFETY: header, buffer and status are heap memory `pending`
        // owns; `pending` goes into `in_flight` and none of the three is
        // touched until `complete` pops this token with the same buffers.
        let token = unsafe {
            let Pending {
                request,
                header,
                status,
            } = &mut pending;
            let header: &[u8] = &header[..];
            match request.operation {
                Operation::Read => self
                    .queue
                    .add(&[header], &mut [&mut request.buffer[..], &mut status[..]]),
                Operation::Write => self
                    .queue
                    .add(&[header, &request.buffer[..]], &mut [&mut status[..]]),
                Operation::Flush => self.queue.add(&[header], &mut [&mut status[..]]),
            }
        };
        let token = match token {
            Ok(token) => token,
            Err(error) => return Err((pending.request, queue_error(error))),
        };
        if let Err(pending) = self.in_flight.insert(token, pending) {
            // The queue handed out a token still in use: keep the buffers
            // alive for good rather than let the device write freed memory.
            log::error!("dom0: virtio-blk: token {token} reused; request leaked");
            core::mem::forget(pending);
        }
        self.unannounced += 1;
        Ok(())
    }

    /// Tells the device about the requests submitted since the last kick
    /// (one doorbell write for the batch, unless the device asked for none).
    pub fn kick(&mut self) {
        if self.unannounced > 0 && self.queue.should_notify() {
            self.transport.notify(QUEUE);
        }
        self.unannounced = 0;
    }

    /// Hands every finished request to `sink`; returns how many.
    pub fn complete(&mut self, mut sink: impl FnMut(Completion)) -> usize {
        let mut count = 0;
        while let Some(token) = self.queue.peek_used() {
            let Some(mut pending) = self.in_flight.take(token) else {
                log::error!("dom0: virtio-blk: device completed unknown token {token}");
                break;
            };
            let Pending {
                request,
                header,
                status,
            } = &mut pending;
            let header: &[u8] = &header[..];
            // SAFETY: the same buffers `submit` added under this token.
            let popped = unsafe {
                match request.operation {
                    Operation::Read => self.queue.pop_used(
                        token,
                        &[header],
                        &mut [&mut request.buffer[..], &mut status[..]],
                    ),
                    Operation::Write => self.queue.pop_used(
                        token,
                        &[header, &request.buffer[..]],
                        &mut [&mut status[..]],
                    ),
                    Operation::Flush => {
                        self.queue
                            .pop_used(token, &[header], &mut [&mut status[..]])
                    }
                }
            };
            let result = match popped {
                Ok(_) => virtio_blk::status(pending.status[0]),
                Err(error) => Err(queue_error(error)),
            };
            let Pending { request, .. } = pending;
            sink(Completion {
                tag: request.tag,
                operation: request.operation,
                sector: request.sector,
                buffer: request.buffer,
                result,
            });
            count += 1;
        }
        count
    }
}
