//! Inter-process locks on files (OFD locks on Linux), interoperable with oslo's `lockf` locks,
//! and oslo's lock-file naming.

pub mod lock;
pub mod naming;

pub use lock::FileLock;
