//! Handing a reloaded config to every shard (SIGHUP), the way the drain reaches them:
//! `serve` stores the new config and wakes the shards; each shard sees it at its next
//! turn (within its longest sleep) and gives it to its server.
//!
//! A shard's turn costs one atomic load; the mutex is taken only when a new config is
//! there to take, once per shard per reload: control plane, never the data path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::waker::Waker;
use crate::server::config::ServerConfig;

#[derive(Debug)]
struct Latest {
    /// How many configs were published; shards compare it with the one they took.
    generation: AtomicU64,
    config: Mutex<Arc<ServerConfig>>,
}

impl Latest {
    fn lock(&self) -> MutexGuard<'_, Arc<ServerConfig>> {
        // A panic elsewhere while holding it left a whole `Arc`, never half of one.
        self.config.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `serve`'s end: publishes a new config to every shard.
#[derive(Debug, Clone)]
pub struct ConfigFeed {
    latest: Arc<Latest>,
    wakers: Vec<Arc<Waker>>,
}

/// A shard's end: the configs published since it last looked.
#[derive(Debug)]
pub struct ConfigSubscription {
    latest: Arc<Latest>,
    taken: u64,
}

impl ConfigFeed {
    /// A feed whose shards start with `config`; `wakers` wake them when a new one comes.
    pub fn new(config: Arc<ServerConfig>, wakers: Vec<Arc<Waker>>) -> Self {
        ConfigFeed {
            latest: Arc::new(Latest {
                generation: AtomicU64::new(0),
                config: Mutex::new(config),
            }),
            wakers,
        }
    }

    /// For one shard, which already runs with the current config.
    pub fn subscribe(&self) -> ConfigSubscription {
        let latest = Arc::clone(&self.latest);
        let taken = latest.generation.load(Ordering::SeqCst);
        ConfigSubscription { latest, taken }
    }

    /// Every shard takes `config` at its next turn.
    pub fn publish(&self, config: Arc<ServerConfig>) {
        {
            let mut current = self.latest.lock();
            *current = config;
            self.latest.generation.fetch_add(1, Ordering::SeqCst);
        }
        for w in &self.wakers {
            w.signal();
        }
    }
}

impl ConfigSubscription {
    /// The latest config, if one was published since the last call; several published
    /// in between come as the last of them.
    pub fn take_newer(&mut self) -> Option<Arc<ServerConfig>> {
        if self.latest.generation.load(Ordering::SeqCst) == self.taken {
            return None;
        }
        let current = self.latest.lock();
        // Read under the lock, which `publish` holds while it changes both.
        self.taken = self.latest.generation.load(Ordering::SeqCst);
        Some(Arc::clone(&current))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(app: &str) -> Arc<ServerConfig> {
        let text = format!("[[app]]\nname = \"{app}\"\n");
        Arc::new(ServerConfig::parse(&text, "test.toml").unwrap())
    }

    #[test]
    fn a_shard_takes_each_published_config_once_and_only_the_latest() {
        let feed = ConfigFeed::new(config("a"), Vec::new());
        let mut shard = feed.subscribe();
        assert!(
            shard.take_newer().is_none(),
            "it runs with the first already"
        );
        feed.publish(config("b"));
        feed.publish(config("c"));
        let taken = shard.take_newer().expect("the newer config");
        assert!(taken.app("c").is_some(), "the last one published");
        assert!(shard.take_newer().is_none(), "taken once");
        let mut late = feed.subscribe();
        assert!(
            late.take_newer().is_none(),
            "a new subscriber starts current"
        );
    }

    #[test]
    fn publishing_wakes_every_shard() {
        let wakers: Vec<Arc<Waker>> = (0..2).map(|_| Arc::new(Waker::new().unwrap())).collect();
        let feed = ConfigFeed::new(config("a"), wakers.clone());
        feed.publish(config("b"));
        for w in &wakers {
            let mut value = 0u64;
            // SAFETY: reads at most 8 bytes into a live u64 from an eventfd the waker
            // owns for the whole call.
            let n = unsafe { libc::read(w.fd(), (&mut value as *mut u64).cast(), 8) };
            assert_eq!((n, value), (8, 1), "the shard's eventfd was written");
        }
    }
}
