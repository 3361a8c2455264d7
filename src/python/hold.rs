//! How a Python caller takes and gives back any `Lock`: first one try (with the GIL held when
//! the try is a futex or fcntl call, so the uncontended path costs no GIL switch; released when
//! it is a network round trip), then blocking waits with the GIL released, checking for signals
//! between bounded steps, or green waits under eventlet.
//!
//! Either the caller ends up holding the lock, or nothing is held: an acquire that wins while a
//! signal is pending gives the lock back before the signal's exception is raised, so no Python
//! code runs between taking the lock and handing it to the caller.

use pyo3::prelude::*;

use super::errors::wait_error;
use super::exit::{exiting_elsewhere, park_if_exiting, sleep_forever, Reattaching};
use super::policy::Policy;
use super::{green, green_local};
use crate::local::Mutex;
use crate::registry::Handle;
use crate::{Both, Lock, LockError, Raw, RawLock, Until};

/// `Ok(false)` when the policy's time ran out.
pub fn acquire(py: Python<'_>, policy: Policy, lock: &dyn Lock) -> PyResult<bool> {
    let got =
        try_once(py, lock)? || (policy.blocking && wait(py, policy.until(lock.max_step()), lock)?);
    if got {
        hand_over(py, lock)?;
    }
    Ok(got)
}

/// Give `lock` back (with the GIL released when that is a network round trip).
pub fn release(py: Python<'_>, lock: &dyn Lock) -> PyResult<()> {
    if lock.blocking_io() {
        round_trip(py, lock, || lock.release(), |_| false)?;
    } else {
        lock.release()?;
    }
    Ok(())
}

/// Whether the current hold is still ours (asks the server for a server lock).
#[allow(dead_code)] // for the server locks' bindings
pub fn is_still_owner(py: Python<'_>, lock: &dyn Lock) -> PyResult<bool> {
    Ok(if lock.blocking_io() {
        round_trip(py, lock, || lock.is_still_owner(), |_| false)?
    } else {
        lock.is_still_owner()?
    })
}

fn try_once(py: Python<'_>, lock: &dyn Lock) -> PyResult<bool> {
    let now = Until::now().with_step(lock.max_step());
    if !lock.blocking_io() {
        return Ok(lock.acquire(now, &mut || false)?);
    }
    Ok(round_trip(py, lock, || lock.acquire(now, &mut || false), |got| matches!(got, Ok(true)))?)
}

/// A network round trip of `lock` with the GIL released. It may end after the interpreter's
/// exit began, like a wait (see `detached`): taking the GIL back then would unwind this thread
/// through our frames and abort the process, so it gives back what `call` took (`took` says
/// whether it took the lock) and sleeps until the process is gone.
fn round_trip<R: Send>(
    py: Python<'_>,
    lock: &dyn Lock,
    call: impl FnOnce() -> R + Send,
    took: impl FnOnce(&R) -> bool + Send,
) -> R {
    let (outcome, _counted) = py.detach(|| {
        let outcome = call();
        let Some(counted) = Reattaching::enter() else {
            if took(&outcome) {
                let _ = lock.release();
            }
            sleep_forever();
        };
        (outcome, counted)
    });
    outcome
}

/// A contended wait: green under eventlet, else detached in bounded steps.
fn wait(py: Python<'_>, until: Until, lock: &dyn Lock) -> PyResult<bool> {
    park_if_exiting(py);
    if let Some(hub) = green::hub(py)? {
        let got = green::wait(py, &hub, lock, until);
        if super::exit::exiting_elsewhere() {
            // A wait in a thread other than the exiting one (eventlet's tpool) stopped for the
            // exit: give back what it took, then sleep without running more Python.
            if matches!(got, Ok(true)) {
                let _ = lock.release();
            }
            park_if_exiting(py);
        }
        return got;
    }
    detached(py, until, &mut |until, interrupted| lock.acquire(until, interrupted), lock)
}

/// The lock was just taken, and a signal that arrived meanwhile (during a wait with the GIL
/// released, or during the try itself: its handler only marks it pending) would be raised by
/// CPython as this call returns, before the caller could record the hold. Raise it here
/// instead, with the lock given back.
fn hand_over(py: Python<'_>, lock: &dyn Lock) -> PyResult<()> {
    if let Err(signal) = py.check_signals() {
        let _ = if lock.blocking_io() {
            round_trip(py, lock, || lock.release(), |_| false)
        } else {
            lock.release()
        };
        return Err(signal);
    }
    Ok(())
}

type WaitFn<'a> = dyn FnMut(Until, &mut dyn FnMut() -> bool) -> Result<bool, LockError> + Send + 'a;

/// Runs `wait` with the GIL released; between its steps it re-attaches to check for signals
/// (KeyboardInterrupt comes out of here with nothing held). `holding` is what a successful wait
/// took, given back when the interpreter went away meanwhile.
fn detached(
    py: Python<'_>,
    until: Until,
    wait: &mut WaitFn<'_>,
    holding: &dyn Lock,
) -> PyResult<bool> {
    let mut pending: Option<PyErr> = None;
    let (outcome, _counted) = py.detach(|| {
        let mut interrupted = || {
            let Some(_counted) = Reattaching::enter() else {
                // No Python to return to any more: stop waiting, holding nothing.
                return true;
            };
            Python::try_attach(|py| match py.check_signals() {
                Ok(()) => false,
                Err(e) => {
                    pending = Some(e);
                    true
                }
            })
            .unwrap_or(false)
        };
        let outcome = wait(until, &mut interrupted);
        let Some(counted) = Reattaching::enter() else {
            // The interpreter is going away and would end this daemon thread as it takes the
            // GIL back, by unwinding it through our frames, which aborts the process. It gives
            // back what it took and sleeps until the process is gone.
            if matches!(outcome, Ok(true)) {
                let _ = holding.release();
            }
            sleep_forever();
        };
        (outcome, counted)
    });
    outcome.map_err(|e| wait_error(e, pending))
}

/// An in-process lock that Python threads contend for. A waiter does not take the lock while
/// it is away from the GIL: it waits until the lock is free, then takes it only once it holds
/// the GIL again. Otherwise each handoff would park the thread that holds the GIL (and would
/// simply have re-taken the lock) until the woken waiter gets the GIL: a convoy that costs a
/// GIL switch per cycle. Not for fair locks, whose waiters must be served in order.
///
/// Whoever gives it back calls `green_local::released` (greenthreads may sleep in the hub for it).
pub fn acquire_local(py: Python<'_>, policy: Policy, lock: &Handle<Mutex>) -> PyResult<bool> {
    lock.affinity().note();
    let raw = Raw(&**lock);
    if lock.try_acquire()? {
        return hand_over_local(py, lock);
    }
    if !policy.blocking {
        return Ok(false);
    }
    park_if_exiting(py);
    let until = policy.until(raw.max_step());
    if let Some(hub) = green::hub(py)? {
        // Its holder is most likely another greenthread of this OS thread: no GIL convoy to
        // avoid, and when only this OS thread uses the lock, the holder's release wakes us.
        let got = match green_local::wait(py, lock, until) {
            Ok(Some(got)) => Ok(got),
            Ok(None) => green::wait(py, &hub, lock, until),
            Err(e) => Err(e),
        };
        give_back_if_exiting(py, matches!(got, Ok(true)), &Raw(&**lock));
        return match got {
            Ok(true) => hand_over_local(py, lock),
            other => {
                // A helper's wait that ended without the lock may have taken and given it back
                // meanwhile: a greenthread asleep for it must hear of that.
                green_local::released(py, lock);
                other
            }
        };
    }
    let nothing: Option<&Raw<'_, Mutex>> = None;
    loop {
        let mut see_free = |until, interrupted: &mut dyn FnMut() -> bool| {
            let got = raw.acquire(until, interrupted)?;
            if got {
                lock.release()?;
            }
            Ok(got)
        };
        if !detached(py, until, &mut see_free, &nothing)? {
            return Ok(false);
        }
        if lock.try_acquire()? {
            return hand_over_local(py, lock);
        }
    }
}

/// `Both(first, then)`, whose `first` is an in-process lock (oslo's external lock: the name's
/// in-process lock, then its file). Under eventlet, when only this OS thread uses `first`, a
/// greenthread waits for it as `acquire_local` does (woken by the holder's release, with no
/// descriptor in the hub), then for `then`. Whoever gives it back calls
/// `green_local::released` for `first`.
pub fn acquire_pair<B: Lock>(
    py: Python<'_>,
    policy: Policy,
    first: &Handle<Mutex>,
    then: B,
) -> PyResult<bool> {
    first.affinity().note();
    let both = Both(first, &then);
    if try_once(py, &both)? {
        hand_over(py, &both)?;
        return Ok(true);
    }
    if !policy.blocking {
        return Ok(false);
    }
    let got = wait_pair(py, policy, first, &then);
    let got = match got {
        Ok(true) => hand_over(py, &both).map(|()| true),
        other => other,
    };
    if !matches!(got, Ok(true)) {
        // A wait that ended without the lock may have taken and given back `first` meanwhile
        // (a helper's, or ours while `then` was busy): a greenthread asleep for it must hear.
        green_local::released(py, first);
    }
    got
}

fn wait_pair<B: Lock>(
    py: Python<'_>,
    policy: Policy,
    first: &Handle<Mutex>,
    then: &B,
) -> PyResult<bool> {
    park_if_exiting(py);
    let both = Both(first, then);
    let until = policy.until(both.max_step());
    let Some(hub) = green::hub(py)? else {
        return wait(py, until, &both);
    };
    let got_first = first.try_acquire()? || {
        let got = green_local::wait(py, first, until);
        give_back_if_exiting(py, matches!(got, Ok(Some(true))), &Raw(&**first));
        match got? {
            Some(got) => got,
            // Other OS threads use `first`: wait for both through a helper.
            None => return wait(py, until, &both),
        }
    };
    if !got_first {
        return Ok(false);
    }
    let got = match try_once(py, then) {
        Ok(true) => Ok(true),
        Ok(false) => green::wait(py, &hub, then, until),
        Err(e) => Err(e),
    };
    if matches!(got, Ok(true)) && !exiting_elsewhere() {
        return Ok(true);
    }
    if matches!(got, Ok(true)) {
        let _ = then.release();
    }
    first.release()?;
    park_if_exiting(py);
    got.map(|_| false)
}

/// A green wait (its OS thread runs the hub) may end after another thread began the
/// interpreter's exit; the thread then sleeps for good, so it must not keep what it took.
fn give_back_if_exiting(py: Python<'_>, took: bool, lock: &dyn Lock) {
    if exiting_elsewhere() {
        if took {
            let _ = lock.release();
        }
        park_if_exiting(py);
    }
}

fn hand_over_local(py: Python<'_>, lock: &Mutex) -> PyResult<bool> {
    if let Err(signal) = hand_over(py, &Raw(lock)) {
        green_local::released(py, lock);
        return Err(signal);
    }
    Ok(true)
}
