//! The two-guest exchange. The offering guest grants a page to the peer
//! at gref 8, fills it with a pattern and waits for the peer's event on
//! the port Dom0 allocated for it; the accepting guest binds that port,
//! maps the grant, checks the pattern, writes a reply, unmaps and sends
//! the event. Every wait is bounded.

use xen_guest::event_channel::{self, ChannelState};
use xen_guest::{DomainId, GrantRef, Port, grant_table};

use super::{Context, HOLE_PEER, MILLISECOND};
use crate::report::{Detail, Outcome, detail, ensure, fail, grant_ok, ok};

/// The grant reference the offer uses (the first after the reserved 8).
const OFFER_GREF: GrantRef = GrantRef(8);
/// Bytes of pattern the offer writes from offset 0.
const OFFER_LENGTH: usize = 2048;
/// Where the peer writes its reply, and how much.
const REPLY_OFFSET: usize = 2048;
const REPLY_LENGTH: usize = 256;
/// How long either side waits for the other.
const PEER_TIMEOUT: u64 = 30_000 * MILLISECOND;

fn offer_byte(offset: usize) -> u8 {
    (offset as u8).wrapping_mul(31).wrapping_add(7)
}

fn reply_byte(offset: usize) -> u8 {
    (offset as u8).wrapping_mul(17) ^ 0x5a
}

fn peer_and_port(context: &Context) -> Result<(DomainId, Port), Detail> {
    match (context.options.peer, context.options.port) {
        (Some(peer), Some(port)) => Ok((peer, port)),
        _ => Err(detail(format_args!("needs peer=<domid> port=<p>"))),
    }
}

pub fn offer(context: &mut Context) -> Outcome {
    let (peer, port) = peer_and_port(context)?;
    let (shared, grants) = (context.shared()?, context.grants()?);
    let page = context.pages()?.offer;
    let status = ok(
        "EVTCHNOP_status(port)",
        event_channel::status(DomainId::SELF, port),
    )?;
    match status.state {
        ChannelState::Unbound { remote } | ChannelState::Interdomain { remote, .. }
            if remote == peer => {}
        other => fail!("port {} is {other:?}, not a channel to d{}", port.0, peer.0),
    }
    page.fill(0);
    for offset in 0..OFFER_LENGTH {
        page.store(offset, offer_byte(offset));
    }
    shared.clear_pending(port);
    ensure!(
        grants.grant_access(OFFER_GREF, peer, page.frame(), false),
        "could not write grant entry {}",
        OFFER_GREF.0
    );
    if !context.wait_for_pending(port, PEER_TIMEOUT) {
        let flags = grants.entry(OFFER_GREF).map_or(0, |entry| entry.flags);
        let _ = grants.end_access(OFFER_GREF);
        fail!(
            "no event from d{} on port {} within 30 s (grant flags {flags:#x})",
            peer.0,
            port.0
        );
    }
    shared.clear_pending(port);
    let revoked = grants.end_access(OFFER_GREF);
    for offset in 0..REPLY_LENGTH {
        let found = page.load::<u8>(REPLY_OFFSET + offset).unwrap_or(0);
        ensure!(
            found == reply_byte(offset),
            "reply byte {offset} is {found:#x}, expected {:#x}",
            reply_byte(offset)
        );
    }
    ensure!(
        revoked.is_ok(),
        "gref {} still in use after the peer's event: {revoked:?}",
        OFFER_GREF.0
    );
    Ok(())
}

pub fn accept(context: &mut Context) -> Outcome {
    let (peer, port) = peer_and_port(context)?;
    let shared = context.shared()?;
    let hole = context.hole(HOLE_PEER)?;
    let local = ok(
        "bind_interdomain(peer, port)",
        context.retry(PEER_TIMEOUT, None, || {
            event_channel::bind_interdomain(peer, port)
        }),
    )?;
    // Binding raises the new port; that is not the peer speaking.
    shared.clear_pending(local);
    let handle = grant_ok(
        "map_grant_ref(peer gref 8) for 30 s",
        context.retry(PEER_TIMEOUT, Some(local), || {
            grant_table::map_grant(&hole, OFFER_GREF, peer, false)
        }),
    )?;
    let mismatch = (0..OFFER_LENGTH).find_map(|offset| {
        let found = hole.load::<u8>(offset).unwrap_or(0);
        (found != offer_byte(offset)).then_some((offset, found))
    });
    for offset in 0..REPLY_LENGTH {
        hole.store(REPLY_OFFSET + offset, reply_byte(offset));
    }
    let unmapped = grant_ok("unmap_grant_ref", grant_table::unmap_grant(&hole, handle));
    let sent = ok("send(local)", event_channel::send(local));
    if let Some((offset, found)) = mismatch {
        fail!(
            "offered byte {offset} is {found:#x}, expected {:#x}",
            offer_byte(offset)
        );
    }
    unmapped?;
    sent
}
