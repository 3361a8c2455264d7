//! The conformance kit: what every lock kind owes its callers, written once against the `Lock`
//! trait, `Guard` and `Both`, and run by each kind from its own test file.
//!
//! A kind plugs in by implementing [`Subject`] (chiefly `pair`: two handles on one fresh lock,
//! as two users would hold it) and naming it in `conformance_tests!`, which makes one `#[test]`
//! per check, so a failure names the kind and the check:
//!
//! ```ignore
//! #[macro_use]
//! mod conformance;
//! use conformance::Subject;
//!
//! struct Mine;
//! impl Subject for Mine {
//!     type Handle = MyLock;
//!     fn pair(&self) -> (MyLock, MyLock) { /* two users of one new lock */ }
//! }
//! conformance_tests!(mine, Mine);
//! ```
//!
//! The checks: two threads exclude each other (a counter that loses updates on overlap, and an
//! interval log); a try while held is `Ok(false)`; a timed wait is `Ok(false)`, not before its
//! deadline and well within a generous bound; an `interrupted` answering true between steps
//! ends the wait with `Interrupted`; after a timeout or an interrupt nothing is held and no
//! place in line is kept (the holder's next try succeeds at once); release when not held is
//! `NotHeld`, also for a user that does not hold it while another does; a dropped `Guard`
//! releases, a kept one does not, a guard not had releases nothing; `Both` takes both or gives
//! the first back (on timeout and on error); `is_still_owner` follows the hold; a release
//! wakes a waiter whose step outlasts the test (no lost wake-up).
//! No check asserts a tight timing; [`PATIENCE`] bounds waits that should end.
//!
//! # Server locks (MySQL, Ceph)
//! A server kind runs the same kit from `tests/conformance_mysql.rs`, `tests/conformance_ceph.rs`:
//! - `pair` opens two users on a lock name fresh per call (a counter or a random suffix),
//!   against the server that `tests/services/` started on 127.0.0.1. For MySQL, two
//!   connections: GET_LOCK is held per session and re-entrant within it, so two handles on one
//!   session would both "get" it. For RBD, two image handles (a second handle in the same
//!   process gets -EROFS, so they do exclude; their owner strings may be equal when they share a
//!   rados connection, so ownership is `rbd_is_exclusive_lock_owner`, not the owner string); for
//!   a rados object lock, two clients or two cookies.
//! - `unavailable` says why the server cannot be reached (None when it can): the kit then
//!   fails the test when `CI=true` and otherwise prints the reason and passes (cargo has no
//!   skip).
//! - `rounds` lowers the exclusion rounds (each is a round trip or more); `short_step` is the
//!   step of the interruption checks (GET_LOCK takes whole or fractional seconds; keep it at
//!   or under the kind's `max_step`); `wake_step` is the longest step the kind allows
//!   (`max_step()`), since a server-side wait cannot outlast the socket's read timeout.
//! - `waiters` may count waiters the server reports (MySQL: `performance_schema.metadata_locks`
//!   rows in PENDING state for the lock's name), or stay `None`: the wake check then releases
//!   without seeing the waiter asleep first. A kind that can only poll (RBD) keeps the default
//!   `wake_step`: its polls inside the step find the freed lock, and the check then says only
//!   that a release is noticed within [`PATIENCE`].
//! - `tracks_owner` and `per_handle` stay true: a server lock answers `is_still_owner` from
//!   the server, and one session's release never ends another's hold.
//!
//! Lost holds (a killed session, an expired lease) are kind-specific and are tested beside the
//! kind, not here.

// Each test crate uses the kit's checks through the macro and may leave some helpers unused.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferrolock::{Both, Guard, Lock, LockError, Until};

/// Bound of every wait that should end: catches a hang, says nothing about speed.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A lock kind under test.
pub trait Subject: Sync {
    type Handle: Lock;

    /// Two handles on one fresh lock, as two users would hold it (two objects of two threads,
    /// two sessions of a server). Every call gives a lock no other call uses.
    fn pair(&self) -> (Self::Handle, Self::Handle);

    /// Users waiting for the lock of `handle` now, when the kind can tell: the wake check then
    /// releases only once the waiter is asleep.
    fn waiters(&self, _handle: &Self::Handle) -> Option<usize> {
        None
    }

    /// `is_still_owner` tells whether this handle holds the lock (a bare primitive, which does
    /// not know its holder, answers true always, and any user may release it).
    fn tracks_owner(&self) -> bool {
        true
    }

    /// Each handle owns its hold: another user's `release` is `NotHeld` and leaves the hold
    /// alone, and its `is_still_owner` is false.
    fn per_handle(&self) -> bool {
        self.tracks_owner()
    }

    /// Rounds per thread of the exclusion check.
    fn rounds(&self) -> usize {
        500
    }

    /// The step of the interruption checks.
    fn short_step(&self) -> Duration {
        Duration::from_millis(5)
    }

    /// The step of the wake check: a waiter whose step is this long (well past [`PATIENCE`])
    /// ends within [`PATIENCE`] of the release only when the release wakes it.
    fn wake_step(&self) -> Duration {
        PATIENCE * 3
    }

    /// Why this kind cannot be tested here (its server is not running), or `None`.
    fn unavailable(&self) -> Option<String> {
        None
    }
}

/// Run `check` on `subject`, unless the subject is unavailable: a failure under `CI=true`,
/// otherwise a note on stderr.
pub fn run<S: Subject>(subject: &S, check: fn(&S)) {
    if let Some(why) = subject.unavailable() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "lock kind unavailable in CI: {why}");
        eprintln!("not run: {why}");
        return;
    }
    check(subject);
}

/// One conformance `#[test]` per check, in a module named `$kind`.
macro_rules! conformance_tests {
    ($kind:ident, $subject:expr) => {
        mod $kind {
            #[allow(unused_imports)]
            use super::*;
            conformance_tests!(@each $subject;
                two_threads_exclude_each_other,
                a_try_while_held_is_false,
                a_timed_wait_ends_false_not_before_its_deadline,
                an_interrupt_between_steps_ends_the_wait,
                a_failed_wait_holds_nothing_and_keeps_no_place,
                release_when_not_held_is_not_held,
                release_by_the_other_user_is_not_held,
                a_dropped_guard_releases_and_a_kept_one_does_not,
                a_guard_not_had_releases_nothing,
                both_gives_the_first_back_when_the_second_is_not_had,
                both_takes_and_releases_both,
                is_still_owner_follows_the_hold,
                a_release_wakes_a_sleeping_waiter
            );
        }
    };
    (@each $subject:expr; $($check:ident),*) => {
        $(
            #[test]
            fn $check() {
                $crate::conformance::run(&$subject, $crate::conformance::$check);
            }
        )*
    };
}

fn no() -> impl FnMut() -> bool {
    || false
}

fn take<L: Lock + ?Sized>(lock: &L, until: Until) -> bool {
    match lock.acquire(until, &mut no()) {
        Ok(got) => got,
        Err(e) => panic!("acquire failed: {e}"),
    }
}

fn forever() -> Until {
    Until::after(Some(PATIENCE * 3))
}

fn try_once<L: Lock + ?Sized>(lock: &L) -> bool {
    take(lock, Until::now())
}

fn give_back<L: Lock + ?Sized>(lock: &L) {
    if let Err(e) = lock.release() {
        panic!("release failed: {e}");
    }
}

/// Wait (bounded) until `subject` counts a waiter on `handle`'s lock, when it can tell.
fn until_waiting<S: Subject>(subject: &S, handle: &S::Handle) {
    let deadline = Instant::now() + PATIENCE;
    while subject.waiters(handle).is_some_and(|n| n == 0) {
        assert!(Instant::now() < deadline, "no waiter showed up within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Two threads, one handle each, `rounds()` times in the lock: a read and a separate write of
/// a counter lose an update on any overlap, and no two logged intervals may intersect. One
/// thread holds through `Guard`, the other through `acquire`/`release`.
pub fn two_threads_exclude_each_other<S: Subject>(subject: &S) {
    let (a, b) = subject.pair();
    let rounds = subject.rounds();
    let counter = AtomicU64::new(0);
    let intervals = Mutex::new(Vec::with_capacity(2 * rounds));
    let inside = |log: &mut Vec<(Instant, Instant)>| {
        let start = Instant::now();
        let seen = counter.load(Ordering::Relaxed);
        std::thread::yield_now();
        counter.store(seen + 1, Ordering::Relaxed);
        log.push((start, Instant::now()));
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut log = Vec::with_capacity(rounds);
            for _ in 0..rounds {
                let guard = match Guard::acquire(&a, forever(), &mut no()) {
                    Ok(Some(g)) => g,
                    Ok(None) => panic!("no turn within {:?}", PATIENCE * 3),
                    Err(e) => panic!("acquire failed: {e}"),
                };
                inside(&mut log);
                if let Err(e) = guard.release() {
                    panic!("release failed: {e}");
                }
            }
            intervals.lock().unwrap_or_else(|e| e.into_inner()).extend(log);
        });
        s.spawn(|| {
            let mut log = Vec::with_capacity(rounds);
            for _ in 0..rounds {
                assert!(take(&b, forever()), "no turn within {:?}", PATIENCE * 3);
                inside(&mut log);
                give_back(&b);
            }
            intervals.lock().unwrap_or_else(|e| e.into_inner()).extend(log);
        });
    });
    assert_eq!(counter.load(Ordering::Relaxed), 2 * rounds as u64, "an update was lost");
    let mut intervals = intervals.into_inner().unwrap_or_else(|e| e.into_inner());
    intervals.sort();
    for pair in intervals.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "two holders at once: {:?} and {:?}", pair[0], pair[1]);
    }
}

pub fn a_try_while_held_is_false<S: Subject>(subject: &S) {
    let (a, b) = subject.pair();
    assert!(try_once(&a));
    assert!(!try_once(&b), "a second user got a held lock");
    give_back(&a);
    assert!(try_once(&b), "free again, yet the try failed");
    assert!(!try_once(&a));
    give_back(&b);
}

pub fn a_timed_wait_ends_false_not_before_its_deadline<S: Subject>(subject: &S) {
    let (a, b) = subject.pair();
    assert!(try_once(&a));
    let timeout = Duration::from_millis(100);
    let started = Instant::now();
    assert!(!take(&b, Until::after(Some(timeout))), "got a held lock");
    let waited = started.elapsed();
    assert!(waited >= timeout, "gave up after {waited:?}, before the {timeout:?} timeout");
    assert!(waited < PATIENCE, "a {timeout:?} wait took {waited:?}");
    give_back(&a);
}

pub fn an_interrupt_between_steps_ends_the_wait<S: Subject>(subject: &S) {
    let (a, b) = subject.pair();
    assert!(try_once(&a));
    let mut asked = 0;
    let until = Until::after(Some(PATIENCE)).with_step(subject.short_step());
    let outcome = b.acquire(until, &mut || {
        asked += 1;
        asked == 3
    });
    assert!(matches!(outcome, Err(LockError::Interrupted)), "{outcome:?}");
    assert_eq!(asked, 3, "the wait went on after being told to stop, or stopped unasked");
    // Nothing held by the interrupted wait: the holder is still alone in the lock.
    assert!(!try_once(&b));
    give_back(&a);
}

/// After a timeout and after an interrupt, the waiter holds nothing and has left the line: a
/// fair lock that kept its place would refuse the holder's next try.
pub fn a_failed_wait_holds_nothing_and_keeps_no_place<S: Subject>(subject: &S) {
    let (a, b) = subject.pair();
    assert!(try_once(&a));
    let short = Until::after(Some(Duration::from_millis(30))).with_step(subject.short_step());
    assert!(!take(&b, short));
    give_back(&a);
    assert!(try_once(&a), "a timed-out waiter still holds or queues");
    let until = Until::after(Some(PATIENCE)).with_step(subject.short_step());
    let outcome = b.acquire(until, &mut || true);
    assert!(matches!(outcome, Err(LockError::Interrupted)), "{outcome:?}");
    give_back(&a);
    assert!(try_once(&a), "an interrupted waiter still holds or queues");
    give_back(&a);
    assert!(try_once(&b));
    give_back(&b);
}

pub fn release_when_not_held_is_not_held<S: Subject>(subject: &S) {
    let (a, _b) = subject.pair();
    assert!(matches!(a.release(), Err(LockError::NotHeld)), "a fresh lock released");
    assert!(try_once(&a));
    give_back(&a);
    assert!(matches!(a.release(), Err(LockError::NotHeld)), "released twice");
}

pub fn release_by_the_other_user_is_not_held<S: Subject>(subject: &S) {
    if !subject.per_handle() {
        return;
    }
    let (a, b) = subject.pair();
    assert!(try_once(&a));
    assert!(matches!(b.release(), Err(LockError::NotHeld)), "released another user's hold");
    assert!(!try_once(&b), "another user's release ended the hold");
    give_back(&a);
}

pub fn a_dropped_guard_releases_and_a_kept_one_does_not<S: Subject>(subject: &S) {
    let (a, b) = subject.pair();
    {
        let guard = Guard::acquire(&a, forever(), &mut no());
        assert!(matches!(guard, Ok(Some(_))));
        assert!(!try_once(&b));
    }
    assert!(try_once(&b), "the dropped guard did not release");
    give_back(&b);
    match Guard::acquire(&a, forever(), &mut no()) {
        Ok(Some(guard)) => guard.keep(),
        other => panic!("no guard: {:?}", other.map(|g| g.is_some())),
    }
    assert!(!try_once(&b), "keep() let go of the lock");
    give_back(&a);
    match Guard::acquire(&a, forever(), &mut no()) {
        Ok(Some(guard)) => assert!(guard.release().is_ok()),
        other => panic!("no guard: {:?}", other.map(|g| g.is_some())),
    }
    assert!(matches!(a.release(), Err(LockError::NotHeld)), "release() left it held");
}

/// A guard that was not had (timeout, interrupt) must not release the holder's lock.
pub fn a_guard_not_had_releases_nothing<S: Subject>(subject: &S) {
    let (a, b) = subject.pair();
    assert!(try_once(&a));
    assert!(matches!(Guard::acquire(&b, Until::now(), &mut no()), Ok(None)));
    let until = Until::after(Some(PATIENCE)).with_step(subject.short_step());
    assert!(matches!(Guard::acquire(&b, until, &mut || true), Err(LockError::Interrupted)));
    assert!(!try_once(&b), "a failed guard released the holder's lock");
    give_back(&a);
}

/// `Both(A, B)` with B held elsewhere: on timeout and on interrupt, A is given back.
pub fn both_gives_the_first_back_when_the_second_is_not_had<S: Subject>(subject: &S) {
    let ((a1, a2), (b1, b2)) = (subject.pair(), subject.pair());
    assert!(try_once(&b2));
    let both = Both(&a1, &b1);
    assert!(!try_once(&both));
    assert!(try_once(&a2), "A kept after B's try failed");
    give_back(&a2);
    assert!(!take(&both, Until::after(Some(Duration::from_millis(30)))));
    assert!(try_once(&a2), "A kept after B's wait timed out");
    give_back(&a2);
    let until = Until::after(Some(PATIENCE)).with_step(subject.short_step());
    assert!(matches!(both.acquire(until, &mut || true), Err(LockError::Interrupted)));
    assert!(try_once(&a2), "A kept after B's wait was interrupted");
    give_back(&a2);
    if subject.per_handle() {
        // (A lock that knows no holder would end b2's hold here.)
        assert!(matches!(both.release(), Err(LockError::NotHeld)), "Both released a hold");
    }
    give_back(&b2);
}

pub fn both_takes_and_releases_both<S: Subject>(subject: &S) {
    let ((a1, a2), (b1, b2)) = (subject.pair(), subject.pair());
    let both = Both(&a1, &b1);
    assert!(take(&both, forever()));
    assert!(!try_once(&a2) && !try_once(&b2));
    give_back(&both);
    assert!(try_once(&a2) && try_once(&b2), "Both's release left one held");
    give_back(&a2);
    give_back(&b2);
}

pub fn is_still_owner_follows_the_hold<S: Subject>(subject: &S) {
    if !subject.tracks_owner() {
        return;
    }
    let (a, b) = subject.pair();
    let owner = |l: &S::Handle| match l.is_still_owner() {
        Ok(yes) => yes,
        Err(e) => panic!("is_still_owner failed: {e}"),
    };
    assert!(!owner(&a) && !owner(&b));
    assert!(try_once(&a));
    assert!(owner(&a), "the holder is not the owner");
    if subject.per_handle() {
        assert!(!owner(&b), "the other user says it owns the holder's lock");
    }
    give_back(&a);
    assert!(!owner(&a), "still the owner after release");
}

/// A waiter whose single step outlasts [`PATIENCE`] gets the lock within it only if the
/// release wakes it (a lost wake-up shows as a wait to the end of the step).
pub fn a_release_wakes_a_sleeping_waiter<S: Subject>(subject: &S) {
    let (a, b) = subject.pair();
    assert!(try_once(&a));
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let step = subject.wake_step();
            let got = take(&b, Until::after(Some(step)).with_step(step));
            (got, Instant::now())
        });
        until_waiting(subject, &a);
        let released = Instant::now();
        give_back(&a);
        match waiter.join() {
            Ok((true, woke)) => {
                let took = woke.saturating_duration_since(released);
                assert!(took < PATIENCE, "the waiter got it {took:?} after the release");
            }
            _ => panic!("the waiter did not get the released lock"),
        }
    });
    give_back(&b);
}
