//! In-process locks: a futex mutex, a FIFO semaphore and a reader-writer lock. Waiters sleep on
//! a futex word, never in a queue in our memory, so a forked child inherits no waiter list.

pub mod affinity;
mod changes;
pub mod mutex;
pub mod rwlock;
pub mod semaphore;

pub use mutex::Mutex;
pub use rwlock::RwLock;
pub use semaphore::Semaphore;
