//! ferrolock: the lock core behind the `ferrolock` Python package.
//!
//! The core (every module but `python`) has no Python in it: it is plain Rust, tested by
//! `cargo test`. `python` is the one PyO3 binding layer, built only with the `python` feature.

pub mod ceph;
pub mod error;
pub mod file;
pub mod local;
pub mod lock;
pub mod mysql;
pub mod proxy;
pub mod registry;
mod sys;
pub use sys::fork;
pub mod wait;

#[cfg(feature = "python")]
mod python;

pub use error::LockError;
pub use lock::{Both, Guard, Lock, Raw, RawLock, Until};
pub use wait::acquire;
