//! The Prometheus text exposition format, version 0.0.4: for each metric family a
//! `# HELP` and a `# TYPE` line, then its samples, `name{label="value",...} number`.

use std::fmt::Write;

/// The `Content-Type` of a page in this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type, as `# TYPE` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only ever goes up (and back to 0 when the process restarts).
    Counter,
    /// A value now: goes up and down.
    Gauge,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A page of metrics under construction.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a family: writes its `# HELP` and `# TYPE` lines. `name` is one of ours,
    /// a valid metric name (checked in debug builds); counters end in `_total`.
    pub fn family(&mut self, name: &'static str, kind: Kind, help: &str) -> Family<'_> {
        debug_assert!(is_metric_name(name), "{name:?} is not a metric name");
        debug_assert!(kind != Kind::Counter || name.ends_with("_total"), "{name}");
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {}", kind.name());
        Family {
            text: &mut self.text,
            name,
        }
    }

    pub fn into_text(self) -> String {
        self.text
    }
}

/// The samples of one family.
pub struct Family<'a> {
    text: &'a mut String,
    name: &'static str,
}

impl Family<'_> {
    /// One sample: `labels` as (name, value) pairs, label names ours and valid, values
    /// anything (escaped here).
    pub fn sample(&mut self, labels: &[(&str, &str)], value: u64) -> &mut Self {
        self.text.push_str(self.name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                debug_assert!(is_label_name(label), "{label:?} is not a label name");
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label_value(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
        self
    }
}

/// HELP text: backslash and line feed escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A label value: backslash, double quote and line feed escaped.
fn escape_label_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved).
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_with_labels_renders_help_type_and_samples_exactly() {
        let mut page = Exposition::new();
        page.family(
            "rtmfp_edge_datagrams_dropped_total",
            Kind::Counter,
            "Datagrams dropped",
        )
        .sample(&[("shard", "0"), ("reason", "bad_length")], 3)
        .sample(&[("shard", "1"), ("reason", "replayed")], 0);
        assert_eq!(
            page.into_text(),
            "# HELP rtmfp_edge_datagrams_dropped_total Datagrams dropped\n\
             # TYPE rtmfp_edge_datagrams_dropped_total counter\n\
             rtmfp_edge_datagrams_dropped_total{shard=\"0\",reason=\"bad_length\"} 3\n\
             rtmfp_edge_datagrams_dropped_total{shard=\"1\",reason=\"replayed\"} 0\n"
        );
    }

    #[test]
    fn a_gauge_without_labels_has_no_braces() {
        let mut page = Exposition::new();
        page.family("rtmfp_edge_shards", Kind::Gauge, "Shards")
            .sample(&[], 2);
        assert_eq!(
            page.into_text(),
            "# HELP rtmfp_edge_shards Shards\n# TYPE rtmfp_edge_shards gauge\nrtmfp_edge_shards 2\n"
        );
    }

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        let mut page = Exposition::new();
        page.family("rtmfp_edge_x_total", Kind::Counter, "a \\ b\nc")
            .sample(&[("app", "a\\b\"c\nd")], 1);
        let text = page.into_text();
        assert!(
            text.starts_with("# HELP rtmfp_edge_x_total a \\\\ b\\nc\n"),
            "{text}"
        );
        assert!(
            text.ends_with("rtmfp_edge_x_total{app=\"a\\\\b\\\"c\\nd\"} 1\n"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 3, "a value's newline stays escaped");
    }

    #[test]
    fn metric_and_label_names_follow_the_format() {
        assert!(is_metric_name("rtmfp_edge_sessions"));
        assert!(is_metric_name("a:b_c9"));
        assert!(!is_metric_name("9a"));
        assert!(!is_metric_name("a-b"));
        assert!(!is_metric_name(""));
        assert!(is_label_name("shard"));
        assert!(!is_label_name("__name__"));
        assert!(!is_label_name("a:b"));
    }
}
