//! Stream name patterns for `publish.streams`: `*` stands for any run of characters (none
//! included, `/` included), `?` for exactly one; everything else matches itself, case
//! sensitive, as stream names are.

use std::fmt;

/// One glob pattern, like `camera-*` or `event-2024-??`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPattern {
    pattern: String,
}

impl StreamPattern {
    pub fn new(pattern: impl Into<String>) -> StreamPattern {
        StreamPattern {
            pattern: pattern.into(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        glob_match(&self.pattern, name)
    }
}

impl fmt::Display for StreamPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

/// Greedy matching with one backtrack point: on a mismatch, the latest `*` takes one more
/// character. Linear in practice, O(pattern × name) at worst; never exponential.
fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // (position after the last `*`, name position that `*` currently stops at)
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi + 1, ni));
                pi += 1;
            }
            Some('?') => {
                pi += 1;
                ni += 1;
            }
            Some(&c) if c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((after_star, stop)) => {
                    pi = after_star;
                    ni = stop + 1;
                    star = Some((after_star, stop + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        StreamPattern::new(pattern).matches(name)
    }

    #[test]
    fn literal_pattern_matches_only_itself() {
        assert!(m("cam1", "cam1"));
        assert!(!m("cam1", "cam10"));
        assert!(!m("cam1", "cam"));
        assert!(!m("cam1", "Cam1"));
    }

    #[test]
    fn star_matches_any_run_including_none_and_slashes() {
        assert!(m("*", ""));
        assert!(m("*", "anything/at/all"));
        assert!(m("cam-*", "cam-"));
        assert!(m("cam-*", "cam-front"));
        assert!(!m("cam-*", "cam"));
        assert!(m("*-hd", "event-hd"));
        assert!(!m("*-hd", "event-sd"));
        assert!(m("a*b*c", "a-b-b-c"));
        assert!(m("a*b*c", "abc"));
        assert!(!m("a*b*c", "a-b-b-d"));
        assert!(m("**x", "yyx"));
        assert!(m("team/*/main", "team/red/main"));
    }

    #[test]
    fn question_mark_matches_exactly_one_character() {
        assert!(m("event-??", "event-01"));
        assert!(!m("event-??", "event-1"));
        assert!(!m("event-??", "event-001"));
        assert!(m("?", "é"));
        assert!(m("*?", "x"));
        assert!(!m("*?", ""));
    }

    #[test]
    fn backtracking_stays_fast_on_hostile_input() {
        let name = "a".repeat(10_000);
        assert!(!m("*a*a*a*a*a*a*a*b", &name));
        assert!(m("*a*a*a*a*a*a*a*a", &name));
    }
}
