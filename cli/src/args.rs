//! Command-line parsing: `xenolith [--url URL] [--token TOKEN] [--json] VERB ...`.

use std::fmt;

/// The API address when neither `--url` nor `XENOLITH_URL` gives one.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// What the environment contributes: `XENOLITH_URL` and `XENOLITH_TOKEN`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Environment {
    /// `XENOLITH_URL`: the API address when `--url` is absent.
    pub url: Option<String>,
    /// `XENOLITH_TOKEN`: the bearer token when `--token` is absent.
    pub token: Option<String>,
}

impl Environment {
    /// The process's environment (unset or non-UTF-8 variables are absent).
    pub fn from_process() -> Environment {
        Environment {
            url: std::env::var("XENOLITH_URL").ok(),
            token: std::env::var("XENOLITH_TOKEN").ok(),
        }
    }
}

/// Usage text for `--help` and usage errors.
pub const USAGE: &str = "\
usage: xenolith [--url URL] [--token TOKEN] [--json] VERB [ARGS]

Talks to a Xenolith appliance's management API (see docs/api.md).

verbs:
  list                    list domains (like xl list)
  info                    host memory, CPUs, versions and uptime
  create FILE             create a guest from an xl.cfg file (or a .json object)
  destroy DOMAIN          tear a domain down now
  shutdown DOMAIN         ask a guest to power off
  reboot DOMAIN           ask a guest to reboot
  pause DOMAIN            stop a domain's vCPUs
  unpause DOMAIN          run them again
  console DOMAIN [--once] follow a domain's console output (Ctrl-C exits);
                          --once prints what is there and exits

DOMAIN is a name or a numeric id.

options:
  --url URL      API address, http://HOST[:PORT] (default: the XENOLITH_URL
                 environment variable, else http://127.0.0.1:8080; port 8080
                 when not given)
  --token TOKEN  bearer token (default: the XENOLITH_TOKEN environment variable)
  --json         print the API's JSON instead of tables
  -h, --help     this text

exit codes: 0 ok, 1 API error, 2 usage, 3 connection failure, 4 authentication";

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `list`
    List,
    /// `info`
    Info,
    /// `create FILE`
    Create {
        /// Path of the config file.
        file: String,
    },
    /// `destroy`, `shutdown`, `reboot`, `pause` or `unpause` a domain.
    Act {
        /// The API's action name.
        action: Action,
        /// Domain name or id.
        domain: String,
    },
    /// `console DOMAIN [--once]`
    Console {
        /// Domain name or id.
        domain: String,
        /// Print what is there and stop instead of following.
        once: bool,
    },
    /// `--help`
    Help,
}

/// The per-domain verbs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `DELETE /v1/domains/D`
    Destroy,
    /// `POST .../shutdown`
    Shutdown,
    /// `POST .../reboot`
    Reboot,
    /// `POST .../pause`
    Pause,
    /// `POST .../unpause`
    Unpause,
}

impl Action {
    /// The verb as typed.
    pub fn verb(self) -> &'static str {
        match self {
            Action::Destroy => "destroy",
            Action::Shutdown => "shutdown",
            Action::Reboot => "reboot",
            Action::Pause => "pause",
            Action::Unpause => "unpause",
        }
    }
}

/// The parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// API address.
    pub url: String,
    /// Bearer token, if any.
    pub token: Option<String>,
    /// Print JSON.
    pub json: bool,
    /// The verb.
    pub command: Command,
}

/// A command line that makes no sense; printed with the usage text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

fn usage(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

/// Parses the arguments after the program name; `environment` fills in
/// what `--url` and `--token` leave out (an empty variable counts as unset).
pub fn parse(arguments: &[String], environment: &Environment) -> Result<Options, UsageError> {
    let mut url = None;
    let mut token = None;
    let mut json = false;
    let mut once = false;
    let mut words = Vec::new();
    let mut iterator = arguments.iter();
    while let Some(argument) = iterator.next() {
        let mut value_of = |name: &str| {
            iterator
                .next()
                .cloned()
                .ok_or_else(|| usage(format!("{name} needs a value")))
        };
        match argument.as_str() {
            "--url" => url = Some(value_of("--url")?),
            "--token" => token = Some(value_of("--token")?),
            "--json" => json = true,
            "--once" => once = true,
            "-h" | "--help" => {
                return Ok(Options {
                    url: url.unwrap_or_else(|| String::from(DEFAULT_URL)),
                    token,
                    json,
                    command: Command::Help,
                });
            }
            other if other.starts_with("--url=") => url = Some(other["--url=".len()..].into()),
            other if other.starts_with("--token=") => {
                token = Some(other["--token=".len()..].into())
            }
            other if other.starts_with('-') && other.len() > 1 => {
                return Err(usage(format!("unknown option {other}")));
            }
            other => words.push(other.to_string()),
        }
    }
    let url = url
        .or_else(|| environment.url.clone().filter(|url| !url.is_empty()))
        .unwrap_or_else(|| String::from(DEFAULT_URL));
    let token = token
        .or_else(|| environment.token.clone())
        .filter(|token| !token.is_empty());
    let mut words = words.into_iter();
    let verb = words.next().ok_or_else(|| usage("no verb given"))?;
    let mut operand = |what: &str| {
        words
            .next()
            .ok_or_else(|| usage(format!("{verb} needs {what}")))
    };
    let command = match verb.as_str() {
        "list" => Command::List,
        "info" => Command::Info,
        "create" => Command::Create {
            file: operand("a config file")?,
        },
        "console" => Command::Console {
            domain: operand("a domain")?,
            once,
        },
        "destroy" | "shutdown" | "reboot" | "pause" | "unpause" => {
            let action = match verb.as_str() {
                "destroy" => Action::Destroy,
                "shutdown" => Action::Shutdown,
                "reboot" => Action::Reboot,
                "pause" => Action::Pause,
                _ => Action::Unpause,
            };
            Command::Act {
                action,
                domain: operand("a domain")?,
            }
        }
        other => return Err(usage(format!("unknown verb {other:?}"))),
    };
    if let Some(extra) = words.next() {
        return Err(usage(format!("unexpected argument {extra:?}")));
    }
    if once && !matches!(command, Command::Console { .. }) {
        return Err(usage("--once is for console"));
    }
    Ok(Options {
        url,
        token,
        json,
        command,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(line: &str, env: Option<&str>) -> Result<Options, UsageError> {
        let arguments: Vec<String> = line.split_whitespace().map(String::from).collect();
        let environment = Environment {
            url: None,
            token: env.map(String::from),
        };
        parse(&arguments, &environment)
    }

    #[test]
    fn url_from_the_flag_then_the_environment_then_the_default() {
        let arguments =
            |line: &str| -> Vec<String> { line.split_whitespace().map(String::from).collect() };
        let environment = Environment {
            url: Some(String::from("http://appliance:9000")),
            token: None,
        };
        let options = parse(&arguments("list"), &environment).unwrap();
        assert_eq!(options.url, "http://appliance:9000");
        let options = parse(&arguments("--url http://other list"), &environment).unwrap();
        assert_eq!(options.url, "http://other", "--url beats XENOLITH_URL");
        let options = parse(&arguments("--url=http://third list"), &environment).unwrap();
        assert_eq!(options.url, "http://third");
        let empty = Environment {
            url: Some(String::new()),
            token: Some(String::from("t")),
        };
        let options = parse(&arguments("list"), &empty).unwrap();
        assert_eq!(options.url, DEFAULT_URL, "an empty XENOLITH_URL is unset");
        assert_eq!(options.token.as_deref(), Some("t"));
        let options = parse(&arguments("--help"), &environment).unwrap();
        assert_eq!(options.command, Command::Help);
    }

    #[test]
    fn verbs_and_options() {
        let options = parse_words("list", None).unwrap();
        assert_eq!(options.command, Command::List);
        assert_eq!(options.url, DEFAULT_URL);
        assert_eq!(options.token, None);
        assert!(!options.json);

        let options =
            parse_words("--url http://10.0.0.2:9000 --json destroy web", Some("t")).unwrap();
        assert_eq!(options.url, "http://10.0.0.2:9000");
        assert_eq!(options.token.as_deref(), Some("t"));
        assert!(options.json);
        assert_eq!(
            options.command,
            Command::Act {
                action: Action::Destroy,
                domain: "web".into()
            }
        );

        let options = parse_words("console 3 --once --token=abc", Some("env")).unwrap();
        assert_eq!(
            options.token.as_deref(),
            Some("abc"),
            "--token beats the env"
        );
        assert_eq!(
            options.command,
            Command::Console {
                domain: "3".into(),
                once: true
            }
        );
        assert_eq!(
            parse_words("create web.cfg", None).unwrap().command,
            Command::Create {
                file: "web.cfg".into()
            }
        );
        assert_eq!(parse_words("-h", None).unwrap().command, Command::Help);
        assert_eq!(parse_words("info", Some("")).unwrap().token, None);
    }

    #[test]
    fn usage_errors() {
        for line in [
            "",
            "frobnicate",
            "destroy",
            "create",
            "list extra",
            "--url",
            "--bogus list",
            "list --once",
        ] {
            assert!(parse_words(line, None).is_err(), "{line:?}");
        }
    }
}
