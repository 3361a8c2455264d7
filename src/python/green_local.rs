//! Greenthreads waiting for an in-process lock that only their own OS thread uses (see
//! `crate::local::affinity`): the holder is then a greenthread of the same hub, so the waiter
//! sleeps in the hub, registered under the lock, and the holder's release schedules its wake-up
//! in the hub, as eventlet's own locks do. Nothing is added to the hub's descriptors. That
//! matters: a hub without descriptors sleeps on a precise timer, one with descriptors sleeps in
//! epoll, whose timeouts are whole milliseconds, so a descriptor per wait would stretch every
//! `eventlet.sleep` of the process (every hold that sleeps) while any wait is on.
//!
//! A release wakes the first registered waiter at the hub's next turn; it competes for the lock
//! like anyone else (the releasing greenthread may have taken it again meanwhile, as with
//! eventlet's locks) and, when it loses, goes back to the front of the line. A waiter also
//! wakes every `CHECK` to see whether another OS thread has begun using the lock: that
//! thread's release cannot wake it in time (it may not reach the hub while it sleeps), so the
//! wait then continues through a helper thread (`super::green`).
//!
//! The registrations live in this process's memory with the greenthreads they name, so a
//! forked child, which copies both, keeps them consistent. They are touched only with the GIL.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use super::exit::exiting_elsewhere;
use crate::local::affinity::thread_number;
use crate::local::Mutex;
use crate::{fork, LockError, RawLock, Until};

/// How often a sleeping waiter looks whether another OS thread has begun using the lock.
const CHECK: Duration = Duration::from_secs(1);

/// The greenthreads waiting for one lock, first in line first, and the hub they sleep in.
struct Line {
    hub: Py<PyAny>,
    /// The OS thread that runs `hub` (see `affinity::thread_number`).
    thread: u64,
    /// The process the line was made in (`fork::generation`): a forked child may have replaced
    /// the hub, and with it every greenthread of the line.
    generation: u64,
    waiters: VecDeque<(u64, Py<PyAny>)>,
}

/// Keyed by the lock's address: a waiter keeps its lock alive while registered.
static LINES: parking_lot::Mutex<Option<HashMap<usize, Line>>> = parking_lot::Mutex::new(None);
/// Waiters registered in `LINES`: a release looks at the table only when some are.
static REGISTERED: AtomicUsize = AtomicUsize::new(0);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn key(lock: &Mutex) -> usize {
    lock as *const Mutex as usize
}

/// eventlet's `hubs.get_hub` and `getcurrent`.
fn eventlet(py: Python<'_>) -> PyResult<(Bound<'_, PyAny>, Bound<'_, PyAny>)> {
    static FUNCTIONS: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();
    let (get_hub, getcurrent) = FUNCTIONS.get_or_try_init(py, || -> PyResult<_> {
        let get_hub = py.import("eventlet.hubs")?.getattr("get_hub")?.unbind();
        Ok((get_hub, py.import("eventlet")?.getattr("getcurrent")?.unbind()))
    })?;
    Ok((get_hub.bind(py).clone(), getcurrent.bind(py).clone()))
}

/// One greenthread's place in its lock's line; leaving it (any way out of `wait`) unregisters.
struct Place {
    key: usize,
    id: u64,
    registered: bool,
}

impl Place {
    fn register(&mut self, hub: &Bound<'_, PyAny>, me: &Bound<'_, PyAny>, first: bool) {
        let mut lines = LINES.lock();
        let line = lines.get_or_insert_with(HashMap::new).entry(self.key).or_insert_with(|| Line {
            hub: hub.clone().unbind(),
            thread: thread_number(),
            generation: fork::generation(),
            waiters: VecDeque::new(),
        });
        if !line.hub.bind(hub.py()).is(hub) {
            // Only this OS thread uses the lock, so the line's hub is one this thread replaced
            // (`use_hub` in a forked child): its greenthreads never run again.
            REGISTERED.fetch_sub(line.waiters.len(), Ordering::Relaxed);
            line.waiters.clear();
            line.hub = hub.clone().unbind();
        }
        line.generation = fork::generation();
        let entry = (self.id, me.clone().unbind());
        if first {
            line.waiters.push_front(entry);
        } else {
            line.waiters.push_back(entry);
        }
        REGISTERED.fetch_add(1, Ordering::Relaxed);
        self.registered = true;
    }

    /// Whether we are still in line (a wake-up takes its waiter out).
    fn still_registered(&mut self) -> bool {
        if self.registered {
            let lines = LINES.lock();
            self.registered = lines
                .as_ref()
                .and_then(|lines| lines.get(&self.key))
                .is_some_and(|line| line.waiters.iter().any(|(id, _)| *id == self.id));
        }
        self.registered
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if !self.registered {
            return;
        }
        // Dropped with the GIL held (this module runs only with it): the references go at once.
        let removed = {
            let mut lines = LINES.lock();
            let Some(table) = lines.as_mut() else { return };
            let Some(line) = table.get_mut(&self.key) else { return };
            let Some(at) = line.waiters.iter().position(|(id, _)| *id == self.id) else {
                return;
            };
            let waiter = line.waiters.remove(at);
            REGISTERED.fetch_sub(1, Ordering::Relaxed);
            let line = if line.waiters.is_empty() { table.remove(&self.key) } else { None };
            (waiter, line)
        };
        drop(removed);
    }
}

/// Wait for `lock` (tried once already, and noted by this thread) as a greenthread sleeping in
/// the hub until a release of this OS thread wakes it. `Ok(Some(true))` held,
/// `Ok(Some(false))` the deadline passed, `Ok(None)` another OS thread uses the lock: wait
/// through a helper instead. On any error, nothing is held.
pub fn wait(py: Python<'_>, lock: &Mutex, until: Until) -> PyResult<Option<bool>> {
    let (get_hub, getcurrent) = eventlet(py)?;
    let hub = get_hub.call0()?;
    let me = getcurrent.call0()?;
    let switch_me = me.getattr(intern!(py, "switch"))?;
    let mut place =
        Place { key: key(lock), id: NEXT_ID.fetch_add(1, Ordering::Relaxed), registered: false };
    let mut first = false;
    loop {
        if !lock.affinity().only_this_thread() {
            return Ok(None);
        }
        let left = match until.deadline {
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Ok(Some(false)),
            },
            None => None,
        };
        if exiting_elsewhere() {
            return Err(LockError::Interrupted.into());
        }
        if !place.registered {
            place.register(&hub, &me, first);
            // The calls into Python since the last try may have run other greenthreads (a
            // signal handler, a finalizer): a release then did not see us yet.
            if lock.try_acquire()? {
                return Ok(Some(true));
            }
        }
        let nap = left.map_or(CHECK, |left| left.min(CHECK)).as_secs_f64();
        let timer = hub.call_method1(intern!(py, "schedule_call_global"), (nap, &switch_me))?;
        // Not counted for the exit like other calls into Python: the hub runs the other
        // greenthreads meanwhile, and this one may never be resumed.
        let resumed = hub.call_method0(intern!(py, "switch"));
        timer.call_method0(intern!(py, "cancel"))?;
        resumed?;
        // Woken (out of line), or our timer: either way, compete for it.
        first = !place.still_registered();
        if lock.try_acquire()? {
            return Ok(Some(true));
        }
    }
}

/// Greenthreads registered for `lock` now (a test probe, with `Mutex::waiters`).
pub fn waiting(lock: &Mutex) -> usize {
    let lines = LINES.lock();
    lines.as_ref().and_then(|lines| lines.get(&key(lock))).map_or(0, |line| line.waiters.len())
}

/// After a release of `lock` (or a wait that may have left it free): wake the first greenthread
/// registered for it, at the hub's next turn. Costs one load when no greenthread waits this way.
pub fn released(py: Python<'_>, lock: &Mutex) {
    if REGISTERED.load(Ordering::Relaxed) == 0 {
        return;
    }
    let key = key(lock);
    let line = {
        let lines = LINES.lock();
        lines
            .as_ref()
            .and_then(|lines| lines.get(&key))
            .map(|line| (line.hub.clone_ref(py), line.thread, line.generation))
    };
    let Some((hub, thread, generation)) = line else { return };
    if thread != thread_number() {
        // eventlet's hubs are not thread-safe, and this one may sleep on: its waiters look by
        // themselves within `CHECK` (this release made the lock shared by threads).
        return;
    }
    if generation != fork::generation() && !is_current_hub(py, &hub) {
        forget_line(key);
        return;
    }
    let scheduled = wake_function(py).and_then(|wake| {
        hub.bind(py).call_method1(intern!(py, "schedule_call_global"), (0.0, wake, key))
    });
    if let Err(e) = scheduled {
        // The release itself succeeded; the waiter's own check wakes it.
        e.write_unraisable(py, None);
    }
}

/// Whether `hub` is this thread's hub now (a forked child may have made a new one).
fn is_current_hub(py: Python<'_>, hub: &Py<PyAny>) -> bool {
    eventlet(py)
        .and_then(|(get_hub, _)| get_hub.call0())
        .is_ok_and(|current| current.is(hub.bind(py)))
}

/// A line copied by fork whose hub this child replaced: its greenthreads never run again.
fn forget_line(key: usize) {
    let line = {
        let mut lines = LINES.lock();
        let line = lines.as_mut().and_then(|lines| lines.remove(&key));
        if let Some(line) = &line {
            REGISTERED.fetch_sub(line.waiters.len(), Ordering::Relaxed);
        }
        line
    };
    drop(line);
}

fn wake_function(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static WAKE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    WAKE.get_or_try_init(py, || {
        Ok::<_, PyErr>(wrap_pyfunction!(wake_first, py)?.into_any().unbind())
    })
    .map(|wake| wake.bind(py))
}

/// Run by the hub: take the first waiter of `key`'s line out and switch to it.
#[pyfunction]
fn wake_first(py: Python<'_>, key: usize) -> PyResult<()> {
    let (waiter, emptied) = {
        let mut lines = LINES.lock();
        let Some(table) = lines.as_mut() else { return Ok(()) };
        let Some(line) = table.get_mut(&key) else { return Ok(()) };
        let waiter = line.waiters.pop_front();
        if waiter.is_some() {
            REGISTERED.fetch_sub(1, Ordering::Relaxed);
        }
        let emptied = if line.waiters.is_empty() { table.remove(&key) } else { None };
        (waiter, emptied)
    };
    drop(emptied);
    if let Some((_, greenlet)) = waiter {
        greenlet.bind(py).call_method0(intern!(py, "switch"))?;
    }
    Ok(())
}
