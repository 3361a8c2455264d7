//! MySQL/MariaDB named locks (`GET_LOCK`), shared by every process and host using one server.
//!
//! - The server does the waiting: `GET_LOCK(name, step)` in bounded steps, never client-side
//!   sleep-polling; a step's answer comes back within the URL's `read_timeout`.
//! - `GET_LOCK` is per session and re-entrant in a session, so each hold pins its own session
//!   from a per-URL pool (`pool`), returned only after `RELEASE_LOCK`.
//! - The server frees a lock when its session ends and tells nobody: a keepalive thread checks
//!   each hold (`hold`), and lock sessions get a short `wait_timeout` so that a holder that
//!   stops answering loses the lock in bounded time.
//! - Galera does not replicate `GET_LOCK`; such a server is refused unless the URL opts in.
//! - Names over 64 characters (MySQL's limit) map to a prefix plus a hash (`names`).

mod hold;
mod lock;
pub mod names;
mod pool;
mod session;
pub mod url;

pub use hold::LostHook;
pub use lock::MySqlLock;
pub use session::Holder;
pub use url::{MySqlUrl, UrlError};
