//! A named MySQL/MariaDB lock (`GET_LOCK`), for every process and host that uses the server.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::hold::{Hold, LostHook, Released};
use super::names::server_name;
use super::pool::{pool_for, Pool, Pooled};
use super::session::{backend_error, Failure, Holder};
use super::url::{MySqlUrl, UrlError};
use crate::fork;
use crate::Until;
use crate::{Lock, LockError};

/// The longest server-side wait per round trip: how late a deadline or Ctrl-C is noticed
/// while waiting. Each step costs one round trip (~60 µs on a LAN), so short steps are cheap.
const MAX_STEP: Duration = Duration::from_millis(500);

pub struct MySqlLock {
    pool: Arc<Pool>,
    name: String,
    server_name: String,
    on_lost: Option<LostHook>,
    /// The current hold, with the process generation it was taken in.
    hold: Mutex<Option<(Arc<Hold>, u64)>>,
}

impl MySqlLock {
    /// A lock named `name` on the server of `url`. Connects lazily, at the first acquire.
    ///
    /// # Errors
    /// `UrlError` when the URL is malformed (the message never contains the password).
    pub fn new(url: &str, name: &str) -> Result<MySqlLock, UrlError> {
        let parsed = MySqlUrl::parse(url)?;
        Ok(MySqlLock {
            pool: pool_for(url, &parsed),
            name: name.to_owned(),
            server_name: server_name(name).into_owned(),
            on_lost: None,
            hold: Mutex::new(None),
        })
    }

    /// Call `hook(name, reason)` once when a held lock is found lost (on the keepalive thread).
    #[must_use]
    pub fn with_on_lost(mut self, hook: LostHook) -> MySqlLock {
        self.on_lost = Some(hook);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name `GET_LOCK` sees (long names are mapped to 64 characters).
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    pub fn url(&self) -> &MySqlUrl {
        &self.pool.url
    }

    /// Held through this object in this process.
    pub fn locked(&self) -> bool {
        matches!(&*self.hold.lock(), Some((_, g)) if *g == fork::generation())
    }

    /// The server's id of the session holding the lock through this object, if held here.
    pub fn connection_id(&self) -> Option<u32> {
        match &*self.hold.lock() {
            Some((hold, g)) if *g == fork::generation() => Some(hold.connection_id),
            _ => None,
        }
    }

    /// Connections this process opened to the lock's URL so far.
    pub fn connections_opened(&self) -> u64 {
        self.pool.connections_opened()
    }

    pub fn connections_open(&self) -> usize {
        self.pool.connections_open()
    }

    /// Who holds the name on the server now, whoever they are.
    ///
    /// # Errors
    /// `LockError::Backend` when the server cannot be asked.
    pub fn holder(&self) -> Result<Option<Holder>, LockError> {
        let mut pooled = self.pool.checkout()?;
        let answer = match pooled.session().holder(&self.server_name) {
            Err(Failure::Connection(_)) if pooled.reused => {
                pooled = self.pool.fresh()?;
                pooled.session().holder(&self.server_name)
            }
            other => other,
        };
        let holder = answer.map_err(|f| f.into_error(&self.pool.url))?;
        pooled.give_back();
        Ok(holder)
    }

    /// One bounded `GET_LOCK`; a reused session that turns out dead (server restarted while it
    /// idled) is replaced once.
    fn step(&self, pooled: &mut Pooled, wait: Duration) -> Result<bool, LockError> {
        let answer = match pooled.session().get_lock(&self.server_name, wait) {
            Err(Failure::Connection(_)) if pooled.reused => {
                *pooled = self.pool.fresh()?;
                pooled.session().get_lock(&self.server_name, wait)
            }
            other => other,
        };
        match answer {
            Ok(Some(got)) => Ok(got),
            Ok(None) => Err(backend_error(
                &self.pool.url,
                format!("GET_LOCK({:?}) returned NULL (the wait was killed?)", self.server_name),
            )),
            Err(f) => Err(f.into_error(&self.pool.url)),
        }
    }
}

impl Lock for MySqlLock {
    fn blocking_io(&self) -> bool {
        true
    }

    fn max_step(&self) -> Duration {
        // The answer to a step must come back within the read timeout, with room to spare.
        MAX_STEP.min(self.pool.url.read_timeout / 3)
    }

    /// Steps of `GET_LOCK(name, step)`: the server wakes us when the lock is free, and between
    /// steps the caller's `interrupted` is asked. On any error the session is closed, which
    /// frees the lock if the server granted it as we gave up.
    fn acquire(
        &self,
        until: Until,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<bool, LockError> {
        let mut pooled = self.pool.checkout()?;
        let max = self.max_step();
        loop {
            let step = until.step.min(max);
            let wait = until.left().map_or(step, |left| left.min(step));
            if self.step(&mut pooled, wait)? {
                let hold = Hold::start(&self.name, &self.server_name, pooled, self.on_lost.clone());
                *self.hold.lock() = Some((hold, fork::generation()));
                return Ok(true);
            }
            if until.passed() {
                pooled.give_back();
                return Ok(false);
            }
            if interrupted() {
                pooled.give_back();
                return Err(LockError::Interrupted);
            }
        }
    }

    fn release(&self) -> Result<(), LockError> {
        let Some((hold, generation)) = self.hold.lock().take() else {
            return Err(LockError::NotHeld);
        };
        if generation != fork::generation() {
            // Taken by our parent before a fork: its session is the parent's, never ours.
            return Err(LockError::NotHeld);
        }
        match hold.release() {
            Released::Done => Ok(()),
            Released::Lost(reason) => Err(LockError::Lost { name: self.name.clone(), reason }),
        }
    }

    fn is_still_owner(&self) -> Result<bool, LockError> {
        let hold = match &*self.hold.lock() {
            Some((hold, g)) if *g == fork::generation() => hold.clone(),
            _ => return Ok(false),
        };
        Ok(hold.check())
    }
}

impl std::fmt::Debug for MySqlLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MySqlLock({:?} on {})", self.name, self.pool.url.redacted())
    }
}
