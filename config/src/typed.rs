//! Reading typed values out of a [`Document`], with errors that point at
//! the value. Shared by the domain and appliance configs.

use alloc::string::String;
use alloc::vec::Vec;

use crate::document::{Document, Value, ValueKind};
use crate::error::{Error, ErrorKind, Warning, WarningKind, push_warning};
use crate::lexer::parse_number;
use crate::position::Position;

/// The text of a single value (string or number), and where it is.
pub(crate) fn text<'d>(
    document: &'d Document,
    key: &'static str,
) -> Result<Option<(&'d str, Position)>, Error> {
    let Some(setting) = document.get(key) else {
        return Ok(None);
    };
    match setting.value.as_text() {
        Some(text) => Ok(Some((text, setting.value.span.start))),
        None => Err(Error::at(
            setting.value.span.start,
            ErrorKind::ExpectedSingleValue { key },
        )),
    }
}

/// Like [`text`], refusing an empty string.
pub(crate) fn non_empty_text<'d>(
    document: &'d Document,
    key: &'static str,
) -> Result<Option<(&'d str, Position)>, Error> {
    match text(document, key)? {
        Some(("", position)) => Err(Error::at(position, ErrorKind::EmptyValue { key })),
        other => Ok(other),
    }
}

/// A number in `min..=max`. A quoted number is accepted, as in xl.
pub(crate) fn number(
    document: &Document,
    key: &'static str,
    min: u64,
    max: u64,
) -> Result<Option<(u64, Position)>, Error> {
    let Some(setting) = document.get(key) else {
        return Ok(None);
    };
    let position = setting.value.span.start;
    let value = match &setting.value.kind {
        ValueKind::Number(number) => number.value,
        ValueKind::String(text) => parse_number(text).map_err(|_| {
            Error::at(
                position,
                ErrorKind::NotANumber {
                    key,
                    text: text.clone(),
                },
            )
        })?,
        ValueKind::List(_) => {
            return Err(Error::at(position, ErrorKind::ExpectedSingleValue { key }));
        }
    };
    if value < min || value > max {
        return Err(Error::at(
            position,
            ErrorKind::OutOfRange {
                key,
                value,
                min,
                max,
            },
        ));
    }
    Ok(Some((value, position)))
}

/// The items of a list, each required to be a string or number, with
/// their positions.
pub(crate) fn text_list<'d>(
    document: &'d Document,
    key: &'static str,
) -> Result<Vec<(&'d str, Position)>, Error> {
    let Some(setting) = document.get(key) else {
        return Ok(Vec::new());
    };
    let Some(items) = setting.value.as_list() else {
        return Err(Error::at(
            setting.value.span.start,
            ErrorKind::ExpectedList { key },
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item): (usize, &Value)| match item.as_text() {
            Some(text) => Ok((text, item.span.start)),
            None => Err(Error::at(
                item.span.start,
                ErrorKind::ExpectedStringItem { key, index },
            )),
        })
        .collect()
}

/// One of a fixed set of words.
pub(crate) fn choice<T: Copy>(
    document: &Document,
    key: &'static str,
    choices: &[(&str, T)],
    allowed: &'static str,
) -> Result<Option<(T, Position)>, Error> {
    let Some((word, position)) = text(document, key)? else {
        return Ok(None);
    };
    match choices.iter().find(|(name, _)| *name == word) {
        Some((_, value)) => Ok(Some((*value, position))),
        None => Err(Error::at(
            position,
            ErrorKind::UnknownChoice {
                key,
                value: String::from(word),
                allowed,
            },
        )),
    }
}

/// The document's own warnings, then one for each key not in `known`.
pub(crate) fn warnings_with_unknown_keys(document: &Document, known: &[&str]) -> Vec<Warning> {
    let mut warnings = Vec::new();
    for warning in document.warnings() {
        push_warning(&mut warnings, warning.clone());
    }
    for setting in document.settings() {
        if !known.contains(&setting.key.as_str()) {
            push_warning(
                &mut warnings,
                Warning {
                    position: Some(setting.key_span.start),
                    kind: WarningKind::UnknownKey {
                        key: setting.key.clone(),
                    },
                },
            );
        }
    }
    warnings
}

/// Whether `name` is 1 to 64 characters from `[A-Za-z0-9._-]` plus `extra`.
pub(crate) fn is_plain_name(name: &str, extra: &[char]) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|character| {
            character.is_ascii_alphanumeric()
                || matches!(character, '.' | '_' | '-')
                || extra.contains(&character)
        })
}
