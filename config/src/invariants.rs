//! The promises a successful parse keeps, as checks. The unit tests and the
//! fuzz target run them on every config they manage to parse, so a broken
//! promise is found whichever of them finds the input.

use alloc::string::ToString;

use crate::appliance::{ApplianceConfig, MAX_API_TOKEN_BYTES, MIN_API_TOKEN_BYTES, NetworkConfig};
use crate::disk::{DiskFormat, is_valid_vdev};
use crate::document::{Document, Value, ValueKind};
use crate::domain::{DomainConfig, GuestType, MAX_MEMORY_MIB, MAX_VCPUS, check_name};
use crate::lexer::parse_number;
use crate::limits::{
    MAX_COMMAND_LINE_BYTES, MAX_FILE_BYTES, MAX_KEY_BYTES, MAX_LIST_DEPTH, MAX_LIST_ITEMS,
    MAX_SETTINGS, MAX_STRING_BYTES, MAX_WARNINGS,
};
use crate::position::{Position, Span};

/// A broken promise, named.
pub type Broken = &'static str;

fn check(condition: bool, broken: Broken) -> Result<(), Broken> {
    if condition { Ok(()) } else { Err(broken) }
}

fn check_position(position: Position, text_length: usize) -> Result<(), Broken> {
    check(position.line >= 1, "line 0")?;
    check(position.column >= 1, "column 0")?;
    check(
        position.offset <= text_length,
        "position past the end of the text",
    )
}

fn check_span(span: Span, text_length: usize) -> Result<(), Broken> {
    check_position(span.start, text_length)?;
    check_position(span.end, text_length)?;
    check(
        span.start.offset < span.end.offset,
        "empty or reversed span",
    )?;
    check(
        span.start.line <= span.end.line,
        "span ends on an earlier line",
    )
}

fn check_value(value: &Value, depth: usize, text_length: usize) -> Result<(), Broken> {
    check_span(value.span, text_length)?;
    match &value.kind {
        ValueKind::String(text) => {
            check(text.len() <= MAX_STRING_BYTES, "string over the limit")?;
            check(!text.contains('\0'), "NUL in a string")
        }
        ValueKind::Number(number) => check(
            parse_number(&number.text) == Ok(number.value),
            "number text and value disagree",
        ),
        ValueKind::List(items) => {
            check(depth < MAX_LIST_DEPTH, "list nested over the limit")?;
            check(items.len() <= MAX_LIST_ITEMS, "list over the limit")?;
            items
                .iter()
                .try_for_each(|item| check_value(item, depth + 1, text_length))
        }
    }
}

/// Checks a document parsed from a text of `text_length` bytes, including
/// that writing it back and parsing that gives the same settings.
pub fn check_document(document: &Document, text_length: usize) -> Result<(), Broken> {
    check(
        text_length <= MAX_FILE_BYTES,
        "accepted a file over the limit",
    )?;
    check(
        document.settings().len() <= MAX_SETTINGS,
        "settings over the limit",
    )?;
    check(
        document.warnings().len() <= MAX_WARNINGS,
        "warnings over the limit",
    )?;
    for (index, setting) in document.settings().iter().enumerate() {
        let key = setting.key.as_str();
        check(key.len() <= MAX_KEY_BYTES, "key over the limit")?;
        check(
            key.starts_with(|first: char| first.is_ascii_lowercase())
                && key.chars().all(|character| {
                    character.is_ascii_lowercase() || character.is_ascii_digit() || character == '_'
                }),
            "key with characters xl does not allow",
        )?;
        check(
            !document
                .settings()
                .iter()
                .skip(index + 1)
                .any(|later| later.key == setting.key),
            "key stored twice",
        )?;
        check_span(setting.key_span, text_length)?;
        check_value(&setting.value, 0, text_length)?;
    }
    let written = document.to_string();
    // Escapes and `, ` separators can make the written form longer than
    // the original; only a form within the limit must parse again.
    if written.len() <= MAX_FILE_BYTES {
        let again = Document::parse(&written).map_err(|_| "written form does not parse")?;
        check(
            again.settings().len() == document.settings().len(),
            "written form has other settings",
        )?;
        for (left, right) in document.settings().iter().zip(again.settings()) {
            check(left.key == right.key, "written form reorders keys")?;
            check(
                left.value.same_content(&right.value),
                "written form has other values",
            )?;
        }
    }
    Ok(())
}

/// Checks a guest config.
pub fn check_domain(config: &DomainConfig) -> Result<(), Broken> {
    check(check_name(&config.name).is_ok(), "invalid name accepted")?;
    check(config.memory.0 >= 1, "zero memory")?;
    check(config.memory <= config.max_memory, "memory above maxmem")?;
    check(
        config.max_memory.0 <= MAX_MEMORY_MIB,
        "maxmem over the limit",
    )?;
    check(config.vcpus >= 1, "zero vcpus")?;
    check(config.vcpus <= config.max_vcpus, "vcpus above maxvcpus")?;
    check(config.max_vcpus <= MAX_VCPUS, "maxvcpus over the limit")?;
    check(
        config.guest_type == GuestType::Hvm || config.kernel.is_some(),
        "PVH guest without a kernel",
    )?;
    check(
        config.ramdisk.is_none() || config.kernel.is_some(),
        "ramdisk without a kernel",
    )?;
    check(
        config
            .command_line
            .as_ref()
            .is_none_or(|line| line.len() <= MAX_COMMAND_LINE_BYTES),
        "command line over the limit",
    )?;
    for (index, vif) in config.vifs.iter().enumerate() {
        if let Some(mac) = vif.mac {
            check(!mac.is_multicast(), "multicast MAC accepted")?;
            check(
                !config
                    .vifs
                    .iter()
                    .skip(index + 1)
                    .any(|later| later.mac == Some(mac)),
                "duplicate MAC accepted",
            )?;
        }
        check(vif.mtu.is_none_or(|mtu| mtu >= 68), "MTU below 68")?;
    }
    for (index, disk) in config.disks.iter().enumerate() {
        check(is_valid_vdev(&disk.vdev), "invalid vdev accepted")?;
        check(
            !config
                .disks
                .iter()
                .skip(index + 1)
                .any(|later| later.vdev == disk.vdev),
            "duplicate vdev accepted",
        )?;
        check(
            matches!(
                disk.format,
                DiskFormat::Raw | DiskFormat::Qcow2 | DiskFormat::Empty
            ),
            "unsupported format accepted",
        )?;
        check(
            disk.cdrom || !disk.target.is_empty(),
            "disk without a target accepted",
        )?;
        check(
            disk.target.is_empty() == (disk.format == DiskFormat::Empty),
            "empty format and empty target disagree",
        )?;
    }
    check(
        config.warnings.len() <= MAX_WARNINGS,
        "warnings over the limit",
    )
}

/// Checks an appliance config.
pub fn check_appliance(config: &ApplianceConfig) -> Result<(), Broken> {
    if let NetworkConfig::Static { address, gateway } = config.network {
        check(
            (1..=32).contains(&address.prefix_length),
            "prefix length out of range",
        )?;
        if let Some(gateway) = gateway {
            check(address.contains(gateway), "gateway outside the subnet")?;
            check(gateway != address.address, "gateway is the address")?;
        }
    }
    if let Some(api) = &config.api {
        let token = api.token.as_str();
        check(
            (MIN_API_TOKEN_BYTES..=MAX_API_TOKEN_BYTES).contains(&token.len()),
            "token length out of range",
        )?;
        check(api.port != 0, "API port 0")?;
    }
    for (index, guest) in config.boot_guests.iter().enumerate() {
        check(!guest.is_empty() && guest.len() <= 64, "guest name length")?;
        check(
            !config
                .boot_guests
                .iter()
                .skip(index + 1)
                .any(|later| later == guest),
            "duplicate boot guest",
        )?;
    }
    check(
        !config.storage.volume_store.is_empty(),
        "empty volume store",
    )?;
    check(
        config.warnings.len() <= MAX_WARNINGS,
        "warnings over the limit",
    )
}

/// Runs every check that applies to `bytes`: the document's, and the
/// domain's and appliance's when those parse. Errors must carry positions
/// inside the text and print without panicking.
pub fn check_all(bytes: &[u8]) -> Result<(), Broken> {
    let document = match Document::parse_bytes(bytes) {
        Ok(document) => document,
        Err(error) => {
            if let Some(position) = error.position {
                check_position(position, bytes.len())?;
            }
            check(!error.to_string().is_empty(), "empty error message")?;
            return Ok(());
        }
    };
    check_document(&document, bytes.len())?;
    match DomainConfig::from_document(&document) {
        Ok(config) => check_domain(&config)?,
        Err(error) => {
            if let Some(position) = error.position {
                check_position(position, bytes.len())?;
            }
            check(!error.to_string().is_empty(), "empty error message")?;
        }
    }
    match ApplianceConfig::from_document(&document) {
        Ok(config) => check_appliance(&config)?,
        Err(error) => {
            if let Some(position) = error.position {
                check_position(position, bytes.len())?;
            }
            check(!error.to_string().is_empty(), "empty error message")?;
        }
    }
    Ok(())
}
