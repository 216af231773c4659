//! The shell's verbs: one table that both the parser and `help` read, and
//! the parser that turns a typed line into a [`Command`].

extern crate alloc;

use alloc::string::String;
use core::fmt::{self, Write};

use xenolith_abi::domain::DomainId;

use super::NEWLINE;

/// Which domain a command acts on, as the operator typed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target<'a> {
    /// A decimal domain id below [`DomainId::FIRST_RESERVED`].
    Id(DomainId),
    /// Anything else: a guest's name, for the caller to look up.
    Name(&'a str),
}

/// A parsed shell command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// A blank line: do nothing.
    Empty,
    /// `list`: show every domain.
    List,
    /// `create <config>`: start a guest from the named config (a boot
    /// module's config or a guest name).
    Create {
        /// The config's name, as typed.
        config: &'a str,
    },
    /// `destroy <domain>`: kill a domain at once.
    Destroy(Target<'a>),
    /// `shutdown <domain>`: ask a guest to shut down.
    Shutdown(Target<'a>),
    /// `reboot <domain>`: ask a guest to reboot.
    Reboot(Target<'a>),
    /// `pause <domain>`: stop scheduling a domain.
    Pause(Target<'a>),
    /// `unpause <domain>`: schedule a paused domain again.
    Unpause(Target<'a>),
    /// `console <domain>`: attach to a guest's console until
    /// [`DETACH_BYTE`](super::DETACH_BYTE).
    Console(Target<'a>),
    /// `info`: about the hypervisor and the machine.
    Info,
    /// `dmesg`: Dom0's recent log lines (not the guests' consoles; the
    /// hypervisor's own log is on the serial line only).
    Dmesg,
    /// `help`: list the verbs.
    Help,
}

/// What a verb takes after its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Argument {
    /// Nothing.
    None,
    /// A guest config name.
    Config,
    /// A domain id or name.
    Domain,
}

impl Argument {
    /// How `help` writes the argument.
    pub const fn placeholder(self) -> &'static str {
        match self {
            Argument::None => "",
            Argument::Config => "<config>",
            Argument::Domain => "<domain>",
        }
    }

    /// The argument's name in error messages ("destroy needs a domain").
    pub const fn noun(self) -> &'static str {
        match self {
            Argument::None => "nothing",
            Argument::Config => "config",
            Argument::Domain => "domain",
        }
    }
}

/// Which [`Command`] a verb builds; private so the table stays the one
/// place verbs are defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    List,
    Create,
    Destroy,
    Shutdown,
    Reboot,
    Pause,
    Unpause,
    Console,
    Info,
    Dmesg,
    Help,
}

/// One verb of the shell.
#[derive(Clone, Copy, Debug)]
pub struct Verb {
    /// What the operator types (xl's names).
    pub name: &'static str,
    /// What follows the name.
    pub argument: Argument,
    /// One line for `help`.
    pub description: &'static str,
    action: Action,
}

/// Every verb, in the order `help` lists them.
pub const VERBS: &[Verb] = &[
    Verb {
        name: "list",
        argument: Argument::None,
        description: "list domains",
        action: Action::List,
    },
    Verb {
        name: "create",
        argument: Argument::Config,
        description: "start a guest from a boot-module config",
        action: Action::Create,
    },
    Verb {
        name: "destroy",
        argument: Argument::Domain,
        description: "kill a domain at once",
        action: Action::Destroy,
    },
    Verb {
        name: "shutdown",
        argument: Argument::Domain,
        description: "ask a guest to shut down",
        action: Action::Shutdown,
    },
    Verb {
        name: "reboot",
        argument: Argument::Domain,
        description: "ask a guest to reboot",
        action: Action::Reboot,
    },
    Verb {
        name: "pause",
        argument: Argument::Domain,
        description: "stop running a domain",
        action: Action::Pause,
    },
    Verb {
        name: "unpause",
        argument: Argument::Domain,
        description: "run a paused domain again",
        action: Action::Unpause,
    },
    Verb {
        name: "console",
        argument: Argument::Domain,
        description: "attach to a guest's console; Ctrl-] detaches",
        action: Action::Console,
    },
    Verb {
        name: "info",
        argument: Argument::None,
        description: "show the hypervisor and the machine",
        action: Action::Info,
    },
    Verb {
        name: "dmesg",
        argument: Argument::None,
        description: "show Dom0's recent log",
        action: Action::Dmesg,
    },
    Verb {
        name: "help",
        argument: Argument::None,
        description: "show this list",
        action: Action::Help,
    },
];

/// Why a line is not a command. Each displays as one line without a line
/// ending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError<'a> {
    /// The first word is no verb.
    UnknownCommand(&'a str),
    /// The verb needs an argument that is missing.
    MissingArgument {
        /// The verb typed.
        verb: &'static str,
        /// What it needs.
        argument: Argument,
    },
    /// More words than the verb takes.
    TooManyArguments {
        /// The verb typed.
        verb: &'static str,
    },
    /// A decimal id that does not fit a domain id.
    DomainIdTooLarge(&'a str),
    /// An id Xen reserves for special meanings (such as "the calling
    /// domain"), never a real domain.
    ReservedDomainId(DomainId),
}

impl fmt::Display for ParseError<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Debug quoting escapes control characters, so a typed word
            // cannot drive the terminal.
            ParseError::UnknownCommand(word) => {
                write!(formatter, "unknown command {word:?}; try help")
            }
            ParseError::MissingArgument { verb, argument } => {
                write!(formatter, "{verb} needs a {}", argument.noun())
            }
            ParseError::TooManyArguments { verb } => {
                write!(formatter, "too many arguments to {verb}")
            }
            ParseError::DomainIdTooLarge(word) => {
                write!(formatter, "domain id {word:?} is too large")
            }
            ParseError::ReservedDomainId(DomainId(id)) => {
                write!(formatter, "domain id {id} is reserved, not a domain")
            }
        }
    }
}

/// Parses one typed line. Words are separated by ASCII whitespace; verbs
/// are case-sensitive, as in xl.
pub fn parse(line: &str) -> Result<Command<'_>, ParseError<'_>> {
    let mut words = line.split_ascii_whitespace();
    let Some(first) = words.next() else {
        return Ok(Command::Empty);
    };
    let verb = VERBS
        .iter()
        .find(|verb| verb.name == first)
        .ok_or(ParseError::UnknownCommand(first))?;
    let argument = match verb.argument {
        Argument::None => None,
        Argument::Config | Argument::Domain => {
            Some(words.next().ok_or(ParseError::MissingArgument {
                verb: verb.name,
                argument: verb.argument,
            })?)
        }
    };
    if words.next().is_some() {
        return Err(ParseError::TooManyArguments { verb: verb.name });
    }
    // The table guarantees an argument exactly where the action needs one;
    // the fallback keeps that a checked fact rather than a panic.
    let missing = ParseError::MissingArgument {
        verb: verb.name,
        argument: verb.argument,
    };
    let target = || argument.ok_or(missing).and_then(parse_target);
    Ok(match verb.action {
        Action::List => Command::List,
        Action::Create => Command::Create {
            config: argument.ok_or(missing)?,
        },
        Action::Destroy => Command::Destroy(target()?),
        Action::Shutdown => Command::Shutdown(target()?),
        Action::Reboot => Command::Reboot(target()?),
        Action::Pause => Command::Pause(target()?),
        Action::Unpause => Command::Unpause(target()?),
        Action::Console => Command::Console(target()?),
        Action::Info => Command::Info,
        Action::Dmesg => Command::Dmesg,
        Action::Help => Command::Help,
    })
}

/// A word of decimal digits is a domain id; anything else is a name.
fn parse_target(word: &str) -> Result<Target<'_>, ParseError<'_>> {
    if word.is_empty() || !word.bytes().all(|byte| byte.is_ascii_digit()) {
        return Ok(Target::Name(word));
    }
    let id = word
        .parse::<u16>()
        .map_err(|_| ParseError::DomainIdTooLarge(word))?;
    let id = DomainId(id);
    if id >= DomainId::FIRST_RESERVED {
        return Err(ParseError::ReservedDomainId(id));
    }
    Ok(Target::Id(id))
}

/// Writes the `help` text: one line per verb, `NEWLINE`-terminated.
pub fn write_help(output: &mut impl Write) -> fmt::Result {
    let width = VERBS.iter().map(usage_length).max().unwrap_or(0);
    write!(output, "Commands:{NEWLINE}")?;
    for verb in VERBS {
        let placeholder = verb.argument.placeholder();
        let separator = if placeholder.is_empty() { "" } else { " " };
        let usage_padding = width - usage_length(verb);
        write!(
            output,
            "  {}{separator}{placeholder}{:usage_padding$}  {}{NEWLINE}",
            verb.name, "", verb.description
        )?;
    }
    Ok(())
}

/// The `help` text as a string.
pub fn format_help() -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = write_help(&mut text);
    text
}

/// Length of "name <argument>".
fn usage_length(verb: &Verb) -> usize {
    let placeholder = verb.argument.placeholder();
    if placeholder.is_empty() {
        verb.name.len()
    } else {
        verb.name.len() + 1 + placeholder.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_lines_are_empty_commands() {
        assert_eq!(parse(""), Ok(Command::Empty));
        assert_eq!(parse("   \t  "), Ok(Command::Empty));
    }

    #[test]
    fn verbs_without_arguments() {
        assert_eq!(parse("list"), Ok(Command::List));
        assert_eq!(parse("  info  "), Ok(Command::Info));
        assert_eq!(parse("dmesg"), Ok(Command::Dmesg));
        assert_eq!(parse("help"), Ok(Command::Help));
    }

    #[test]
    fn create_takes_a_config_name_even_if_it_is_digits() {
        assert_eq!(
            parse("create linux"),
            Ok(Command::Create { config: "linux" })
        );
        assert_eq!(parse("create 42"), Ok(Command::Create { config: "42" }));
    }

    #[test]
    fn domain_verbs_take_an_id_or_a_name() {
        let id = |value| Target::Id(DomainId(value));
        assert_eq!(parse("destroy 3"), Ok(Command::Destroy(id(3))));
        assert_eq!(
            parse("shutdown web"),
            Ok(Command::Shutdown(Target::Name("web")))
        );
        assert_eq!(parse("reboot 0"), Ok(Command::Reboot(id(0))));
        assert_eq!(parse("pause\t007"), Ok(Command::Pause(id(7))));
        assert_eq!(
            parse("unpause guest-1"),
            Ok(Command::Unpause(Target::Name("guest-1")))
        );
        assert_eq!(parse("console 32751"), Ok(Command::Console(id(32751))));
        // Not purely decimal: a name.
        assert_eq!(
            parse("destroy 0x10"),
            Ok(Command::Destroy(Target::Name("0x10")))
        );
        assert_eq!(
            parse("destroy +5"),
            Ok(Command::Destroy(Target::Name("+5")))
        );
        assert_eq!(
            parse("destroy -1"),
            Ok(Command::Destroy(Target::Name("-1")))
        );
    }

    #[test]
    fn domain_ids_beyond_sixteen_bits_are_refused() {
        assert_eq!(
            parse("destroy 65536"),
            Err(ParseError::DomainIdTooLarge("65536"))
        );
        assert_eq!(
            parse("destroy 99999999999999999999999"),
            Err(ParseError::DomainIdTooLarge("99999999999999999999999"))
        );
    }

    #[test]
    fn reserved_domain_ids_are_refused() {
        // 32752 is DOMID_SELF: "destroy the caller" must not reach Xen.
        assert_eq!(
            parse("destroy 32752"),
            Err(ParseError::ReservedDomainId(DomainId::SELF))
        );
        assert_eq!(
            parse("pause 65535"),
            Err(ParseError::ReservedDomainId(DomainId(65535)))
        );
    }

    #[test]
    fn errors_read_as_one_line() {
        let message = |line| parse(line).unwrap_err().to_string();
        assert_eq!(message("foo"), "unknown command \"foo\"; try help");
        assert_eq!(message("destroy"), "destroy needs a domain");
        assert_eq!(message("create"), "create needs a config");
        assert_eq!(message("list 1"), "too many arguments to list");
        assert_eq!(message("destroy 1 2"), "too many arguments to destroy");
        assert_eq!(message("destroy 70000"), "domain id \"70000\" is too large");
        assert_eq!(
            message("console 32752"),
            "domain id 32752 is reserved, not a domain"
        );
        assert_eq!(
            message("\u{1b}[2J"),
            "unknown command \"\\u{1b}[2J\"; try help"
        );
    }

    #[test]
    fn verbs_are_case_sensitive_and_have_no_aliases() {
        assert_eq!(parse("LIST"), Err(ParseError::UnknownCommand("LIST")));
        assert_eq!(parse("ls"), Err(ParseError::UnknownCommand("ls")));
    }

    #[test]
    fn every_verb_in_the_table_parses() {
        for verb in VERBS {
            let line = match verb.argument {
                Argument::None => verb.name.to_string(),
                Argument::Config | Argument::Domain => format!("{} 1", verb.name),
            };
            let command = parse(&line).unwrap();
            assert_ne!(command, Command::Empty, "{}", verb.name);
            if verb.argument != Argument::None {
                assert_eq!(
                    parse(verb.name),
                    Err(ParseError::MissingArgument {
                        verb: verb.name,
                        argument: verb.argument
                    })
                );
            }
        }
    }

    #[test]
    fn help_lists_every_verb_with_its_argument() {
        let help = format_help();
        assert!(help.starts_with("Commands:\r\n"));
        for verb in VERBS {
            let usage = format!("  {} {}", verb.name, verb.argument.placeholder());
            assert!(help.contains(usage.trim_end()), "{}", verb.name);
            assert!(help.contains(verb.description), "{}", verb.name);
        }
        assert!(
            help.contains("  console <domain>   attach to a guest's console; Ctrl-] detaches\r\n")
        );
        assert!(help.contains("  list               list domains\r\n"));
        assert_eq!(help.lines().count(), VERBS.len() + 1);
        assert!(help.ends_with(NEWLINE));
        assert!(
            help.split_terminator(NEWLINE)
                .all(|line| !line.ends_with(' ') && !line.contains('\n'))
        );
    }
}
