//! Dom0's side of a front end's grants: `GNTTABOP_copy` between granted
//! pages and Dom0's own buffers, and ring memory reached through such
//! copies. Dom0 never maps a granted page, so nothing of a guest stays
//! mapped into Dom0 and a guest can be destroyed at any moment: a copy is
//! over when its hypercall returns.
//!
//! Dom0 is identity-mapped, so a buffer's address names its frame
//! (`DOMID_SELF`, gmfn = address / 4096).

use alloc::vec::Vec;
use core::sync::atomic::{Ordering, fence};

use blkback::{DomainId, GrantError, GrantRef, GuestPiece};
use xen_ring::{Barrier, RingMemory};
use xenolith_abi::grant_table::{GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF, GNTTABOP_COPY};
use xenolith_abi::hypercall::HypercallNumber;

const PAGE: usize = 4096;
/// Size of `struct gnttab_copy`.
const COPY_SIZE: usize = 40;

/// Which way a copy goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    FromGuest,
    ToGuest,
}

/// One `gnttab_copy` element: the guest's side names a grant, Dom0's a
/// frame of its own.
fn encode(
    direction: Direction,
    domain: DomainId,
    grant: GrantRef,
    guest_offset: u16,
    own_address: usize,
    length: u16,
) -> [u8; COPY_SIZE] {
    let mut element = [0u8; COPY_SIZE];
    let own_frame = (own_address / PAGE) as u64;
    let own_offset = (own_address % PAGE) as u16;
    let (guest_at, own_at, flags) = match direction {
        Direction::FromGuest => (0, 16, GNTCOPY_SOURCE_GREF),
        Direction::ToGuest => (16, 0, GNTCOPY_DEST_GREF),
    };
    element[guest_at..guest_at + 8].copy_from_slice(&u64::from(grant.0).to_le_bytes());
    element[guest_at + 8..guest_at + 10].copy_from_slice(&domain.0.to_le_bytes());
    element[guest_at + 10..guest_at + 12].copy_from_slice(&guest_offset.to_le_bytes());
    element[own_at..own_at + 8].copy_from_slice(&own_frame.to_le_bytes());
    element[own_at + 8..own_at + 10].copy_from_slice(&DomainId::SELF.0.to_le_bytes());
    element[own_at + 10..own_at + 12].copy_from_slice(&own_offset.to_le_bytes());
    element[32..34].copy_from_slice(&length.to_le_bytes());
    element[34..36].copy_from_slice(&flags.to_le_bytes());
    element
}

/// The elements copying `pieces`, in order, to or from the buffer at
/// `base` of `length` bytes; a piece crossing one of Dom0's page
/// boundaries becomes two elements. `None` if the pieces do not add up to
/// the buffer or a piece leaves its page.
fn plan(
    direction: Direction,
    domain: DomainId,
    pieces: &[GuestPiece],
    base: usize,
    length: usize,
) -> Option<(Vec<[u8; COPY_SIZE]>, Vec<GrantRef>)> {
    let mut elements = Vec::with_capacity(pieces.len() * 2);
    let mut grants = Vec::with_capacity(pieces.len() * 2);
    let mut position = 0usize;
    for piece in pieces {
        let piece_length = usize::from(piece.length);
        if usize::from(piece.offset) + piece_length > PAGE {
            return None;
        }
        let mut done = 0usize;
        while done < piece_length {
            let address = base.checked_add(position)?;
            let chunk = (piece_length - done).min(PAGE - address % PAGE);
            elements.push(encode(
                direction,
                domain,
                piece.grant,
                piece.offset + done as u16,
                address,
                chunk as u16,
            ));
            grants.push(piece.grant);
            done += chunk;
            position += chunk;
        }
    }
    (position == length).then_some((elements, grants))
}

/// Runs the copies; the first failing element's grant on error.
///
/// # Safety
/// Every element's own side must name bytes of a buffer the caller holds
/// (mutably, for copies from the guest) for the duration of the call.
unsafe fn run(elements: &mut [[u8; COPY_SIZE]], grants: &[GrantRef]) -> Result<(), GrantError> {
    let first = GrantError {
        grant: grants.first().copied().unwrap_or(GrantRef(0)),
    };
    if elements.is_empty() {
        return Ok(());
    }
    // SAFETY: the array is ours for the call; each element names a grant
    // (which the hypervisor checks) and bytes of a buffer the caller holds
    // as this function's contract says. The hypervisor writes only the
    // status fields and those bytes.
    let result = unsafe {
        xen_guest::raw::hypercall(
            HypercallNumber::GRANT_TABLE_OP,
            [
                u64::from(GNTTABOP_COPY),
                elements.as_mut_ptr() as u64,
                elements.len() as u64,
                0,
                0,
            ],
        )
    };
    if result != 0 {
        return Err(first);
    }
    for (element, &grant) in elements.iter().zip(grants) {
        if i16::from_le_bytes([element[36], element[37]]) != 0 {
            return Err(GrantError { grant });
        }
    }
    Ok(())
}

/// Dom0's buffers must lie in its identity map (the first 4 GiB).
fn addressable(base: usize, length: usize) -> bool {
    base.checked_add(length).is_some_and(|end| end <= 1 << 32)
}

/// Copies granted pieces of `domain` into `buffer` (their total length).
pub fn copy_from_guest(
    domain: DomainId,
    pieces: &[GuestPiece],
    buffer: &mut [u8],
) -> Result<(), GrantError> {
    let base = buffer.as_mut_ptr() as usize;
    let failed = GrantError {
        grant: pieces.first().map_or(GrantRef(0), |piece| piece.grant),
    };
    if !addressable(base, buffer.len()) {
        return Err(failed);
    }
    let (mut elements, grants) =
        plan(Direction::FromGuest, domain, pieces, base, buffer.len()).ok_or(failed)?;
    // SAFETY: the elements name bytes of `buffer`, borrowed mutably here.
    unsafe { run(&mut elements, &grants) }
}

/// Copies `data` out to granted pieces of `domain` (their total length).
pub fn copy_to_guest(
    domain: DomainId,
    pieces: &[GuestPiece],
    data: &[u8],
) -> Result<(), GrantError> {
    let base = data.as_ptr() as usize;
    let failed = GrantError {
        grant: pieces.first().map_or(GrantRef(0), |piece| piece.grant),
    };
    if !addressable(base, data.len()) {
        return Err(failed);
    }
    let (mut elements, grants) =
        plan(Direction::ToGuest, domain, pieces, base, data.len()).ok_or(failed)?;
    // SAFETY: the elements name bytes of `data`, which the hypervisor only
    // reads; borrowed here for the call.
    unsafe { run(&mut elements, &grants) }
}

/// Pieces covering `[offset, offset + length)` of a ring made of the
/// granted `pages`; `None` if the range leaves the ring.
fn ring_pieces(pages: &[GrantRef], offset: usize, length: usize) -> Option<Vec<GuestPiece>> {
    let end = offset.checked_add(length)?;
    if end > pages.len() * PAGE {
        return None;
    }
    let mut pieces = Vec::new();
    let mut at = offset;
    while at < end {
        let page = *pages.get(at / PAGE)?;
        let chunk = (end - at).min(PAGE - at % PAGE);
        pieces.push(GuestPiece {
            grant: page,
            offset: (at % PAGE) as u16,
            length: chunk as u16,
        });
        at += chunk;
    }
    Some(pieces)
}

/// A front end's ring pages, read and written by grant copy. Each copy is
/// a hypercall, which orders everything before it against everything
/// after: the barriers need only stop the compiler.
#[derive(Debug)]
pub struct GrantedRing {
    domain: DomainId,
    pages: Vec<GrantRef>,
    /// Copies that failed (the front end revoked a ring page).
    pub failures: u64,
    /// Copies made (each a hypercall), reads included.
    copies: core::cell::Cell<u64>,
}

impl GrantedRing {
    /// The ring made of `pages` of `domain`, after checking that each can
    /// be copied from.
    pub fn new(domain: DomainId, pages: &[GrantRef]) -> Result<Self, GrantError> {
        let mut probe = [0u8; 4];
        for &grant in pages {
            let piece = GuestPiece {
                grant,
                offset: 0,
                length: 4,
            };
            copy_from_guest(domain, &[piece], &mut probe)?;
        }
        Ok(Self {
            domain,
            pages: pages.to_vec(),
            failures: 0,
            copies: core::cell::Cell::new(0),
        })
    }

    /// Copies made to or from the ring so far, each a hypercall.
    pub fn copies(&self) -> u64 {
        self.copies.get()
    }
}

impl RingMemory for GrantedRing {
    fn size(&self) -> usize {
        self.pages.len() * PAGE
    }

    fn read(&self, offset: usize, buffer: &mut [u8]) {
        self.copies.set(self.copies.get().saturating_add(1));
        let copied = ring_pieces(&self.pages, offset, buffer.len())
            .is_some_and(|pieces| copy_from_guest(self.domain, &pieces, buffer).is_ok());
        if !copied {
            // A revoked page reads as zeroes; the ring checks catch it.
            buffer.fill(0);
        }
    }

    fn write(&mut self, offset: usize, data: &[u8]) {
        self.copies.set(self.copies.get().saturating_add(1));
        let copied = ring_pieces(&self.pages, offset, data.len())
            .is_some_and(|pieces| copy_to_guest(self.domain, &pieces, data).is_ok());
        if !copied {
            self.failures += 1;
        }
    }

    fn barrier(&mut self, kind: Barrier) {
        match kind {
            Barrier::Read | Barrier::Write => core::sync::atomic::compiler_fence(Ordering::SeqCst),
            Barrier::Full => fence(Ordering::SeqCst),
        }
    }

    /// The writes and the read as one `GNTTABOP_copy` (the hypervisor runs
    /// its elements in order, fenced): a third of the hypercalls of a
    /// publish.
    fn write_then_read(
        &mut self,
        writes: &[(usize, &[u8])],
        read_offset: usize,
        buffer: &mut [u8],
    ) {
        self.copies.set(self.copies.get().saturating_add(1));
        let mut elements = Vec::new();
        let mut grants = Vec::new();
        let mut planned = true;
        for (offset, data) in writes {
            let base = data.as_ptr() as usize;
            match ring_pieces(&self.pages, *offset, data.len())
                .filter(|_| addressable(base, data.len()))
                .and_then(|pieces| plan(Direction::ToGuest, self.domain, &pieces, base, data.len()))
            {
                Some((more, refs)) => {
                    elements.extend(more);
                    grants.extend(refs);
                }
                None => planned = false,
            }
        }
        let base = buffer.as_mut_ptr() as usize;
        match ring_pieces(&self.pages, read_offset, buffer.len())
            .filter(|_| addressable(base, buffer.len()))
            .and_then(|pieces| {
                plan(
                    Direction::FromGuest,
                    self.domain,
                    &pieces,
                    base,
                    buffer.len(),
                )
            }) {
            Some((more, refs)) => {
                elements.extend(more);
                grants.extend(refs);
            }
            None => planned = false,
        }
        // SAFETY: the elements name bytes of `writes`' slices (read only)
        // and of `buffer` (borrowed mutably here), all held for the call.
        let copied = planned && unsafe { run(&mut elements, &grants) }.is_ok();
        fence(Ordering::SeqCst);
        if !copied {
            // As `read` and `write` do on failure: a revoked page reads as
            // zeroes and counts as a failed copy.
            self.failures += 1;
            buffer.fill(0);
        }
    }
}

/// [`blkback::Grants`] for Dom0.
#[derive(Debug, Default)]
pub struct CopyGrants;

impl blkback::Grants for CopyGrants {
    type RingMemory = GrantedRing;

    fn map_ring(
        &mut self,
        domain: DomainId,
        grants: &[GrantRef],
    ) -> Result<GrantedRing, GrantError> {
        GrantedRing::new(domain, grants)
    }

    fn unmap_ring(&mut self, _memory: GrantedRing) {}

    fn copy_from_guest(
        &mut self,
        domain: DomainId,
        pieces: &[GuestPiece],
        buffer: &mut [u8],
    ) -> Result<(), GrantError> {
        copy_from_guest(domain, pieces, buffer)
    }

    fn copy_to_guest(
        &mut self,
        domain: DomainId,
        pieces: &[GuestPiece],
        data: &[u8],
    ) -> Result<(), GrantError> {
        copy_to_guest(domain, pieces, data)
    }
}
