//! The Prometheus text exposition format, version 0.0.4: for each metric family a
//! `# HELP` and a `# TYPE` line, then its samples, `name{label="value",...} number`.
//! A histogram's samples are its series' `name_bucket{...,le="bound"}` cumulative
//! counts (the last `le="+Inf"`), `name_sum` and `name_count`.

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
    /// A distribution: how many values fell at or below each bucket's bound, their sum
    /// and their count ([`Family::histogram`]).
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
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
            kind,
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
    kind: Kind,
}

/// One series of a histogram, in an integer base unit of which `per_unit` make one of
/// the family's unit (nanoseconds in seconds: 1_000_000_000; bytes in bytes: 1), so that
/// bounds and sums render exactly.
#[derive(Debug, Clone, Copy)]
pub struct HistogramSeries<'a> {
    /// The buckets' upper bounds, ascending; `+Inf` follows them.
    pub bounds: &'a [u64],
    /// How many values each bucket alone holds (not cumulative): one count per bound,
    /// values above the one before it and at most this one; then one for the values
    /// above every bound.
    pub counts: &'a [u64],
    /// The sum of the values.
    pub sum: u64,
    pub per_unit: u64,
}

impl Family<'_> {
    /// One sample: `labels` as (name, value) pairs, label names ours and valid, values
    /// anything (escaped here).
    pub fn sample(&mut self, labels: &[(&str, &str)], value: u64) -> &mut Self {
        debug_assert!(
            self.kind != Kind::Histogram,
            "{}: use histogram()",
            self.name
        );
        self.series("", labels, None);
        let _ = writeln!(self.text, " {value}");
        self
    }

    /// One histogram series: its buckets' cumulative counts, `_sum` and `_count`, each
    /// with `labels` (and `le` for buckets). The `+Inf` bucket and `_count` are the same
    /// number by construction.
    pub fn histogram(&mut self, labels: &[(&str, &str)], series: HistogramSeries<'_>) -> &mut Self {
        debug_assert!(self.kind == Kind::Histogram, "{}: use sample()", self.name);
        debug_assert_eq!(
            series.counts.len(),
            series.bounds.len() + 1,
            "{}",
            self.name
        );
        debug_assert!(
            series.bounds.windows(2).all(|w| w[0] < w[1]),
            "{}",
            self.name
        );
        let mut cumulative = 0u64;
        for (i, count) in series.counts.iter().enumerate() {
            cumulative += count;
            let le = match series.bounds.get(i) {
                Some(&bound) => decimal(bound, series.per_unit),
                None => "+Inf".to_owned(),
            };
            self.series("_bucket", labels, Some(("le", &le)));
            let _ = writeln!(self.text, " {cumulative}");
        }
        self.series("_sum", labels, None);
        let _ = writeln!(self.text, " {}", decimal(series.sum, series.per_unit));
        self.series("_count", labels, None);
        let _ = writeln!(self.text, " {cumulative}");
        self
    }

    /// `name{label="value",...}` without the value: `suffix` after the family's name,
    /// `last` after `labels`.
    fn series(&mut self, suffix: &str, labels: &[(&str, &str)], last: Option<(&str, &str)>) {
        self.text.push_str(self.name);
        self.text.push_str(suffix);
        let mut labels = labels.iter().copied().chain(last).peekable();
        if labels.peek().is_none() {
            return;
        }
        self.text.push('{');
        for (i, (label, value)) in labels.enumerate() {
            debug_assert!(is_label_name(label), "{label:?} is not a label name");
            if i > 0 {
                self.text.push(',');
            }
            let _ = write!(self.text, "{label}=\"{}\"", escape_label_value(value));
        }
        self.text.push('}');
    }
}

/// `value / per_unit` written exactly, without trailing zeros: `decimal(1_500, 1_000)`
/// is `1.5`, `decimal(2_048, 1)` is `2048`.
fn decimal(value: u64, per_unit: u64) -> String {
    let whole = value / per_unit;
    let fraction = value % per_unit;
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = (per_unit - 1).to_string().len();
    let fraction = format!("{fraction:0digits$}");
    format!("{whole}.{}", fraction.trim_end_matches('0'))
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
    fn a_histogram_renders_cumulative_buckets_inf_sum_and_count_exactly() {
        let mut page = Exposition::new();
        page.family("rtmfp_edge_rtt_seconds", Kind::Histogram, "RTT")
            .histogram(
                &[("shard", "0")],
                HistogramSeries {
                    bounds: &[1_000_000, 20_000_000, 1_000_000_000],
                    counts: &[2, 0, 1, 1],
                    sum: 2_500_250_000,
                    per_unit: 1_000_000_000,
                },
            );
        assert_eq!(
            page.into_text(),
            "# HELP rtmfp_edge_rtt_seconds RTT\n\
             # TYPE rtmfp_edge_rtt_seconds histogram\n\
             rtmfp_edge_rtt_seconds_bucket{shard=\"0\",le=\"0.001\"} 2\n\
             rtmfp_edge_rtt_seconds_bucket{shard=\"0\",le=\"0.02\"} 2\n\
             rtmfp_edge_rtt_seconds_bucket{shard=\"0\",le=\"1\"} 3\n\
             rtmfp_edge_rtt_seconds_bucket{shard=\"0\",le=\"+Inf\"} 4\n\
             rtmfp_edge_rtt_seconds_sum{shard=\"0\"} 2.50025\n\
             rtmfp_edge_rtt_seconds_count{shard=\"0\"} 4\n"
        );
    }

    #[test]
    fn decimals_are_exact_and_lose_trailing_zeros() {
        assert_eq!(decimal(0, 1_000_000_000), "0");
        assert_eq!(decimal(1, 1_000_000_000), "0.000000001");
        assert_eq!(decimal(5_000_000_000, 1_000_000_000), "5");
        assert_eq!(decimal(2_048, 1), "2048");
        assert_eq!(decimal(1_500, 1_000), "1.5");
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
