//! What a split-driver front end needs before it can misbehave: a small
//! synchronous xenstore client over the ring Dom0 serves (read, write,
//! directory; one request at a time), the first device of a class in our
//! `device/` directory, and the xenbus states of both ends. The hostile
//! front ends (`hostile_blk`, `hostile_net`) build on it. Every wait is
//! bounded.

use core::fmt::Write;

use arrayvec::{ArrayString, ArrayVec};
use xen_guest::hvm::{self, HvmParamIndex};
use xen_guest::{DomainId, FrameSlot, GrantRef, Port, event_channel};
use xenolith_abi::xenbus::XenbusState;

use super::rings::{HEADER_SIZE, REQUESTS, RESPONSES, XS_ERROR, XS_READ, XS_WRITE, message};
use super::{Context, MILLISECOND, POLL_SLICE, WAIT_ROUNDS_MAX};
use crate::report::{Detail, Outcome, detail, ensure, fail, ok};

/// `XS_DIRECTORY`.
const XS_DIRECTORY: u32 = 1;
/// `XS_RM`.
const XS_RM: u32 = 13;
/// How long one xenstore request may take.
const STORE_TIMEOUT: u64 = 10_000 * MILLISECOND;
/// How long the back end gets to reach a state.
pub const STATE_TIMEOUT: u64 = 30_000 * MILLISECOND;

/// A xenstore path or value (ours are short).
pub type Text = ArrayString<128>;

/// A reply's payload, as much as the client keeps.
type Payload = ArrayVec<u8, 512>;

/// Our end of the xenstore ring.
pub struct Store {
    page: FrameSlot,
    port: Port,
    next_request: u32,
}

/// Formats a path or value; too long a text is cut (and then not found).
pub fn text(args: core::fmt::Arguments<'_>) -> Text {
    let mut text = Text::new();
    let _ = text.write_fmt(args);
    text
}

impl Store {
    /// The ring from the HVM params Dom0 set.
    pub fn open(context: &Context) -> Result<Self, Detail> {
        let frame = ok(
            "get_param(STORE_PFN)",
            hvm::get_param(DomainId::SELF, HvmParamIndex::STORE_PFN),
        )?;
        let port = ok(
            "get_param(STORE_EVTCHN)",
            hvm::get_param(DomainId::SELF, HvmParamIndex::STORE_EVTCHN),
        )?;
        Ok(Self {
            page: super::rings::ring_page(context, frame, "xenstore")?,
            port: super::rings::ring_port(port, "xenstore")?,
            next_request: 0x4000,
        })
    }

    /// Sends one request and waits for its reply: (type, payload).
    fn request(
        &mut self,
        context: &Context,
        kind: u32,
        parts: &[&[u8]],
    ) -> Result<(u32, Payload), Detail> {
        let length: usize = parts.iter().map(|part| part.len()).sum();
        let mut body = ArrayVec::<u8, 384>::new();
        for part in parts {
            ensure!(
                body.try_extend_from_slice(part).is_ok(),
                "xenstore request of {length} bytes is too long for this client"
            );
        }
        self.next_request = self.next_request.wrapping_add(1);
        let request: ArrayVec<u8, 400> =
            message(kind, self.next_request, 0, body.len() as u32, &body);
        let mut sent = 0;
        let mut header = ArrayVec::<u8, HEADER_SIZE>::new();
        let mut payload = Payload::new();
        let mut expected: Option<(u32, usize)> = None;
        let shared = context.shared()?;
        let start = context.clock()?;
        for _ in 0..WAIT_ROUNDS_MAX {
            shared.clear_pending(self.port);
            if sent < request.len() {
                sent += REQUESTS.produce(&self.page, &request[sent..]);
            }
            let _ = event_channel::send(self.port);
            let mut buffer = [0u8; 256];
            let want = match expected {
                None => HEADER_SIZE - header.len(),
                Some((_, total)) => total.saturating_sub(payload.len()),
            }
            .min(buffer.len());
            let count = RESPONSES.consume(&self.page, &mut buffer[..want]);
            for &byte in &buffer[..count] {
                if header.len() < HEADER_SIZE {
                    let _ = header.try_push(byte);
                } else {
                    let _ = payload.try_push(byte);
                }
            }
            if expected.is_none() && header.len() == HEADER_SIZE {
                let word = |index: usize| {
                    u32::from_le_bytes([
                        header[index * 4],
                        header[index * 4 + 1],
                        header[index * 4 + 2],
                        header[index * 4 + 3],
                    ])
                };
                ensure!(
                    word(1) == self.next_request,
                    "xenstore answered request {:#x}, expected {:#x}",
                    word(1),
                    self.next_request
                );
                let total = word(3) as usize;
                ensure!(
                    total <= payload.capacity(),
                    "xenstore reply of {total} bytes is too long for this client"
                );
                expected = Some((word(0), total));
            }
            if let Some((kind, total)) = expected
                && payload.len() >= total
            {
                let _ = event_channel::send(self.port);
                return Ok((kind, payload));
            }
            if count == 0 {
                if context.clock()?.since(start) >= STORE_TIMEOUT {
                    break;
                }
                context.pause(Some(self.port), POLL_SLICE);
            }
        }
        fail!("no xenstore reply to request type {kind} within 10 s (sent {sent} bytes)")
    }

    /// The value at `path`, or `None` if it does not exist.
    pub fn read(&mut self, context: &Context, path: &str) -> Result<Option<Text>, Detail> {
        let (kind, payload) = self.request(context, XS_READ, &[path.as_bytes(), b"\0"])?;
        if kind == XS_ERROR {
            return Ok(None);
        }
        ensure!(kind == XS_READ, "READ {path} answered with type {kind}");
        let value = core::str::from_utf8(&payload)
            .map_err(|_| detail(format_args!("{path} holds non-UTF-8 bytes")))?;
        Ok(Some(text(format_args!("{}", value.trim_end_matches('\0')))))
    }

    /// The value at `path`, which must exist.
    pub fn require(&mut self, context: &Context, path: &str) -> Result<Text, Detail> {
        self.read(context, path)?
            .ok_or_else(|| detail(format_args!("{path} does not exist")))
    }

    /// Writes `value` at `path`.
    pub fn write(&mut self, context: &Context, path: &str, value: &str) -> Outcome {
        let (kind, payload) = self.request(
            context,
            XS_WRITE,
            &[path.as_bytes(), b"\0", value.as_bytes()],
        )?;
        ensure!(
            kind == XS_WRITE,
            "WRITE {path} = {value} refused: {:?}",
            core::str::from_utf8(&payload).unwrap_or("?")
        );
        Ok(())
    }

    /// Removes `path` (and what is under it); absent is fine.
    pub fn remove(&mut self, context: &Context, path: &str) -> Outcome {
        let (kind, payload) = self.request(context, XS_RM, &[path.as_bytes(), b"\0"])?;
        let absent = kind == XS_ERROR && payload.starts_with(b"ENOENT");
        ensure!(
            kind == XS_RM || absent,
            "RM {path} refused: {:?}",
            core::str::from_utf8(&payload).unwrap_or("?")
        );
        Ok(())
    }

    /// The first entry of directory `path`, if it has any.
    pub fn first_entry(&mut self, context: &Context, path: &str) -> Result<Option<Text>, Detail> {
        let (kind, payload) = self.request(context, XS_DIRECTORY, &[path.as_bytes(), b"\0"])?;
        if kind == XS_ERROR {
            return Ok(None);
        }
        ensure!(
            kind == XS_DIRECTORY,
            "DIRECTORY {path} answered with type {kind}"
        );
        let first = payload.split(|&byte| byte == 0).next().unwrap_or(&[]);
        if first.is_empty() {
            return Ok(None);
        }
        let name = core::str::from_utf8(first)
            .map_err(|_| detail(format_args!("{path} lists a non-UTF-8 name")))?;
        Ok(Some(text(format_args!("{name}"))))
    }

    /// The state at `directory/state` (Unknown when absent).
    pub fn state(&mut self, context: &Context, directory: &str) -> Result<XenbusState, Detail> {
        let path = text(format_args!("{directory}/state"));
        Ok(self
            .read(context, &path)?
            .map_or(XenbusState::Unknown, |value| XenbusState::parse(&value)))
    }

    /// Waits up to `timeout` ns until `directory`'s state satisfies
    /// `done`; the last state seen and whether it did.
    pub fn wait_state(
        &mut self,
        context: &Context,
        directory: &str,
        timeout: u64,
        done: impl Fn(XenbusState) -> bool,
    ) -> Result<(XenbusState, bool), Detail> {
        let start = context.clock()?;
        let mut state = XenbusState::Unknown;
        for _ in 0..WAIT_ROUNDS_MAX {
            state = self.state(context, directory)?;
            if done(state) {
                return Ok((state, true));
            }
            if context.clock()?.since(start) >= timeout {
                break;
            }
            context.pause(None, 20 * MILLISECOND);
        }
        Ok((state, false))
    }
}

/// The first device of `class` (`vbd`, `vif`) in our directory: its
/// front-end path, back-end path and back-end domain.
pub struct Device {
    pub frontend: Text,
    pub backend: Text,
    pub backend_domain: DomainId,
}

/// Finds the first device of `class` and waits for its back end to offer
/// itself (InitWait).
pub fn find_device(context: &Context, store: &mut Store, class: &str) -> Result<Device, Detail> {
    let domain = context.domain()?;
    let directory = text(format_args!("/local/domain/{}/device/{class}", domain.0));
    let Some(id) = store.first_entry(context, &directory)? else {
        fail!("no {class} device in {directory}: the config gave this guest none");
    };
    let frontend = text(format_args!("{directory}/{id}"));
    let backend = store.require(context, &text(format_args!("{frontend}/backend")))?;
    let backend_id = store.require(context, &text(format_args!("{frontend}/backend-id")))?;
    let backend_domain = backend_id
        .parse::<u16>()
        .map(DomainId)
        .map_err(|_| detail(format_args!("{frontend}/backend-id is {backend_id:?}")))?;
    let (state, ready) = store.wait_state(context, &backend, STATE_TIMEOUT, |state| {
        state == XenbusState::InitWait
    })?;
    ensure!(
        ready,
        "the back end {backend} is in state {state:?} after 30 s, not InitWait"
    );
    Ok(Device {
        frontend,
        backend,
        backend_domain,
    })
}

/// Writes `<frontend>/<key> = value`.
pub fn write_key(
    context: &Context,
    store: &mut Store,
    device: &Device,
    key: &str,
    value: core::fmt::Arguments<'_>,
) -> Outcome {
    let path = text(format_args!("{}/{key}", device.frontend));
    store.write(context, &path, &text(value))
}

/// Grants the back end of `device` each `(reference, page, read-only)`.
pub fn grant_pages(
    context: &Context,
    device: &Device,
    pages: &[(GrantRef, FrameSlot, bool)],
) -> Outcome {
    let grants = context.grants()?;
    for &(gref, page, readonly) in pages {
        ensure!(
            grants.grant_access(gref, device.backend_domain, page.frame(), readonly),
            "could not write grant entry {}",
            gref.0
        );
    }
    Ok(())
}

/// An unbound event channel for the back end of `device` (a `class`,
/// `vbd` or `vif`) to bind to.
pub fn backend_port(device: &Device, class: &str) -> Result<Port, Detail> {
    ok(
        &text(format_args!("alloc_unbound({class} back end)")),
        event_channel::alloc_unbound(DomainId::SELF, device.backend_domain),
    )
}

/// Waits for the back end to reach Connected after our keys and state.
pub fn wait_connected(context: &Context, store: &mut Store, device: &Device) -> Outcome {
    let (state, connected) =
        store.wait_state(context, &device.backend, STATE_TIMEOUT, |state| {
            state == XenbusState::Connected
        })?;
    ensure!(
        connected,
        "the back end is in state {state:?} after 30 s, not Connected"
    );
    Ok(())
}

/// Waits for the back end to give the device up (Closing or Closed), as
/// it must after a bad handshake or a misbehaving ring: (the state it is
/// in, whether it gave up).
pub fn wait_given_up(
    context: &Context,
    store: &mut Store,
    device: &Device,
) -> Result<(XenbusState, bool), Detail> {
    store.wait_state(context, &device.backend, STATE_TIMEOUT, |state| {
        matches!(state, XenbusState::Closing | XenbusState::Closed)
    })
}

/// Starts over as a reloaded front-end driver does: Closed (and the back
/// end must follow), `keys` removed, Initialising. `what` names the step
/// in errors.
pub fn start_over<'key>(
    context: &Context,
    store: &mut Store,
    device: &Device,
    what: &str,
    keys: impl IntoIterator<Item = &'key str>,
) -> Outcome {
    write_key(context, store, device, "state", format_args!("6"))?;
    let (reached, closed) = store.wait_state(context, &device.backend, STATE_TIMEOUT, |state| {
        state == XenbusState::Closed
    })?;
    ensure!(
        closed,
        "{what}: the back end is {reached:?} after 30 s, not Closed"
    );
    for key in keys {
        store.remove(context, &text(format_args!("{}/{key}", device.frontend)))?;
    }
    write_key(context, store, device, "state", format_args!("1"))
}

/// Takes the connected front end out of `slot` (the context's `block` or
/// `net`); `connect_check` names the check that fills it.
pub fn take_connected<Front>(
    slot: &mut Option<Front>,
    class: &str,
    connect_check: &str,
) -> Result<Front, Detail> {
    slot.take().ok_or_else(|| {
        detail(format_args!(
            "the {class} is not connected ({connect_check})"
        ))
    })
}

/// Runs `run` with the connected front end taken out of the context's
/// `slot` (see [`take_connected`]) and put back after, whatever `run`
/// returns.
pub fn with_connected<Front>(
    context: &mut Context,
    slot: fn(&mut Context) -> &mut Option<Front>,
    class: &str,
    connect_check: &str,
    run: impl FnOnce(&mut Front, &Context) -> Outcome,
) -> Outcome {
    let mut front = take_connected(slot(context), class, connect_check)?;
    let result = run(&mut front, context);
    *slot(context) = Some(front);
    result
}

/// Offers the back end `keys` (one bad handshake), switches to `state`
/// (Initialised or Connected, as the front end's driver would), and
/// checks the back end refuses: it must go to Closing or Closed rather
/// than connect. Then it starts over as a reloaded driver does (Closed,
/// the keys removed, Initialising) and the back end must offer itself
/// again (InitWait).
pub fn refused_handshake(
    context: &Context,
    store: &mut Store,
    device: &Device,
    what: &str,
    keys: &[(&str, &str)],
    state: XenbusState,
) -> Outcome {
    for (key, value) in keys {
        write_key(context, store, device, key, format_args!("{value}"))?;
    }
    write_key(
        context,
        store,
        device,
        "state",
        format_args!("{}", state.as_raw()),
    )?;
    let (reached, refused) = wait_given_up(context, store, device)?;
    ensure!(
        refused,
        "{what}: the back end is {reached:?} after 30 s, not Closing"
    );
    start_over(
        context,
        store,
        device,
        what,
        keys.iter().map(|(key, _)| *key),
    )?;
    let (reached, again) = store.wait_state(context, &device.backend, STATE_TIMEOUT, |state| {
        state == XenbusState::InitWait
    })?;
    ensure!(
        again,
        "{what}: after starting over the back end is {reached:?} after 30 s, not InitWait"
    );
    Ok(())
}

/// The free-running indices at the head of a shared ring page
/// (`io/ring.h`): req_prod, req_event, rsp_prod, rsp_event; entries from
/// byte 64.
pub mod ring {
    pub const REQUEST_PRODUCER: usize = 0;
    pub const REQUEST_EVENT: usize = 4;
    pub const RESPONSE_PRODUCER: usize = 8;
    pub const RESPONSE_EVENT: usize = 12;
    pub const ENTRIES: usize = 64;

    /// Entries a one-page ring of `slot`-byte entries holds: the largest
    /// power of two that fits.
    pub const fn capacity(slot: usize) -> u32 {
        let fits = (4096 - ENTRIES) / slot;
        1 << (usize::BITS - 1 - fits.leading_zeros())
    }
}

/// Zeroes a ring page and sets its event thresholds as `SHARED_RING_INIT`
/// and `FRONT_RING_INIT` do.
pub fn init_ring(page: &FrameSlot) {
    page.fill(0);
    page.store(ring::REQUEST_EVENT, 1u32);
    page.store(ring::RESPONSE_EVENT, 1u32);
}
