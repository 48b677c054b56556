//! Why a knob could not be read or written. Every one is reported beside its knob and
//! none stops `tune`: a container's read-only /proc, a NIC without the feature or a
//! kernel without the file is normal on some hosts.

use std::io;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("missing (this kernel or device has no such file)")]
    Missing,
    #[error("not permitted (not root, or read-only in this container or namespace)")]
    NotPermitted,
    #[error("read-only file system (a container's /proc or /sys)")]
    ReadOnly,
    #[error("refused by the kernel: invalid value or not supported by the device")]
    Invalid,
    #[error("{0}")]
    Unavailable(String),
    #[error("failed: {0}")]
    Failed(String),
}

impl From<io::Error> for Refusal {
    fn from(e: io::Error) -> Refusal {
        // io::ErrorKind::ReadOnlyFilesystem is newer than our MSRV: match the errno.
        match (e.kind(), e.raw_os_error()) {
            (io::ErrorKind::NotFound, _) => Refusal::Missing,
            (io::ErrorKind::PermissionDenied, _) => Refusal::NotPermitted,
            (_, Some(libc::EROFS)) => Refusal::ReadOnly,
            (_, Some(libc::EINVAL | libc::EOPNOTSUPP | libc::ERANGE)) => Refusal::Invalid,
            _ => Refusal::Failed(e.to_string()),
        }
    }
}
