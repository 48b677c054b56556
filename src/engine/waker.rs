//! Waking a sleeping shard from another: an eventfd, written only when the shard said it
//! is about to sleep, so a busy shard receiving a stream of ring messages costs its
//! producers no system call at all.
//!
//! The protocol (Dekker-style, both sides sequentially consistent):
//! - the sleeper stores `sleeping = true`, then checks its rings once more, then sleeps
//!   on the eventfd (with its other events);
//! - a producer pushes into the ring, then swaps `sleeping` to false and writes the
//!   eventfd if it was true.
//!
//! Either the sleeper's last check sees the message, or the producer sees `sleeping`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
    sleeping: AtomicBool,
}

impl Waker {
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd has no memory preconditions; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Waker {
            // SAFETY: a fresh descriptor we own.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            sleeping: AtomicBool::new(false),
        })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The owner is about to sleep: check the rings once more after this.
    pub fn prepare_sleep(&self) {
        self.sleeping.store(true, Ordering::SeqCst);
    }

    /// The owner is awake again.
    pub fn awake(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
    }

    /// Wakes the owner if it sleeps (call after pushing into its ring).
    pub fn wake(&self) {
        if self.sleeping.swap(false, Ordering::SeqCst) {
            self.signal();
        }
    }

    /// Writes the eventfd unconditionally (stop requests).
    pub fn signal(&self) {
        let one = 1u64;
        // SAFETY: writes 8 bytes from a valid u64; an eventfd at its maximum returns
        // EAGAIN, which is fine: it is already readable.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Resets the counter (the poll loop reads it after a wakeup; io_uring reads it by
    /// itself).
    pub fn drain(&self) {
        let mut value = 0u64;
        // SAFETY: reads at most 8 bytes into a valid u64; EAGAIN when not signalled.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
    }
}
