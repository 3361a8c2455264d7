//! The one error type of the core. "Busy" is never an error: acquire calls report it as
//! `Ok(false)`; errors are bad input, broken lock storage and misuse.

use std::fmt;
use std::io;
use std::path::PathBuf;

#[derive(Debug)]
pub enum LockError {
    /// The lock name cannot be used (empty, NUL byte, too long for a file name).
    InvalidName { name: String, reason: String },
    /// The lock directory cannot hold lock files (is a file, cannot be created, not writable).
    LockPath { path: PathBuf, source: io::Error },
    /// An I/O call on a lock file failed for another reason.
    Io { path: PathBuf, op: &'static str, source: io::Error },
    /// `release()` of a lock this handle does not hold.
    NotHeld,
    /// The caller's interrupt check asked the wait to stop (e.g. a pending signal).
    Interrupted,
    /// The request contradicts the lock's state (e.g. a reader asking to become a writer).
    Misuse(&'static str),
    /// A parameter no lock could use (a semaphore of zero permits, a malformed server URL).
    /// The text names the bad part, never a secret.
    InvalidArgument(String),
    /// A lock server or its connection failed (refused, unreachable, timed out, rejected our
    /// credentials). `server` names where (host:port, a cluster), never a password.
    Backend { backend: &'static str, server: String, message: String },
    /// A lock that was held has been taken away (session killed, lease expired, fenced). It is
    /// not held any more.
    Lost { name: String, reason: String },
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::InvalidName { name, reason } => {
                write!(f, "invalid lock name {name:?}: {reason}")
            }
            LockError::LockPath { path, source } => {
                write!(f, "lock_path {} cannot hold lock files: {source}", path.display())
            }
            LockError::Io { path, op, source } => {
                write!(f, "{op} {} failed: {source}", path.display())
            }
            LockError::NotHeld => f.write_str("release of a lock that is not held"),
            LockError::Interrupted => f.write_str("wait for the lock was interrupted"),
            LockError::Misuse(what) => f.write_str(what),
            LockError::InvalidArgument(what) => f.write_str(what),
            LockError::Backend { backend, server, message } => {
                write!(f, "{backend} lock server {server}: {message}")
            }
            LockError::Lost { name, reason } => write!(f, "lock {name:?} was lost: {reason}"),
        }
    }
}

impl std::error::Error for LockError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LockError::LockPath { source, .. } | LockError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
