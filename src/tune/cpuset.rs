//! Sets of CPUs in the two spellings the kernel uses for them: the hex bitmap of
//! `rps_cpus`, `xps_cpus` and `smp_affinity` (`3`, `00000000,00000003`: 32-bit words,
//! most significant first), and the list of `smp_affinity_list` and `cpuset` files
//! (`0-3,8`).

use std::collections::BTreeSet;
use std::fmt;

/// A set of CPU numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuSet(BTreeSet<usize>);

/// Which spelling a file takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuFormat {
    /// Hex bitmap, comma between 32-bit words: `rps_cpus`, `xps_cpus`.
    Mask,
    /// Ranges: `smp_affinity_list`.
    List,
}

impl CpuSet {
    pub fn new() -> CpuSet {
        CpuSet::default()
    }

    pub fn insert(&mut self, cpu: usize) {
        self.0.insert(cpu);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().copied()
    }

    /// Parses either spelling: `format` says which the text is in.
    pub fn parse(text: &str, format: CpuFormat) -> Option<CpuSet> {
        match format {
            CpuFormat::Mask => CpuSet::parse_mask(text),
            CpuFormat::List => CpuSet::parse_list(text),
        }
    }

    /// `00000000,00000003` or `3` → {0, 1}.
    pub fn parse_mask(text: &str) -> Option<CpuSet> {
        let digits: String = text.trim().chars().filter(|&c| c != ',').collect();
        if digits.is_empty() {
            return None;
        }
        let mut set = CpuSet::new();
        for (i, c) in digits.chars().rev().enumerate() {
            let nibble = c.to_digit(16)? as usize;
            for bit in 0..4 {
                if nibble & (1 << bit) != 0 {
                    set.insert(i * 4 + bit);
                }
            }
        }
        Some(set)
    }

    /// `0-3,8` → {0, 1, 2, 3, 8}; the empty string is the empty set.
    pub fn parse_list(text: &str) -> Option<CpuSet> {
        let mut set = CpuSet::new();
        for part in text.trim().split(',').filter(|p| !p.is_empty()) {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?);
                    if a > b {
                        return None;
                    }
                    (a..=b).for_each(|c| set.insert(c));
                }
                None => set.insert(part.parse().ok()?),
            }
        }
        Some(set)
    }

    /// The text to write in `format`.
    pub fn format(&self, format: CpuFormat) -> String {
        match format {
            CpuFormat::Mask => self.mask(),
            CpuFormat::List => self.list(),
        }
    }

    /// Hex bitmap: the most significant word unpadded, the others as 8 digits.
    pub fn mask(&self) -> String {
        let words = self.0.iter().next_back().map_or(1, |&top| top / 32 + 1);
        let mut bits = vec![0u32; words];
        for cpu in self.iter() {
            bits[cpu / 32] |= 1 << (cpu % 32);
        }
        let mut out = format!("{:x}", bits[words - 1]);
        for word in bits[..words - 1].iter().rev() {
            out.push_str(&format!(",{word:08x}"));
        }
        out
    }

    /// Ranges, as the kernel prints them: `0-3,8`.
    pub fn list(&self) -> String {
        let mut out = Vec::new();
        let mut cpus = self.iter().peekable();
        while let Some(start) = cpus.next() {
            let mut end = start;
            while cpus.peek() == Some(&(end + 1)) {
                end = cpus.next().unwrap_or(end);
            }
            out.push(if start == end {
                start.to_string()
            } else {
                format!("{start}-{end}")
            });
        }
        out.join(",")
    }
}

impl FromIterator<usize> for CpuSet {
    fn from_iter<I: IntoIterator<Item = usize>>(iter: I) -> CpuSet {
        CpuSet(iter.into_iter().collect())
    }
}

/// Lists, the readable spelling.
impl fmt::Display for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&self.list())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_read_the_kernels_padded_words() {
        let set = CpuSet::parse_mask("00000000,00000003").unwrap();
        assert_eq!(set.list(), "0-1");
        let set = CpuSet::parse_mask("1,00000000").unwrap();
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![32]);
        assert!(CpuSet::parse_mask("0").unwrap().is_empty());
        assert!(CpuSet::parse_mask("00").unwrap().is_empty());
        assert_eq!(CpuSet::parse_mask("zz"), None);
    }

    #[test]
    fn masks_are_written_word_by_word() {
        assert_eq!([0, 1].into_iter().collect::<CpuSet>().mask(), "3");
        assert_eq!([1, 33].into_iter().collect::<CpuSet>().mask(), "2,00000002");
        assert_eq!(CpuSet::new().mask(), "0");
    }

    #[test]
    fn lists_round_trip_through_ranges() {
        let set = CpuSet::parse_list("0-3,8,10-11").unwrap();
        assert_eq!(set.len(), 7);
        assert_eq!(set.list(), "0-3,8,10-11");
        assert_eq!(CpuSet::parse_list("5").unwrap().mask(), "20");
        assert!(CpuSet::parse_list("").unwrap().is_empty());
        assert_eq!(CpuSet::parse_list("3-1"), None);
    }
}
