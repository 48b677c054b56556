//! Config errors that name the file, the line and column, and the problem:
//! `config.toml:12:9: app "live": connect.allow: "10.0.0.0/33" is not a CIDR (...)`.

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{}: cannot read the config file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{at}: {problem}")]
    Invalid { at: Location, problem: String },
}

impl ConfigError {
    /// 1-based line of the offending text, when the problem has a place in the file.
    pub fn line(&self) -> Option<usize> {
        self.position().map(|p| p.line)
    }

    /// 1-based column (in characters) of the offending text.
    pub fn column(&self) -> Option<usize> {
        self.position().map(|p| p.column)
    }

    /// The problem without its location.
    pub fn problem(&self) -> String {
        match self {
            ConfigError::Read { source, .. } => source.to_string(),
            ConfigError::Invalid { problem, .. } => problem.clone(),
        }
    }

    fn position(&self) -> Option<Position> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Invalid { at, .. } => at.position,
        }
    }
}

/// Where in which file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file name as given, or what the caller called the text.
    pub origin: String,
    /// `None` for a problem with the file as a whole.
    pub position: Option<Position>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` of `text`.
    pub fn of(text: &str, offset: usize) -> Position {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |at| at + 1);
        Position {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(p) => write!(f, "{}:{}:{}", self.origin, p.line, p.column),
            None => f.write_str(&self.origin),
        }
    }
}

/// Builds errors against one text.
pub(super) struct Source<'a> {
    pub text: &'a str,
    pub origin: &'a str,
}

impl Source<'_> {
    pub fn error_at(&self, span: Range<usize>, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            at: Location {
                origin: self.origin.to_string(),
                position: Some(Position::of(self.text, span.start)),
            },
            problem: problem.into(),
        }
    }

    pub fn error(&self, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            at: Location {
                origin: self.origin.to_string(),
                position: None,
            },
            problem: problem.into(),
        }
    }

    pub fn toml_error(&self, err: toml::de::Error) -> ConfigError {
        let problem = err.message().trim_end().to_string();
        match err.span() {
            Some(span) => self.error_at(span, problem),
            None => self.error(problem),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_counts_lines_and_characters_from_one() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(Position::of(text, 0), Position { line: 1, column: 1 });
        assert_eq!(Position::of(text, 6), Position { line: 2, column: 1 });
        // "é" is two bytes but one column.
        let value = text.find('"').unwrap();
        assert_eq!(Position::of(text, value), Position { line: 2, column: 6 });
        assert_eq!(Position::of(text, 999).line, 3);
    }
}
