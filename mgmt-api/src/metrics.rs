//! Metrics in the Prometheus text exposition format (version 0.0.4).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// A metric's type line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// One sample: label pairs and a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// `(name, value)` label pairs.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: u64,
}

/// A metric name with its help text, type and samples.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricFamily {
    /// The name, `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    pub name: String,
    /// One line of help.
    pub help: String,
    /// Its type.
    pub kind: MetricKind,
    /// Samples.
    pub samples: Vec<Sample>,
}

impl MetricFamily {
    /// A family with one unlabelled sample.
    pub fn single(name: &str, help: &str, kind: MetricKind, value: u64) -> MetricFamily {
        MetricFamily {
            name: String::from(name),
            help: String::from(help),
            kind,
            samples: alloc::vec![Sample {
                labels: Vec::new(),
                value,
            }],
        }
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|byte| byte.is_ascii_alphabetic() || byte == b'_' || byte == b':')
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b':')
}

fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|byte| byte.is_ascii_alphabetic() || byte == b'_')
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

/// Writes `families` as exposition text. Families or labels with invalid
/// names are left out rather than corrupting the output.
pub fn encode(families: &[MetricFamily], out: &mut String) {
    for family in families
        .iter()
        .filter(|family| is_metric_name(&family.name))
    {
        let help: String = family
            .help
            .chars()
            .map(|character| if character == '\n' { ' ' } else { character })
            .collect();
        let help = help.replace('\\', "\\\\");
        let kind = match family.kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        };
        let _ = writeln!(out, "# HELP {} {}", family.name, help);
        let _ = writeln!(out, "# TYPE {} {}", family.name, kind);
        for sample in &family.samples {
            out.push_str(&family.name);
            let labels: Vec<&(String, String)> = sample
                .labels
                .iter()
                .filter(|(name, _)| is_label_name(name))
                .collect();
            if !labels.is_empty() {
                out.push('{');
                for (index, (name, value)) in labels.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{name}=\"");
                    for character in value.chars() {
                        match character {
                            '\\' => out.push_str("\\\\"),
                            '"' => out.push_str("\\\""),
                            '\n' => out.push_str("\\n"),
                            other => out.push(other),
                        }
                    }
                    out.push('"');
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", sample.value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_text() {
        let families = [
            MetricFamily {
                name: "xenolith_domain_memory_mib".into(),
                help: "Memory\nper domain".into(),
                kind: MetricKind::Gauge,
                samples: alloc::vec![Sample {
                    labels: alloc::vec![
                        ("domain".into(), "we\"b\\\n".into()),
                        ("bad-label".into(), "x".into()),
                    ],
                    value: 512,
                }],
            },
            MetricFamily::single("bad name", "x", MetricKind::Counter, 1),
        ];
        let mut out = String::new();
        encode(&families, &mut out);
        assert_eq!(
            out,
            "# HELP xenolith_domain_memory_mib Memory per domain\n\
             # TYPE xenolith_domain_memory_mib gauge\n\
             xenolith_domain_memory_mib{domain=\"we\\\"b\\\\\\n\"} 512\n"
        );
    }
}
