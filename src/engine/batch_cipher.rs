//! The multi-buffer AES-128-CBC behind the endpoint's batched sealing: install with
//! `Endpoint::set_batch_cipher(Box::new(MultiBufferCipher::new()))`.

use std::collections::HashMap;

use crate::proto::batch::{BatchCipher, BatchLane};

use super::multi_cbc::{encrypt_lanes_with, Backend, CbcLane, ExpandedKey};

/// Encrypts a batch's lanes in lock-step through [`encrypt_lanes_with`].
#[derive(Debug)]
pub struct MultiBufferCipher {
    backend: Backend,
    /// Expanded keys by where the session keeps its key, with the key itself to detect
    /// a different session's key at a reused address: a session's packets all use one
    /// key, so expanding it per packet would cost more than encrypting 1,200 bytes.
    expanded: HashMap<usize, ([u8; 16], ExpandedKey)>,
}

/// More cached keys than this (sessions come and go) and the cache starts over.
const MAX_CACHED_KEYS: usize = 1 << 16;

impl MultiBufferCipher {
    /// The widest backend this CPU runs.
    pub fn new() -> Self {
        Self::with_backend(Backend::detect())
    }

    /// A particular backend, for tests and benchmarks; panics on use if the CPU lacks it.
    pub fn with_backend(backend: Backend) -> Self {
        MultiBufferCipher {
            backend,
            expanded: HashMap::new(),
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }
}

impl Default for MultiBufferCipher {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchCipher for MultiBufferCipher {
    fn encrypt_lanes(&mut self, lanes: &mut [BatchLane<'_>]) {
        if self.expanded.len() > MAX_CACHED_KEYS {
            self.expanded.clear();
        }
        // First make sure every lane's key is expanded, then borrow them all: no key is
        // expanded or copied per packet.
        for lane in lanes.iter() {
            let entry = self
                .expanded
                .entry(key_address(lane.key))
                .or_insert_with(|| (*lane.key, ExpandedKey::new(lane.key)));
            if entry.0 != *lane.key {
                *entry = (*lane.key, ExpandedKey::new(lane.key));
            }
        }
        let expanded = &self.expanded;
        let mut cbc: Vec<CbcLane<'_>> = lanes
            .iter_mut()
            .filter_map(|lane| {
                let (_, key) = expanded.get(&key_address(lane.key))?;
                Some(CbcLane {
                    key,
                    buf: &mut *lane.buf,
                })
            })
            .collect();
        encrypt_lanes_with(self.backend, &mut cbc);
    }
}

/// Where a session keeps its key: stable while the session lives.
fn key_address(key: &[u8; 16]) -> usize {
    key as *const [u8; 16] as usize
}
