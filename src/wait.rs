//! The one wait loop every primitive shares.
//!
//! A backend only knows how to try once and how to block for a bounded step (a kernel wait, a
//! server-side `GET_LOCK(name, step)`). The loop owns deadlines and interruption, so a caller
//! that must react to signals (Python's Ctrl-C) gets control back between steps.

use std::time::{Duration, Instant};

pub use crate::lock::{RawLock, Until, WaitTicket};
use crate::LockError;

/// Longest single blocking step: bounds how late a deadline or an interrupt is noticed.
pub const DEFAULT_STEP: Duration = Duration::from_millis(50);

/// Wait for `lock` until `until.deadline`, asking `interrupted` between steps.
///
/// Returns `Ok(false)` when the deadline passed first. Nothing is held after an error.
///
/// # Errors
/// `LockError::Interrupted` when `interrupted` returned true; the backend's errors.
pub fn acquire<L: RawLock + ?Sized>(
    lock: &L,
    until: Until,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<bool, LockError> {
    if lock.try_acquire()? {
        return Ok(true);
    }
    if until.passed() {
        return Ok(false);
    }
    let mut ticket = WaitTicket::default();
    let outcome = wait_steps(lock, until, interrupted, &mut ticket);
    if !matches!(outcome, Ok(true)) {
        lock.cancel_wait(&mut ticket);
    }
    outcome
}

fn wait_steps<L: RawLock + ?Sized>(
    lock: &L,
    until: Until,
    interrupted: &mut dyn FnMut() -> bool,
    ticket: &mut WaitTicket,
) -> Result<bool, LockError> {
    loop {
        let step = match until.deadline {
            None => until.step,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(false);
                }
                left.min(until.step)
            }
        };
        if lock.acquire_step(step, ticket)? {
            return Ok(true);
        }
        if interrupted() {
            return Err(LockError::Interrupted);
        }
    }
}

/// When a step of `step` started now ends; a step past the clock's range is cut to the default.
pub(crate) fn step_end(step: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(step).unwrap_or(now + DEFAULT_STEP)
}

/// `timeout` as a deadline from now; `None` waits forever (so does one past the clock's range).
pub fn deadline_after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

#[cfg(test)]
mod tests {
    //! The loop against a scripted primitive: what it asks of the backend, and when.

    use super::*;
    use std::collections::VecDeque;

    use parking_lot::Mutex;

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Answer {
        Busy,
        Got,
        Fail,
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Call {
        Try,
        /// The step asked for, and the ticket it came with.
        Step(Duration, Option<u64>),
        Cancel(Option<u64>),
    }

    /// Answers tries and steps from a script (then `Busy`); a busy step blocks for its length,
    /// as a real one would. Records every call.
    struct Scripted {
        script: Mutex<VecDeque<Answer>>,
        calls: Mutex<Vec<Call>>,
    }

    impl Scripted {
        fn new(script: &[Answer]) -> Scripted {
            Scripted {
                script: Mutex::new(script.iter().copied().collect()),
                calls: Mutex::default(),
            }
        }

        fn next(&self) -> Answer {
            self.script.lock().pop_front().unwrap_or(Answer::Busy)
        }

        fn answer(answer: Answer) -> Result<bool, LockError> {
            match answer {
                Answer::Busy => Ok(false),
                Answer::Got => Ok(true),
                Answer::Fail => Err(LockError::Misuse("scripted failure")),
            }
        }

        fn calls(&self) -> Vec<Call> {
            self.calls.lock().clone()
        }

        fn steps(&self) -> Vec<Duration> {
            self.calls()
                .into_iter()
                .filter_map(|c| if let Call::Step(d, _) = c { Some(d) } else { None })
                .collect()
        }

        fn cancels(&self) -> usize {
            self.calls().iter().filter(|c| matches!(c, Call::Cancel(_))).count()
        }
    }

    impl RawLock for Scripted {
        fn try_acquire(&self) -> Result<bool, LockError> {
            self.calls.lock().push(Call::Try);
            Scripted::answer(self.next())
        }

        fn acquire_step(&self, step: Duration, ticket: &mut WaitTicket) -> Result<bool, LockError> {
            // A queueing backend takes its place in line on the first step.
            let mine = *ticket.0.get_or_insert(7);
            self.calls.lock().push(Call::Step(step, Some(mine)));
            let answer = self.next();
            if answer == Answer::Busy {
                std::thread::sleep(step);
            }
            Scripted::answer(answer)
        }

        fn cancel_wait(&self, ticket: &mut WaitTicket) {
            self.calls.lock().push(Call::Cancel(ticket.0.take()));
        }

        fn release(&self) -> Result<(), LockError> {
            Ok(())
        }
    }

    fn never() -> impl FnMut() -> bool {
        || false
    }

    #[test]
    fn a_first_try_that_gets_it_takes_no_step() {
        let lock = Scripted::new(&[Answer::Got]);
        assert!(matches!(acquire(&lock, Until::forever(), &mut never()), Ok(true)));
        assert_eq!(lock.calls(), vec![Call::Try]);
    }

    #[test]
    fn until_now_is_one_try_and_nothing_to_cancel() {
        let lock = Scripted::new(&[Answer::Busy]);
        let mut asked = 0;
        assert!(matches!(
            acquire(&lock, Until::now(), &mut || {
                asked += 1;
                false
            }),
            Ok(false)
        ));
        assert_eq!(lock.calls(), vec![Call::Try]);
        assert_eq!(asked, 0, "no step, so nothing to ask between steps");
    }

    #[test]
    fn a_step_that_gets_it_keeps_its_place_and_is_not_cancelled() {
        let lock = Scripted::new(&[Answer::Busy, Answer::Busy, Answer::Busy, Answer::Got]);
        let step = Duration::from_millis(1);
        let mut asked = 0;
        let got = acquire(&lock, Until::forever().with_step(step), &mut || {
            asked += 1;
            false
        });
        assert!(matches!(got, Ok(true)));
        // One ticket across every step of the wait: a fair lock keeps the waiter's place.
        let s = Call::Step(step, Some(7));
        assert_eq!(lock.calls(), vec![Call::Try, s, s, s]);
        assert_eq!(asked, 2, "asked between steps, not after the one that got it");
    }

    #[test]
    fn waiting_forever_steps_at_the_step_given() {
        let lock = Scripted::new(&[Answer::Busy, Answer::Busy, Answer::Got]);
        assert!(matches!(acquire(&lock, Until::forever(), &mut never()), Ok(true)));
        assert_eq!(lock.steps(), vec![DEFAULT_STEP, DEFAULT_STEP]);
    }

    #[test]
    fn a_deadline_ends_the_wait_in_bounded_steps_and_cancels_it() {
        let lock = Scripted::new(&[]);
        let (timeout, step) = (Duration::from_millis(40), Duration::from_millis(10));
        let started = Instant::now();
        let got = acquire(&lock, Until::after(Some(timeout)).with_step(step), &mut never());
        assert!(matches!(got, Ok(false)));
        assert!(started.elapsed() >= timeout, "gave up early: {:?}", started.elapsed());
        let steps = lock.steps();
        assert!(!steps.is_empty() && steps.iter().all(|s| *s <= step), "{steps:?}");
        assert_eq!(lock.calls().last(), Some(&Call::Cancel(Some(7))));
        assert_eq!(lock.cancels(), 1);
    }

    #[test]
    fn a_step_never_outlasts_the_time_left() {
        let lock = Scripted::new(&[]);
        let timeout = Duration::from_millis(30);
        let long = Duration::from_secs(3600);
        let got = acquire(&lock, Until::after(Some(timeout)).with_step(long), &mut never());
        assert!(matches!(got, Ok(false)));
        assert!(lock.steps().iter().all(|s| *s <= timeout), "{:?}", lock.steps());
    }

    #[test]
    fn a_deadline_already_passed_is_one_try() {
        let lock = Scripted::new(&[]);
        let past = Until::deadline(Some(Instant::now()));
        assert!(matches!(acquire(&lock, past, &mut never()), Ok(false)));
        assert_eq!(lock.calls(), vec![Call::Try]);
    }

    #[test]
    fn an_interrupt_between_steps_ends_the_wait_and_cancels_it() {
        let lock = Scripted::new(&[]);
        let mut asked = 0;
        let got = acquire(&lock, Until::forever().with_step(Duration::from_millis(1)), &mut || {
            asked += 1;
            asked == 3
        });
        assert!(matches!(got, Err(LockError::Interrupted)));
        assert_eq!(asked, 3);
        assert_eq!(lock.steps().len(), 3, "one question per step");
        assert_eq!(lock.calls().last(), Some(&Call::Cancel(Some(7))));
        assert_eq!(lock.cancels(), 1);
    }

    #[test]
    fn an_error_in_a_step_cancels_the_wait() {
        let lock = Scripted::new(&[Answer::Busy, Answer::Busy, Answer::Fail]);
        let got =
            acquire(&lock, Until::forever().with_step(Duration::from_millis(1)), &mut never());
        assert!(matches!(got, Err(LockError::Misuse(_))));
        assert_eq!(lock.calls().last(), Some(&Call::Cancel(Some(7))));
        assert_eq!(lock.cancels(), 1);
    }

    #[test]
    fn an_error_in_the_first_try_takes_no_step() {
        let lock = Scripted::new(&[Answer::Fail]);
        assert!(matches!(
            acquire(&lock, Until::forever(), &mut never()),
            Err(LockError::Misuse(_))
        ));
        assert_eq!(lock.calls(), vec![Call::Try]);
    }

    #[test]
    fn a_zero_step_only_tries_and_asks_between_tries() {
        // Eventlet's mode: never block the thread; the caller's question is where it waits.
        let lock = Scripted::new(&[]);
        let mut asked = 0;
        let got = acquire(
            &lock,
            Until::after(Some(Duration::from_millis(20))).with_step(Duration::ZERO),
            &mut || {
                asked += 1;
                std::thread::sleep(Duration::from_millis(1));
                false
            },
        );
        assert!(matches!(got, Ok(false)));
        let steps = lock.steps();
        assert!(!steps.is_empty() && steps.iter().all(Duration::is_zero), "{steps:?}");
        assert!(asked >= steps.len() - 1, "asked {asked} times for {} steps", steps.len());
        assert_eq!(lock.cancels(), 1);
    }

    #[test]
    fn a_deadline_past_the_clocks_range_waits_forever() {
        assert_eq!(deadline_after(Some(Duration::MAX)), None);
        assert_eq!(deadline_after(None), None);
        assert!(step_end(Duration::MAX) > Instant::now());
    }
}
