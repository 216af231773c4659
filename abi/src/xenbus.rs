//! Xenbus device states (`io/xenbus.h`), kept as a decimal string in a
//! device directory's `state` key by front and back ends alike.

/// `XenbusState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XenbusState {
    /// 0: no state yet (or a value no one understands).
    Unknown,
    /// 1: the toolstack created the device; its driver is starting.
    Initialising,
    /// 2: the back end waits for the front end's keys.
    InitWait,
    /// 3: the front end wrote its keys.
    Initialised,
    /// 4: working.
    Connected,
    /// 5: shutting down.
    Closing,
    /// 6: shut down.
    Closed,
    /// 7.
    Reconfiguring,
    /// 8.
    Reconfigured,
}

impl XenbusState {
    /// The number written to xenstore.
    pub const fn as_raw(self) -> u32 {
        match self {
            Self::Unknown => 0,
            Self::Initialising => 1,
            Self::InitWait => 2,
            Self::Initialised => 3,
            Self::Connected => 4,
            Self::Closing => 5,
            Self::Closed => 6,
            Self::Reconfiguring => 7,
            Self::Reconfigured => 8,
        }
    }

    /// The value to write in `state`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "0",
            Self::Initialising => "1",
            Self::InitWait => "2",
            Self::Initialised => "3",
            Self::Connected => "4",
            Self::Closing => "5",
            Self::Closed => "6",
            Self::Reconfiguring => "7",
            Self::Reconfigured => "8",
        }
    }

    /// Reads a `state` value (surrounding whitespace and a trailing NUL
    /// allowed); anything else is `Unknown`, as Linux's
    /// `xenbus_read_driver_state` makes it.
    pub fn parse(text: &str) -> Self {
        match text.trim_end_matches('\0').trim() {
            "1" => Self::Initialising,
            "2" => Self::InitWait,
            "3" => Self::Initialised,
            "4" => Self::Connected,
            "5" => Self::Closing,
            "6" => Self::Closed,
            "7" => Self::Reconfiguring,
            "8" => Self::Reconfigured,
            _ => Self::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_junk_is_unknown() {
        for raw in 0..=8u32 {
            let text = raw.to_string();
            let state = XenbusState::parse(&text);
            assert_eq!(state.as_raw(), raw);
            assert_eq!(state.as_str(), text);
        }
        assert_eq!(XenbusState::parse(" 4\0"), XenbusState::Connected);
        for junk in ["", "9", "04x", "-1", "x"] {
            assert_eq!(XenbusState::parse(junk), XenbusState::Unknown, "{junk:?}");
        }
    }
}
