//! The multi-buffer AES-128-CBC behind the endpoint's batched sealing: install with
//! `Endpoint::set_batch_cipher(Box::new(MultiBufferCipher::new()))`.

use crate::proto::batch::{BatchCipher, BatchLane};

use super::multi_cbc::{encrypt_lanes_with, Backend, CbcLane, ExpandedKey};

/// Encrypts a batch's lanes in lock-step through [`encrypt_lanes_with`].
#[derive(Debug)]
pub struct MultiBufferCipher {
    backend: Backend,
    /// The lanes' keys in the kernels' layout, rebuilt each call, allocation kept.
    keys: Vec<ExpandedKey>,
}

impl MultiBufferCipher {
    /// The widest backend this CPU runs.
    pub fn new() -> Self {
        Self::with_backend(Backend::detect())
    }

    /// A particular backend, for tests and benchmarks; panics on use if the CPU lacks it.
    pub fn with_backend(backend: Backend) -> Self {
        MultiBufferCipher {
            backend,
            keys: Vec::new(),
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
        self.keys.clear();
        self.keys
            .extend(lanes.iter().map(|l| ExpandedKey::new(l.key)));
        let mut cbc: Vec<CbcLane<'_>> = lanes
            .iter_mut()
            .zip(&self.keys)
            .map(|(lane, key)| CbcLane {
                key,
                buf: &mut *lane.buf,
            })
            .collect();
        encrypt_lanes_with(self.backend, &mut cbc);
    }
}
