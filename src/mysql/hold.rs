//! A held MySQL lock and the thread that keeps it alive.
//!
//! The server frees a lock when its session ends (`KILL CONNECTION`, a restart, `wait_timeout`
//! of a holder that stopped answering) and tells nobody. So while a lock is held one thread per
//! process asks, every `CHECK_EVERY`, `IS_USED_LOCK(name) = CONNECTION_ID()` on each holder's
//! session: the answer both resets the session's idle clock and reveals a loss, which is then
//! recorded (`is_still_owner()` turns false, `release()` reports it) and announced to the
//! lock's `on_lost` hook. A check waits at most the URL's `read_timeout` for its answer, so a
//! loss is noticed within `CHECK_EVERY + read_timeout` (2 s with the defaults).

use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::pool::Pooled;
use super::session::Failure;
use crate::fork::PerProcess;

/// How often a holder's session is checked.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);

/// Called once when a held lock is found lost: `(name, reason)`. Runs on the keepalive thread
/// or on the thread that found the loss.
pub type LostHook = Arc<dyn Fn(&str, &str) + Send + Sync>;

pub struct Hold {
    /// The caller's name (for the hook and errors) and the server's.
    pub name: String,
    pub server_name: String,
    /// The holding session's id on the server (`KILL CONNECTION` takes it).
    pub connection_id: u32,
    /// The pinned session; `None` once lost or released.
    session: Mutex<Option<Pooled>>,
    lost: Mutex<Option<String>>,
    on_lost: Option<LostHook>,
}

/// What `Hold::release` found.
pub enum Released {
    Done,
    Lost(String),
}

impl Hold {
    pub fn start(
        name: &str,
        server_name: &str,
        mut session: Pooled,
        on_lost: Option<LostHook>,
    ) -> Arc<Hold> {
        let hold = Arc::new(Hold {
            connection_id: session.session().id,
            name: name.to_owned(),
            server_name: server_name.to_owned(),
            session: Mutex::new(Some(session)),
            lost: Mutex::new(None),
            on_lost,
        });
        KEEPALIVE.get().watch(&hold);
        hold
    }

    /// Ask the server whether the hold is still ours; a loss is recorded and announced.
    pub fn check(&self) -> bool {
        let mut slot = self.session.lock();
        let Some(pooled) = slot.as_mut() else { return false };
        let reason = match pooled.session().owns(&self.server_name) {
            Ok(true) => return true,
            Ok(false) => "the server shows the lock free or held by another session".to_owned(),
            Err(Failure::Server(m)) => format!("the lock session failed: {m}"),
            Err(Failure::Connection(m)) => format!("the lock session's connection failed: {m}"),
        };
        // The reason is recorded before the session goes, so a release that finds no session
        // says why. Closing the session frees the lock if the server still counts it as ours.
        let first = self.record_loss(&reason);
        *slot = None;
        drop(slot);
        if first {
            if let Some(hook) = &self.on_lost {
                hook(&self.name, &reason);
            }
        }
        false
    }

    /// Like `check`, without a round trip when the keepalive is busy with it: used by the
    /// keepalive thread, which must not queue behind a release.
    fn check_unless_busy(&self) {
        let busy = match self.session.try_lock() {
            Some(slot) => slot.is_none(),
            None => true,
        };
        if !busy {
            self.check();
        }
    }

    /// Whether this is the first loss recorded (the hook is then called, once).
    fn record_loss(&self, reason: &str) -> bool {
        let mut lost = self.lost.lock();
        let first = lost.is_none();
        if first {
            *lost = Some(reason.to_owned());
        }
        first
    }

    pub fn lost_reason(&self) -> Option<String> {
        self.lost.lock().clone()
    }

    /// `RELEASE_LOCK` and the session back to the pool; or why the lock was no longer ours.
    pub fn release(&self) -> Released {
        let Some(mut pooled) = self.session.lock().take() else {
            return Released::Lost(self.lost_reason().unwrap_or_else(|| "released".to_owned()));
        };
        match pooled.session().release_lock(&self.server_name) {
            Ok(Some(true)) => {
                pooled.give_back();
                Released::Done
            }
            Ok(_) => Released::Lost(
                "the server shows the lock free or held by another session (was the session \
                 killed and the lock taken meanwhile?)"
                    .to_owned(),
            ),
            Err(f) => Released::Lost(format!(
                "the lock session failed while releasing, so it was closed: {}",
                f.message()
            )),
        }
    }
}

/// The one keepalive thread of this process and the holds it watches.
#[derive(Default)]
struct Keepalive {
    holds: Mutex<Vec<Weak<Hold>>>,
    wake: Condvar,
    started: Mutex<bool>,
}

static KEEPALIVE: PerProcess<Keepalive> = PerProcess::new();

impl Keepalive {
    fn watch(&'static self, hold: &Arc<Hold>) {
        self.holds.lock().push(Arc::downgrade(hold));
        self.wake.notify_one();
        let mut started = self.started.lock();
        if !*started {
            let spawned = thread::Builder::new()
                .name("ferrolock-mysql-keepalive".to_owned())
                .spawn(move || self.run());
            // Without the thread, holds are still checked by `is_still_owner` and `release`.
            *started = spawned.is_ok();
        }
    }

    fn run(&'static self) {
        loop {
            let live: Vec<Arc<Hold>> = {
                let mut holds = self.holds.lock();
                holds.retain(|w| w.strong_count() > 0);
                while holds.is_empty() {
                    self.wake.wait(&mut holds);
                    holds.retain(|w| w.strong_count() > 0);
                }
                holds.iter().filter_map(Weak::upgrade).collect()
            };
            let pass = Instant::now();
            for hold in &live {
                hold.check_unless_busy();
            }
            drop(live);
            let left = CHECK_EVERY.saturating_sub(pass.elapsed());
            if !left.is_zero() {
                thread::sleep(left);
            }
        }
    }
}
