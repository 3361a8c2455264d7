//! Ceph locks: the managed exclusive lock of an RBD image (`RbdLock`) and librados object
//! locks with a lease (`RadosLock`). librados and librbd are loaded at run time (`ffi`): nothing
//! of Ceph is needed to build, and hosts without it only fail when they use a Ceph lock.

pub mod cluster;
mod events;
pub mod ffi;
pub mod rados;
pub mod rbd;

pub use cluster::ClusterKey;
pub use rados::{ObjectKey, RadosLock};
pub use rbd::{ImageKey, Owner, RbdLock, RbdOptions, Watcher};
