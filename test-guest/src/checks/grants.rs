//! Grant tables, version 1, within one guest: sizes and version, where
//! frame 0 is, copies between our own frames, and a grant to ourselves
//! mapped at a hole (Xen allows a domain to map its own grants).

use xen_guest::grant_table::{self, CopyEnd, GTF_READING, GTF_WRITING};
use xen_guest::{DomainId, FrameSlot, GrantRef, GuestFrame, XenError};

use super::{Context, HOLE_SELF};
use crate::report::{Detail, Outcome, ensure, expect_error, fail, grant_ok, ok};

/// The reference of the grant to ourselves (8 and up are free).
const SELF_GREF: GrantRef = GrantRef(9);
/// The reference of the read-only grant copied from.
const COPY_GREF: GrantRef = GrantRef(10);

/// The byte at `offset` of the pattern a page is filled with.
fn pattern(seed: u8, offset: usize) -> u8 {
    (offset as u8).wrapping_mul(seed).wrapping_add(seed >> 1)
}

fn fill(page: &FrameSlot, seed: u8) {
    for offset in 0..xen_guest::PAGE_SIZE {
        page.store(offset, pattern(seed, offset));
    }
}

/// The first offset in `range` where `page` differs from `expected`.
fn first_difference(
    page: &FrameSlot,
    range: core::ops::Range<usize>,
    expected: impl Fn(usize) -> u8,
) -> Option<(usize, u8, u8)> {
    range.into_iter().find_map(|offset| {
        let found = page.load::<u8>(offset).unwrap_or(0);
        let wanted = expected(offset);
        (found != wanted).then_some((offset, found, wanted))
    })
}

pub fn query_size(_context: &mut Context) -> Outcome {
    let size = grant_ok("query_size", grant_table::query_size(DomainId::SELF))?;
    ensure!(
        size.frames >= 1,
        "{} frames after mapping frame 0",
        size.frames
    );
    ensure!(
        size.max_frames >= size.frames,
        "max_nr_frames {} below nr_frames {}",
        size.max_frames,
        size.frames
    );
    Ok(())
}

pub fn version(_context: &mut Context) -> Outcome {
    let set = ok("set_version(1)", grant_table::set_version(1))?;
    ensure!(set == 1, "set_version(1) left version {set}");
    let got = ok("get_version", grant_table::get_version(DomainId::SELF))?;
    ensure!(got == 1, "get_version says {got}");
    expect_error(
        "set_version(3)",
        grant_table::set_version(3),
        &[XenError::EINVAL],
    )
}

pub fn setup_table(context: &mut Context) -> Outcome {
    let expected = context.pages()?.grant_table.frame();
    let mut frames = [GuestFrame(0)];
    grant_ok(
        "setup_table(self, 1)",
        grant_table::setup_table(DomainId::SELF, &mut frames),
    )?;
    ensure!(
        frames[0] == expected,
        "frame 0 reported at gfn {:#x}, mapped at {:#x}",
        frames[0].0,
        expected.0
    );
    Ok(())
}

pub fn copy_local(context: &mut Context) -> Outcome {
    let pages = context.pages()?;
    fill(&pages.copy_source, 7);
    pages.copy_dest.fill(0);
    grant_ok(
        "copy(own frame +16 -> own frame +32, 64 bytes)",
        grant_table::copy_one(
            CopyEnd::own(pages.copy_source, 16),
            CopyEnd::own(pages.copy_dest, 32),
            64,
        ),
    )?;
    if let Some((offset, found, wanted)) =
        first_difference(&pages.copy_dest, 0..160, |offset| match offset {
            32..96 => pattern(7, offset - 16),
            _ => 0,
        })
    {
        fail!("destination byte {offset} is {found:#x}, expected {wanted:#x}");
    }
    Ok(())
}

pub fn self_map(context: &mut Context) -> Outcome {
    let (domain, grants, hole) = (
        context.domain()?,
        context.grants()?,
        context.hole(HOLE_SELF)?,
    );
    let page = context.pages()?.self_grant;
    fill(&page, 13);
    ensure!(
        grants.grant_access(SELF_GREF, domain, page.frame(), false),
        "could not write grant entry {}",
        SELF_GREF.0
    );
    let handle = grant_ok(
        "map_grant_ref(own gref 9)",
        grant_table::map_grant(&hole, SELF_GREF, domain, false),
    )?;
    let mapped = check_mapping(&grants, &hole, &page);
    let unmapped = grant_ok("unmap_grant_ref", grant_table::unmap_grant(&hole, handle));
    mapped?;
    unmapped?;
    let flags = grants.entry(SELF_GREF).map_or(0, |entry| entry.flags);
    ensure!(
        flags & (GTF_READING | GTF_WRITING) == 0,
        "flags {flags:#x} still in use after unmap"
    );
    ensure!(
        grants.end_access(SELF_GREF).is_ok(),
        "could not revoke gref {} after unmap",
        SELF_GREF.0
    );
    Ok(())
}

/// While our own page is mapped at `hole`: flags in use, same contents,
/// and writes through the mapping land in the page.
fn check_mapping(
    grants: &grant_table::GrantTableFrame,
    hole: &FrameSlot,
    page: &FrameSlot,
) -> Result<(), Detail> {
    let flags = grants.entry(SELF_GREF).map_or(0, |entry| entry.flags);
    ensure!(
        flags & (GTF_READING | GTF_WRITING) == GTF_READING | GTF_WRITING,
        "flags {flags:#x} while mapped writable (reading|writing expected)"
    );
    if let Some((offset, found, wanted)) =
        first_difference(hole, 0..256, |offset| pattern(13, offset))
    {
        fail!("mapping byte {offset} is {found:#x}, the page has {wanted:#x}");
    }
    hole.store::<u8>(100, 0xee);
    let through = page.load::<u8>(100);
    ensure!(
        through == Some(0xee),
        "a write through the mapping did not reach the page ({through:?})"
    );
    Ok(())
}

pub fn copy_from_grant(context: &mut Context) -> Outcome {
    let (domain, grants) = (context.domain()?, context.grants()?);
    let pages = context.pages()?;
    fill(&pages.copy_source, 29);
    pages.copy_dest.fill(0);
    ensure!(
        grants.grant_access(COPY_GREF, domain, pages.copy_source.frame(), true),
        "could not write grant entry {}",
        COPY_GREF.0
    );
    let copied = grant_ok(
        "copy(own read-only gref 10 -> own frame, 128 bytes)",
        grant_table::copy_one(
            CopyEnd::Grant {
                gref: COPY_GREF,
                domid: domain,
                offset: 0,
            },
            CopyEnd::own(pages.copy_dest, 0),
            128,
        ),
    );
    let revoked = grants.end_access(COPY_GREF);
    copied?;
    if let Some((offset, found, wanted)) = first_difference(&pages.copy_dest, 0..160, |offset| {
        if offset < 128 { pattern(29, offset) } else { 0 }
    }) {
        fail!("destination byte {offset} is {found:#x}, expected {wanted:#x}");
    }
    ensure!(
        revoked.is_ok(),
        "could not revoke gref {} after the copy: {revoked:?}",
        COPY_GREF.0
    );
    Ok(())
}
