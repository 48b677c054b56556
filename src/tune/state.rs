//! The state file: each value `apply` is about to change, as it was, written (and
//! synced) before the first change. `revert` writes those values back. A second `apply`
//! adds to the file and keeps the first one's values, so `revert` always returns to what
//! the host had before any `apply`.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::knob::Target;

/// Where `apply` keeps what it changed, unless `--state` says otherwise.
pub const DEFAULT_PATH: &str = "/var/lib/rtmfp-edge/tune-state.json";

const VERSION: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// The network namespace `apply` ran in (`net:[4026531840]`), if known.
    pub namespace: Option<String>,
    pub saved: Vec<Saved>,
}

/// One knob's value before `apply` changed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub knob: String,
    pub target: Target,
    /// Exactly what was read, written back as is.
    pub previous: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("reading the state file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("the state file {path} is not one tune wrote ({source}); move it away, or pass another --state")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("the state file {path} is version {found}; this tune reads version {VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error(
        "the state file {path} was written in network namespace {saved}, and this is {here}: \
         run tune there (ip netns exec NAME rtmfp-edge tune ...), or pass another --state"
    )]
    Namespace {
        path: PathBuf,
        saved: String,
        here: String,
    },
    #[error("no state file at {path}: nothing to revert (apply writes one; see --state)")]
    Missing { path: PathBuf },
    #[error("writing the state file {path}: {source} (run as root, or pass --state FILE somewhere writable)")]
    Write { path: PathBuf, source: io::Error },
}

impl State {
    pub fn new(namespace: Option<String>) -> State {
        State {
            version: VERSION,
            namespace,
            saved: Vec::new(),
        }
    }

    /// The state at `path`, or `None` when there is no file.
    pub fn load(path: &Path) -> Result<Option<State>, StateError> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Read {
                    path: path.into(),
                    source,
                })
            }
        };
        let state: State = serde_json::from_str(&text).map_err(|source| StateError::Parse {
            path: path.into(),
            source,
        })?;
        if state.version != VERSION {
            return Err(StateError::Version {
                path: path.into(),
                found: state.version,
            });
        }
        Ok(Some(state))
    }

    /// Refuses a state saved in another network namespace than `here`: its files are
    /// not the ones this namespace sees.
    pub fn check_namespace(&self, path: &Path, here: Option<&str>) -> Result<(), StateError> {
        match (self.namespace.as_deref(), here) {
            (Some(saved), Some(here)) if saved != here => Err(StateError::Namespace {
                path: path.into(),
                saved: saved.into(),
                here: here.into(),
            }),
            _ => Ok(()),
        }
    }

    /// The saved value of `target`, if any.
    pub fn find(&self, target: &Target) -> Option<&Saved> {
        self.saved.iter().find(|s| s.target == *target)
    }

    /// Writes the state durably: a temporary file beside it, synced, then renamed over,
    /// so a crash leaves the old file or the new one, never half of one.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let fail = |source| StateError::Write {
            path: path.into(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(fail)?;
        }
        let mut text = serde_json::to_string_pretty(self).map_err(|e| fail(e.into()))?;
        text.push('\n');
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut file = fs::File::create(&tmp).map_err(fail)?;
        file.write_all(text.as_bytes()).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        fs::rename(&tmp, path).map_err(fail)?;
        Ok(())
    }

    /// Removes the file: everything in it was restored.
    pub fn remove(path: &Path) -> Result<(), StateError> {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StateError::Write {
                path: path.into(),
                source: e,
            }),
            _ => Ok(()),
        }
    }
}
