//! Lock sessions per URL, reused across acquisitions.
//!
//! `GET_LOCK` belongs to a session and is re-entrant in it, so two holders must never share
//! one: a lock takes a session out of the pool for the whole time it waits and holds, and puts
//! it back only after `RELEASE_LOCK` (a session in the pool holds nothing). Reuse is what makes a
//! service that takes 10,000 locks open a handful of connections (tooz opens one per lock).
//!
//! Bounds: at most `pool_size` idle sessions are kept and at most `max_connections` are open at
//! once (holders and waiters each pin one); past that, acquiring fails at once rather than
//! waiting for a session, which could wait for ever on a holder that waits for us.
//!
//! A forked child gets fresh pools (`PerProcess`); the parent's sessions are leaked there.

use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::session::{backend_error, Session};
use super::url::MySqlUrl;
use crate::fork::PerProcess;
use crate::LockError;

#[derive(Default)]
struct Pools(Mutex<HashMap<String, Arc<Pool>>>);

static POOLS: PerProcess<Pools> = PerProcess::new();

/// The pool for `url` (keyed by its exact text) in this process.
pub fn pool_for(text: &str, url: &MySqlUrl) -> Arc<Pool> {
    let mut pools = POOLS.get().0.lock();
    pools
        .entry(text.to_owned())
        .or_insert_with(|| {
            Arc::new(Pool {
                url: url.clone(),
                idle: Mutex::new(Vec::new()),
                open: AtomicUsize::new(0),
                opened: AtomicU64::new(0),
            })
        })
        .clone()
}

pub struct Pool {
    pub url: MySqlUrl,
    idle: Mutex<Vec<Session>>,
    open: AtomicUsize,
    /// Connections ever opened, for the benchmark's "connections per 1,000 cycles".
    opened: AtomicU64,
}

impl Pool {
    /// A session holding no lock: an idle one when there is one still alive, else a new one.
    /// `reused` says it came from the pool (it may have died since: the caller retries once on
    /// a fresh one when it fails at once).
    ///
    /// # Errors
    /// `LockError::Backend` when connecting fails or `max_connections` are open.
    pub fn checkout(self: &Arc<Self>) -> Result<Pooled, LockError> {
        // An idle session ends `wait_timeout` after its last query: do not hand out one that
        // may be ending as we use it.
        let idle_limit = Duration::from_secs(u64::from(self.url.wait_timeout))
            .saturating_sub(Duration::from_secs(1));
        loop {
            let Some(session) = self.idle.lock().pop() else { break };
            if session.last_used.elapsed() < idle_limit {
                return Ok(Pooled::new(session, self.clone(), true));
            }
            self.forget(session);
        }
        self.fresh()
    }

    /// A newly opened session.
    ///
    /// # Errors
    /// As `checkout`.
    pub fn fresh(self: &Arc<Self>) -> Result<Pooled, LockError> {
        let max = self.url.max_connections;
        if self.open.fetch_add(1, Ordering::AcqRel) >= max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(backend_error(
                &self.url,
                format!(
                    "{max} connections already open for this URL in this process (each held or \
                     awaited lock uses one); raise max_connections in the URL"
                ),
            ));
        }
        match Session::open(&self.url) {
            Ok(session) => {
                self.opened.fetch_add(1, Ordering::Relaxed);
                Ok(Pooled::new(session, self.clone(), false))
            }
            Err(e) => {
                self.open.fetch_sub(1, Ordering::AcqRel);
                Err(e)
            }
        }
    }

    fn forget(&self, session: Session) {
        drop(session);
        self.open.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn connections_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    pub fn connections_open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// A session out of the pool. Dropped, it is closed, never pooled: after an error its state is
/// unknown, and closing the session frees whatever lock it may hold on the server.
pub struct Pooled {
    session: ManuallyDrop<Session>,
    pool: Arc<Pool>,
    pub reused: bool,
    back: bool,
}

impl Pooled {
    fn new(session: Session, pool: Arc<Pool>, reused: bool) -> Pooled {
        Pooled { session: ManuallyDrop::new(session), pool, reused, back: false }
    }

    pub fn session(&mut self) -> &mut Session {
        &mut self.session
    }

    /// Back to the pool: only for a session that holds no lock.
    pub fn give_back(mut self) {
        self.back = true;
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        // SAFETY: taken once, here, and `self.session` is not touched after.
        let session = unsafe { ManuallyDrop::take(&mut self.session) };
        if self.back && session.is_ours() {
            let mut idle = self.pool.idle.lock();
            if idle.len() < self.pool.url.pool_size {
                idle.push(session);
                return;
            }
        }
        self.pool.forget(session);
    }
}
