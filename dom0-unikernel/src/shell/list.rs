//! `list` output in the layout of `xl list`, so the operator's eyes and
//! scripts written for xl read it unchanged.

extern crate alloc;

use alloc::string::String;
use core::fmt::{self, Write};

use arrayvec::ArrayString;
pub use mgmt_api::DomainState;
use xenolith_abi::domain::DomainId;

use super::NEWLINE;

/// xl's header line, tabs included.
const HEADER: &str = "Name                                        ID   Mem VCPUs\tState\tTime(s)";

/// xl pads names to this width; longer names push the other columns right
/// rather than being cut.
const NAME_WIDTH: usize = 40;

/// One line of `list`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainRow<'a> {
    /// The domain's name (`Domain-0` for Dom0, as in xl).
    pub name: &'a str,
    /// Its id.
    pub id: DomainId,
    /// Memory it was given, in MiB.
    pub memory_mib: u64,
    /// Online virtual CPUs.
    pub vcpus: u32,
    /// xl's state flags.
    pub state: DomainState,
    /// CPU time used so far, in nanoseconds (shown in seconds).
    pub cpu_time_ns: u64,
}

/// Writes the `list` table: xl's header, then one `NEWLINE`-terminated
/// line per row, in the order given.
pub fn write_list(rows: &[DomainRow<'_>], output: &mut impl Write) -> fmt::Result {
    write!(output, "{HEADER}{NEWLINE}")?;
    for row in rows {
        write_name(row.name, output)?;
        write!(
            output,
            " {:>5} {:>5} {:>5}     {}  {:>8}{NEWLINE}",
            row.id.0,
            row.memory_mib,
            row.vcpus,
            row.state,
            Seconds(row.cpu_time_ns).to_text(),
        )?;
    }
    Ok(())
}

/// The `list` table as a string.
pub fn format_list(rows: &[DomainRow<'_>]) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = write_list(rows, &mut text);
    text
}

/// Writes a name padded to xl's column. Bytes a terminal would act on
/// become `?`: a name may come from a guest's config.
fn write_name(name: &str, output: &mut impl Write) -> fmt::Result {
    let mut width = 0;
    for character in name.chars() {
        let shown = if character.is_control() {
            '?'
        } else {
            character
        };
        output.write_char(shown)?;
        width += 1;
    }
    for _ in width..NAME_WIDTH {
        output.write_char(' ')?;
    }
    Ok(())
}

/// Nanoseconds shown as seconds to one decimal, like xl's `%.1f`, in
/// integers: Dom0 keeps floating point out of the kernel.
struct Seconds(u64);

impl Seconds {
    const NANOSECONDS_PER_TENTH: u64 = 100_000_000;

    /// "12.3"; rounds half up.
    fn to_text(&self) -> ArrayString<24> {
        let mut tenths = self.0 / Self::NANOSECONDS_PER_TENTH;
        if self.0 % Self::NANOSECONDS_PER_TENTH >= Self::NANOSECONDS_PER_TENTH / 2 {
            tenths += 1;
        }
        let mut text = ArrayString::new();
        // Fits: u64::MAX nanoseconds is 12 digits of tenths, so at most
        // 11 digits, a point and one digit.
        let _ = write!(text, "{}.{}", tenths / 10, tenths % 10);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, id: u16, state: DomainState, cpu_time_ns: u64) -> DomainRow<'_> {
        DomainRow {
            name,
            id: DomainId(id),
            memory_mib: 64,
            vcpus: 1,
            state,
            cpu_time_ns,
        }
    }

    #[test]
    fn matches_xl_list_layout() {
        let text = format_list(&[
            row("Domain-0", 0, DomainState::RUNNING, 12_300_000_000),
            DomainRow {
                name: "web",
                id: DomainId(12),
                memory_mib: 1024,
                vcpus: 2,
                state: DomainState::BLOCKED,
                cpu_time_ns: 50_000_000,
            },
        ]);
        assert_eq!(
            text,
            "Name                                        ID   Mem VCPUs\tState\tTime(s)\r\n\
             Domain-0                                     0    64     1     r-----      12.3\r\n\
             web                                         12  1024     2     -b----       0.1\r\n"
        );
    }

    #[test]
    fn no_rows_is_just_the_header() {
        assert_eq!(
            format_list(&[]),
            "Name                                        ID   Mem VCPUs\tState\tTime(s)\r\n"
        );
    }

    #[test]
    fn id_column_lines_up_with_the_header() {
        let text = format_list(&[row("a", 32751, DomainState::RUNNABLE, 0)]);
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        let line = lines.next().unwrap();
        let id_end = header.find("ID").unwrap() + 2;
        assert_eq!(&line[id_end - 5..id_end], "32751");
        let memory_end = header.find("Mem").unwrap() + 3;
        assert_eq!(&line[memory_end - 2..memory_end], "64");
    }

    #[test]
    fn long_names_push_columns_instead_of_being_cut() {
        let name = "a-guest-name-that-is-much-longer-than-forty-characters";
        let text = format_list(&[row(name, 3, DomainState::PAUSED, 0)]);
        let line = text.lines().nth(1).unwrap();
        assert!(line.starts_with(&format!("{name}     3    64     1     --p---       0.0")));
    }

    #[test]
    fn control_characters_in_names_are_not_sent_to_the_terminal() {
        let text = format_list(&[row("evil\x1b[2J\r\n", 4, DomainState::DYING, 0)]);
        assert!(!text.contains('\x1b'));
        assert_eq!(text.lines().count(), 2);
        assert!(text.contains("evil?[2J??"));
    }

    #[test]
    fn state_flags_combine() {
        assert_eq!(DomainState::RUNNABLE.to_string(), "------");
        assert_eq!(DomainState::CRASHED.to_string(), "---sc-");
        assert_eq!(DomainState::DYING.to_string(), "-----d");
        assert_eq!(DomainState::SHUTDOWN.to_string(), "---s--");
        let everything = DomainState {
            running: true,
            blocked: true,
            paused: true,
            shutdown: true,
            crashed: true,
            dying: true,
        };
        assert_eq!(everything.to_string(), "rbpscd");
        let paused_and_blocked = DomainState {
            paused: true,
            ..DomainState::BLOCKED
        };
        assert_eq!(paused_and_blocked.flags(), *b"-bp---");
        assert_eq!(DomainState::default(), DomainState::RUNNABLE);
    }

    #[test]
    fn cpu_time_rounds_to_tenths_of_a_second() {
        let seconds = |nanoseconds| Seconds(nanoseconds).to_text().to_string();
        assert_eq!(seconds(0), "0.0");
        assert_eq!(seconds(49_999_999), "0.0");
        assert_eq!(seconds(50_000_000), "0.1");
        assert_eq!(seconds(12_345_678_901), "12.3");
        assert_eq!(seconds(12_350_000_000), "12.4");
        assert_eq!(seconds(99_950_000_000), "100.0");
        assert_eq!(seconds(u64::MAX), "18446744073.7");
    }

    #[test]
    fn extreme_values_do_not_panic() {
        let text = format_list(&[DomainRow {
            name: "",
            id: DomainId(u16::MAX),
            memory_mib: u64::MAX,
            vcpus: u32::MAX,
            state: DomainState::default(),
            cpu_time_ns: u64::MAX,
        }]);
        assert!(text.contains("65535 18446744073709551615 4294967295"));
        assert!(text.ends_with("18446744073.7\r\n"));
    }
}
