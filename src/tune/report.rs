//! What `tune` prints: one row per knob, as an aligned table.

use std::fmt;

use super::refusal::Refusal;

/// What became of one knob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Already the recommended value.
    Fine,
    /// Above the recommendation: left alone.
    Above,
    /// Nothing recommended; shown for its value.
    Info,
    /// `show`: `apply` would write this.
    WouldSet(String),
    /// `apply`: written, and it reads back as recommended.
    Set,
    /// Written, but the kernel kept something else (hugepages it could not find...).
    ReadsBack(String),
    /// `revert`: the saved value is back.
    Restored,
    /// `revert`: it already had the saved value.
    AlreadyThere,
    /// `revert`: the file is gone (the interface was deleted), and its setting with it.
    Gone,
    /// Could not be written; left as it was.
    NotWritten(Refusal),
    /// Could not be read, so nothing was done.
    Unreadable(Refusal),
    /// Read, but not as a value of this knob.
    Unparsed(String),
}

impl Outcome {
    /// Whether the knob ends where it should (recommended, kept higher, or restored).
    pub fn is_success(&self) -> bool {
        matches!(
            self,
            Outcome::Fine
                | Outcome::Above
                | Outcome::Info
                | Outcome::Set
                | Outcome::Restored
                | Outcome::AlreadyThere
                | Outcome::Gone
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Fine => f.write_str("ok"),
            Outcome::Above => f.write_str("ok (higher: kept)"),
            Outcome::Info => f.write_str("-"),
            Outcome::WouldSet(_) => f.write_str("apply changes it"),
            Outcome::Set => f.write_str("set"),
            Outcome::ReadsBack(v) => write!(f, "written, reads back {v}"),
            Outcome::Restored => f.write_str("restored"),
            Outcome::AlreadyThere => f.write_str("already so"),
            Outcome::Gone => f.write_str("gone with its device"),
            Outcome::NotWritten(r) => write!(f, "not written: {r}"),
            Outcome::Unreadable(r) => write!(f, "{r}"),
            Outcome::Unparsed(why) => write!(f, "left alone: {why}"),
        }
    }
}

/// One line of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub knob: String,
    /// The value found (before any change).
    pub value: String,
    /// The recommended value (`show`, `apply`) or the saved one (`revert`).
    pub wanted: String,
    pub outcome: Outcome,
    pub why: String,
}

/// Column titles: `show` says CURRENT, `apply` WAS, `revert` WAS and SAVED.
pub struct Headers {
    pub value: &'static str,
    pub wanted: &'static str,
}

/// The table, a row per line; a why that repeats the row above is a ditto mark, and
/// rows without one (`revert`'s) have no WHY column.
pub fn render(headers: &Headers, rows: &[Row]) -> String {
    let whys = rows.iter().any(|r| !r.why.is_empty());
    let cells: Vec<[String; 5]> = std::iter::once([
        "KNOB".to_string(),
        headers.value.to_string(),
        headers.wanted.to_string(),
        "STATUS".to_string(),
        if whys { "WHY" } else { "" }.to_string(),
    ])
    .chain(rows.iter().enumerate().map(|(i, r)| {
        let why = if i > 0 && !r.why.is_empty() && rows[i - 1].why == r.why {
            "\"".to_string()
        } else {
            r.why.clone()
        };
        // udp_mem and its kind separate numbers with tabs.
        let spaced = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        [
            r.knob.clone(),
            spaced(&r.value),
            spaced(&r.wanted),
            r.outcome.to_string(),
            why,
        ]
    }))
    .collect();
    let mut widths = [0usize; 4];
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &cells {
        let mut line = String::new();
        for (w, cell) in widths.iter().zip(row) {
            line.push_str(&format!("{cell:<w$}  "));
        }
        line.push_str(&row[4]);
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_repeated_reasons_are_dittoed() {
        let row = |knob: &str, why: &str| Row {
            knob: knob.into(),
            value: "212992".into(),
            wanted: "8388608".into(),
            outcome: Outcome::WouldSet("8388608".into()),
            why: why.into(),
        };
        let table = render(
            &Headers {
                value: "CURRENT",
                wanted: "RECOMMENDED",
            },
            &[
                row("net.core.rmem_max", "a"),
                row("eth0 rx-0 rps_cpus", "b"),
                row("eth0 rx-1 rps_cpus", "b"),
            ],
        );
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        let column = |line: &str| line.find("212992").or_else(|| line.find("CURRENT"));
        assert!(lines.iter().all(|l| column(l) == column(lines[0])));
        assert!(lines[2].ends_with(" b"));
        assert!(lines[3].ends_with(" \""));
    }
}
