//! Named locks that exist while someone uses them, so a service that locks on millions of
//! distinct ids (volume, instance UUIDs) does not grow.
//!
//! An entry whose last user is gone is not unlinked at once: dropping a user is one atomic
//! decrement, and a name locked again soon (the common uncontended cycle: create, enter, exit,
//! drop) finds its entry without allocating. Idle entries are swept when they would outnumber
//! the live ones (and at least `IDLE_KEPT` of them), and on every `len()`, so memory stays
//! proportional to the names in use.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

/// Idle entries tolerated before a sweep, whatever the number in use.
const IDLE_KEPT: usize = 1024;

/// foldhash: names are hashed on every lock object created, the hot path of an uncontended
/// cycle; SipHash costs several times more, and foldhash is still seeded per process.
type Map<T> = HashMap<Box<str>, Arc<Entry<T>>, foldhash::fast::RandomState>;

struct Entry<T> {
    name: Box<str>,
    users: AtomicUsize,
    value: T,
}

pub struct Registry<T> {
    state: Mutex<State<T>>,
}

struct State<T> {
    entries: Map<T>,
    sweep_at: usize,
}

impl<T> State<T> {
    fn sweep(&mut self) {
        self.entries.retain(|_, e| e.users.load(Ordering::Acquire) > 0);
        self.sweep_at = (self.entries.len() * 2).max(IDLE_KEPT);
    }
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Registry { state: Mutex::new(State { entries: Map::default(), sweep_at: IDLE_KEPT }) }
    }
}

impl<T> Registry<T> {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Names in use now (idle entries are swept first).
    pub fn len(&self) -> usize {
        let mut state = self.state.lock();
        state.sweep();
        state.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entry for `name`, made by `make` when nobody uses that name now.
    ///
    /// # Errors
    /// Whatever `make` returns; nothing is registered then.
    pub fn get<E>(&self, name: &str, make: impl FnOnce() -> Result<T, E>) -> Result<Handle<T>, E> {
        self.get_fitting(name, make, |_| true)
    }

    /// As `get`, but an idle entry that does not `fit` (say, a semaphore of another size) is
    /// replaced: nobody uses it, so it is as good as gone.
    ///
    /// # Errors
    /// Whatever `make` returns; nothing is registered then.
    pub fn get_fitting<E>(
        &self,
        name: &str,
        make: impl FnOnce() -> Result<T, E>,
        fits: impl Fn(&T) -> bool,
    ) -> Result<Handle<T>, E> {
        let mut state = self.state.lock();
        if let Some(entry) = state.entries.get(name) {
            // Users only grow under the registry lock, so a sweep cannot race this.
            let users = entry.users.fetch_add(1, Ordering::AcqRel);
            if users > 0 || fits(&entry.value) {
                return Ok(Handle { entry: Arc::clone(entry) });
            }
            entry.users.fetch_sub(1, Ordering::AcqRel);
            state.entries.remove(name);
        }
        if state.entries.len() >= state.sweep_at {
            state.sweep();
        }
        let entry =
            Arc::new(Entry { name: name.into(), users: AtomicUsize::new(1), value: make()? });
        state.entries.insert(name.into(), Arc::clone(&entry));
        Ok(Handle { entry })
    }
}

/// One user's share of a named entry.
pub struct Handle<T> {
    entry: Arc<Entry<T>>,
}

impl<T> Handle<T> {
    pub fn name(&self) -> &str {
        &self.entry.name
    }
}

impl<T> Clone for Handle<T> {
    /// Another share of a live entry: its users never drop to zero in between, so no sweep
    /// can race this (unlike a first user, which must come through the registry's lock).
    fn clone(&self) -> Self {
        self.entry.users.fetch_add(1, Ordering::AcqRel);
        Handle { entry: Arc::clone(&self.entry) }
    }
}

impl<T> Deref for Handle<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.entry.value
    }
}

impl<T> Drop for Handle<T> {
    fn drop(&mut self) {
        self.entry.users.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn get(r: &Registry<u32>, name: &str, v: u32) -> Handle<u32> {
        r.get(name, || Ok::<_, Infallible>(v)).unwrap_or_else(|e| match e {})
    }

    #[test]
    fn one_entry_per_name_while_used() {
        let r = Registry::default();
        let a = get(&r, "x", 1);
        let b = get(&r, "x", 2);
        assert_eq!((*a, *b, r.len()), (1, 1, 1));
        drop(a);
        assert_eq!(r.len(), 1);
        drop(b);
        assert!(r.is_empty());
        let c = get(&r, "x", 3);
        assert_eq!(*c, 3);
    }

    #[test]
    fn distinct_names_used_once_leave_nothing_behind() {
        let r = Registry::default();
        let keep = get(&r, "kept", 0);
        for i in 0..100_000 {
            assert_eq!(*get(&r, &format!("n{i}"), i), i);
            // Idle entries never pile up past the sweep threshold.
            assert!(r.state.lock().entries.len() <= IDLE_KEPT + 1);
        }
        assert_eq!(r.len(), 1);
        drop(keep);
        assert!(r.is_empty());
    }
}
