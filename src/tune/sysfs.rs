//! Reading and writing /proc and /sys values. Knobs name their files by absolute path
//! (`/proc/sys/net/core/rmem_max`); a [`SysRoot`] resolves them under a root, `/` on a
//! host and a directory tree in tests, so everything above runs without root against a
//! fake /proc and /sys.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use super::refusal::Refusal;

/// Where knob files live.
pub trait Tree {
    /// The value, without its trailing newline.
    fn read(&self, path: &str) -> Result<String, Refusal>;
    /// Writes the value; never creates a file that is not there.
    fn write(&self, path: &str, value: &str) -> Result<(), Refusal>;
    /// Names in a directory, sorted; empty when it is missing.
    fn list(&self, dir: &str) -> Vec<String>;
    /// Where a symbolic link points (/proc/self/ns/net), if it is one.
    fn link(&self, path: &str) -> Option<String>;
}

/// A tree under a root directory.
#[derive(Clone, Debug)]
pub struct SysRoot {
    root: PathBuf,
}

impl SysRoot {
    pub fn new(root: impl Into<PathBuf>) -> SysRoot {
        SysRoot { root: root.into() }
    }

    /// The host's own /proc and /sys.
    pub fn host() -> SysRoot {
        SysRoot::new("/")
    }

    fn resolve(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
}

impl Tree for SysRoot {
    fn read(&self, path: &str) -> Result<String, Refusal> {
        let text = fs::read_to_string(self.resolve(path))?;
        Ok(text.trim_end_matches('\n').to_string())
    }

    fn write(&self, path: &str, value: &str) -> Result<(), Refusal> {
        // Truncating is what a fake tree's plain files need; /proc and /sys ignore it.
        // One write call: sysfs takes a value per write, from offset 0.
        let mut file = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.resolve(path))?;
        file.write_all(format!("{value}\n").as_bytes())?;
        Ok(())
    }

    fn list(&self, dir: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.resolve(dir))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort_by_key(|a| natural(a));
        names
    }

    fn link(&self, path: &str) -> Option<String> {
        fs::read_link(self.resolve(path))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }
}

/// Sort key that puts `rx-2` before `rx-10` and `cpu9` before `cpu10`.
fn natural(name: &str) -> (String, u64) {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (stem, number) = name.split_at(name.len() - digits);
    (stem.to_string(), number.parse().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_sort_by_number() {
        let mut names = vec!["rx-10", "rx-2", "tx-0", "rx-0"];
        names.sort_by_key(|a| natural(a));
        assert_eq!(names, ["rx-0", "rx-2", "rx-10", "tx-0"]);
    }
}
