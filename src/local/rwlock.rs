//! A fair reader-writer lock with the re-entrancy rules of fasteners' `ReaderWriterLock` (which
//! oslo's `fair=True` locks are): owners are ids the caller supplies (a thread or greenthread id),
//! a writer may take read or write again, a reader may take read again, a reader may not upgrade.
//! Waiters are served in arrival order; consecutive readers at the head of the queue enter together.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use crate::registry::Handle;
use crate::sys;
use crate::wait::{self, Until};
use crate::Lock;
use crate::LockError;

pub type OwnerId = u64;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Access {
    Read,
    Write,
}

#[derive(Default)]
pub struct RwLock {
    state: Mutex<State>,
}

struct Waiter {
    ticket: u64,
    owner: OwnerId,
    access: Access,
    /// Bumped (under the state lock) when this waiter may now enter; it sleeps on this word
    /// alone, so a handoff wakes the next in line, not every waiter (with 20 greenthreads'
    /// helpers queued, waking all of them for each handoff kept both cores busy). Made when
    /// the waiter first sleeps: an uncontended acquire allocates nothing.
    wake: Option<Arc<AtomicU32>>,
}

#[derive(Default)]
struct State {
    readers: HashMap<OwnerId, usize>,
    writer: Option<(OwnerId, usize)>,
    queue: VecDeque<Waiter>,
    next_ticket: u64,
}

impl State {
    /// Re-entrant grants that skip the queue. `None` when the owner holds nothing relevant.
    fn reenter(&mut self, owner: OwnerId, access: Access) -> Option<Result<(), LockError>> {
        if let Some((w, depth)) = self.writer.as_mut() {
            if *w == owner {
                match access {
                    Access::Write => *depth += 1,
                    Access::Read => *self.readers.entry(owner).or_insert(0) += 1,
                }
                return Some(Ok(()));
            }
        }
        if let Some(depth) = self.readers.get_mut(&owner) {
            return Some(match access {
                Access::Read => {
                    *depth += 1;
                    Ok(())
                }
                Access::Write => {
                    Err(LockError::Misuse("reader to writer privilege escalation is not allowed"))
                }
            });
        }
        None
    }

    fn admissible(&self, ticket: u64, access: Access) -> bool {
        match access {
            Access::Write => {
                self.writer.is_none()
                    && self.readers.is_empty()
                    && self.queue.front().map(|w| w.ticket) == Some(ticket)
            }
            // A reader enters when every waiter ahead of it is a reader too.
            Access::Read => {
                self.writer.is_none()
                    && self
                        .queue
                        .iter()
                        .take_while(|w| w.ticket != ticket)
                        .all(|w| w.access == Access::Read)
            }
        }
    }

    /// Wake the waiters at the head of the queue that may enter now: a writer when nobody
    /// holds the lock, or the run of readers before the first writer when no writer holds it.
    fn wake_admissible(&self) {
        if self.writer.is_some() {
            return;
        }
        for (i, w) in self.queue.iter().enumerate() {
            let enters = match w.access {
                Access::Write => i == 0 && self.readers.is_empty(),
                Access::Read => true,
            };
            if !enters {
                return;
            }
            // A waiter without a word has not slept yet, and looks before it does.
            if let Some(word) = &w.wake {
                word.fetch_add(1, Ordering::SeqCst);
                sys::wake_one(word);
            }
            if w.access == Access::Write {
                return;
            }
        }
    }

    fn grant(&mut self, owner: OwnerId, access: Access) {
        match access {
            Access::Write => self.writer = Some((owner, 1)),
            Access::Read => *self.readers.entry(owner).or_insert(0) += 1,
        }
    }
}

impl RwLock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Take `access` for `owner`, waiting until `until.deadline` in steps of `until.step`,
    /// asking `interrupted` after each; the waiter keeps its place in line across steps.
    /// `Ok(false)` when the deadline passed.
    ///
    /// # Errors
    /// `Misuse` for a reader asking to write; `Interrupted` when `interrupted` said so.
    pub fn acquire(
        &self,
        owner: OwnerId,
        access: Access,
        until: Until,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<bool, LockError> {
        let deadline = until.deadline;
        let mut state = self.state.lock();
        if let Some(done) = state.reenter(owner, access) {
            return done.map(|()| true);
        }
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queue.push_back(Waiter { ticket, owner, access, wake: None });
        let mut wake: Option<Arc<AtomicU32>> = None;
        let mut step_end = wait::step_end(until.step);
        let outcome = loop {
            if state.admissible(ticket, access) {
                state.grant(owner, access);
                break Ok(true);
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                break Ok(false);
            }
            // Asked once per step however often the lock changes hands meanwhile: a busy
            // lock must not keep a waiter from seeing Ctrl-C.
            if now >= step_end {
                if parking_lot::MutexGuard::unlocked(&mut state, &mut *interrupted) {
                    break Err(LockError::Interrupted);
                }
                step_end = wait::step_end(until.step);
                continue;
            }
            let wake = wake.get_or_insert_with(|| {
                let word = Arc::new(AtomicU32::new(0));
                if let Some(me) = state.queue.iter_mut().find(|w| w.ticket == ticket) {
                    me.wake = Some(Arc::clone(&word));
                }
                word
            });
            // Read under the lock: whoever lets us in next bumps it after taking that lock.
            let seen = wake.load(Ordering::SeqCst);
            let until = deadline.map_or(step_end, |d| d.min(step_end));
            parking_lot::MutexGuard::unlocked(&mut state, || {
                sys::wait_while_equal(wake, seen, until);
            });
        };
        state.queue.retain(|w| w.ticket != ticket);
        // Leaving the queue (granted or not) may let the next waiters in.
        state.wake_admissible();
        outcome
    }

    /// # Errors
    /// `NotHeld` when `owner` does not hold `access`.
    pub fn release(&self, owner: OwnerId, access: Access) -> Result<(), LockError> {
        let mut state = self.state.lock();
        match access {
            Access::Write => match state.writer.as_mut() {
                Some((w, depth)) if *w == owner => {
                    *depth -= 1;
                    if *depth == 0 {
                        state.writer = None;
                    }
                }
                _ => return Err(LockError::NotHeld),
            },
            Access::Read => match state.readers.get_mut(&owner) {
                Some(depth) => {
                    *depth -= 1;
                    if *depth == 0 {
                        state.readers.remove(&owner);
                    }
                }
                None => return Err(LockError::NotHeld),
            },
        }
        state.wake_admissible();
        Ok(())
    }

    pub fn is_writer(&self, owner: OwnerId) -> bool {
        self.state.lock().writer.is_some_and(|(w, _)| w == owner)
    }

    pub fn is_reader(&self, owner: OwnerId) -> bool {
        self.state.lock().readers.contains_key(&owner)
    }

    /// Whether `owner` waits for the write lock now.
    pub fn is_pending_writer(&self, owner: OwnerId) -> bool {
        self.state.lock().queue.iter().any(|w| w.owner == owner && w.access == Access::Write)
    }

    pub fn has_pending_writers(&self) -> bool {
        self.state.lock().queue.iter().any(|w| w.access == Access::Write)
    }

    /// What the lock is held for now, if at all (a writer first).
    pub fn held_for(&self) -> Option<Access> {
        let s = self.state.lock();
        if s.writer.is_some() {
            Some(Access::Write)
        } else if !s.readers.is_empty() {
            Some(Access::Read)
        } else {
            None
        }
    }

    /// Waiters in line now, for either access (a test probe).
    pub fn waiters(&self) -> usize {
        self.state.lock().queue.len()
    }

    /// True while nobody holds or waits: the registry may drop it.
    pub fn idle(&self) -> bool {
        let s = self.state.lock();
        s.writer.is_none() && s.readers.is_empty() && s.queue.is_empty()
    }
}

/// How a `Side` reaches its lock: borrowed for a caller's own wait, or owned (a registry
/// handle, an `Arc`) so a helper thread can wait with it.
pub trait RwRef: Send + Sync {
    fn rw(&self) -> &RwLock;
    /// An owned reference to the same lock, when there is one to be had.
    fn owned(&self) -> Option<Arc<dyn RwRef>>;
}

impl RwRef for &RwLock {
    fn rw(&self) -> &RwLock {
        self
    }
    fn owned(&self) -> Option<Arc<dyn RwRef>> {
        None
    }
}

impl RwRef for Handle<RwLock> {
    fn rw(&self) -> &RwLock {
        self
    }
    fn owned(&self) -> Option<Arc<dyn RwRef>> {
        Some(Arc::new(self.clone()))
    }
}

impl RwRef for Arc<RwLock> {
    fn rw(&self) -> &RwLock {
        self
    }
    fn owned(&self) -> Option<Arc<dyn RwRef>> {
        Some(Arc::new(Arc::clone(self)))
    }
}

impl RwRef for Arc<dyn RwRef> {
    fn rw(&self) -> &RwLock {
        (**self).rw()
    }
    fn owned(&self) -> Option<Arc<dyn RwRef>> {
        Some(Arc::clone(self))
    }
}

impl<R: RwRef + ?Sized> RwRef for &R {
    fn rw(&self) -> &RwLock {
        (**self).rw()
    }
    fn owned(&self) -> Option<Arc<dyn RwRef>> {
        (**self).owned()
    }
}

/// One owner's side of a reader-writer lock, as a `Lock`.
pub struct Side<R: RwRef> {
    pub lock: R,
    pub owner: OwnerId,
    pub access: Access,
}

impl<R: RwRef> Lock for Side<R> {
    fn acquire(
        &self,
        until: Until,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<bool, LockError> {
        self.lock.rw().acquire(self.owner, self.access, until, interrupted)
    }

    fn release(&self) -> Result<(), LockError> {
        self.lock.rw().release(self.owner, self.access)
    }

    fn is_still_owner(&self) -> Result<bool, LockError> {
        let lock = self.lock.rw();
        Ok(match self.access {
            Access::Write => lock.is_writer(self.owner),
            Access::Read => lock.is_reader(self.owner),
        })
    }

    fn shared(&self) -> Option<Arc<dyn Lock>> {
        let lock = self.lock.owned()?;
        Some(Arc::new(Side { lock, owner: self.owner, access: self.access }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn soon() -> Until {
        Until::after(Some(Duration::from_millis(20)))
    }

    #[test]
    fn readers_share_and_writers_exclude() {
        let l = RwLock::new();
        let no = &mut || false;
        assert!(l.acquire(1, Access::Read, Until::forever(), no).unwrap_or(false));
        assert!(l.acquire(2, Access::Read, Until::forever(), no).unwrap_or(false));
        assert!(!l.acquire(3, Access::Write, soon(), no).unwrap_or(true));
        assert!(l.release(1, Access::Read).is_ok() && l.release(2, Access::Read).is_ok());
        assert!(l.acquire(3, Access::Write, soon(), no).unwrap_or(false));
        assert!(!l.acquire(1, Access::Read, soon(), no).unwrap_or(true));
        // The writer re-enters for both kinds.
        assert!(l.acquire(3, Access::Read, Until::forever(), no).unwrap_or(false));
        assert!(l.acquire(3, Access::Write, Until::forever(), no).unwrap_or(false));
        assert!(l.release(3, Access::Write).is_ok() && l.release(3, Access::Read).is_ok());
        assert!(l.is_writer(3));
        assert!(l.release(3, Access::Write).is_ok());
        assert!(l.idle());
    }

    #[test]
    fn reader_cannot_upgrade() {
        let l = RwLock::new();
        assert!(l.acquire(1, Access::Read, Until::forever(), &mut || false).unwrap_or(false));
        assert!(matches!(
            l.acquire(1, Access::Write, Until::forever(), &mut || false),
            Err(LockError::Misuse(_))
        ));
        assert!(matches!(l.release(2, Access::Read), Err(LockError::NotHeld)));
    }

    #[test]
    fn a_waiter_is_asked_to_stop_while_the_lock_keeps_changing() {
        let l = std::sync::Arc::new(RwLock::new());
        let no = &mut || false;
        assert!(l.acquire(1, Access::Read, Until::forever(), no).unwrap_or(false));
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // The reader re-enters and leaves every few ms: each release wakes the writer.
        let churn = {
            let (l, done) = (std::sync::Arc::clone(&l), std::sync::Arc::clone(&done));
            std::thread::spawn(move || {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = l.acquire(1, Access::Read, Until::forever(), &mut || false);
                    std::thread::sleep(Duration::from_millis(5));
                    let _ = l.release(1, Access::Read);
                }
            })
        };
        let until = Until::after(Some(Duration::from_secs(5)));
        let outcome =
            l.acquire(2, Access::Write, until.with_step(Duration::from_millis(20)), &mut || true);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = churn.join();
        assert!(matches!(outcome, Err(LockError::Interrupted)));
    }

    #[test]
    fn writers_exclude_everyone_and_every_waiter_is_woken() {
        use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
        let l = RwLock::new();
        // Readers count +1, a writer -1000: a writer must only ever see its own -1000.
        let (inside, done) = (AtomicIsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|scope| {
            for t in 0..6u64 {
                let (l, inside, done) = (&l, &inside, &done);
                scope.spawn(move || {
                    let access = if t % 2 == 0 { Access::Write } else { Access::Read };
                    let weight = if access == Access::Write { -1000 } else { 1 };
                    for _ in 0..300 {
                        // One step as long as the deadline: a lost wake-up fails the test.
                        let until = Until::after(Some(Duration::from_secs(20)))
                            .with_step(Duration::from_secs(20));
                        assert!(l.acquire(t, access, until, &mut || false).unwrap_or(false));
                        let now = inside.fetch_add(weight, Ordering::SeqCst) + weight;
                        assert!(if weight < 0 { now == -1000 } else { now > 0 });
                        inside.fetch_sub(weight, Ordering::SeqCst);
                        done.fetch_add(1, Ordering::SeqCst);
                        assert!(l.release(t, access).is_ok());
                    }
                });
            }
        });
        assert_eq!(done.load(Ordering::SeqCst), 1_800);
        assert!(l.idle());
    }
}
