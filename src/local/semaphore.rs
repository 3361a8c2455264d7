//! A counting semaphore with N permits, optionally FIFO-fair: in fair mode a waiter is served
//! only when everyone who queued before it has been served or gave up.

use std::collections::VecDeque;
use std::time::Duration;

use parking_lot::Mutex;

use super::changes::Changes;
use crate::wait::{self, WaitTicket};
use crate::{LockError, RawLock};

pub struct Semaphore {
    permits: usize,
    fair: bool,
    state: Mutex<State>,
    changed: Changes,
}

struct State {
    available: usize,
    queue: VecDeque<u64>,
    next_ticket: u64,
}

impl Semaphore {
    /// # Errors
    /// `LockError::InvalidArgument` when `permits` is zero (nobody could ever enter).
    pub fn new(permits: usize, fair: bool) -> Result<Self, LockError> {
        if permits == 0 {
            return Err(LockError::InvalidArgument("a semaphore needs at least one permit".into()));
        }
        Ok(Semaphore {
            permits,
            fair,
            state: Mutex::new(State { available: permits, queue: VecDeque::new(), next_ticket: 0 }),
            changed: Changes::new(),
        })
    }

    pub fn permits(&self) -> usize {
        self.permits
    }

    pub fn is_fair(&self) -> bool {
        self.fair
    }

    pub fn available(&self) -> usize {
        self.state.lock().available
    }

    /// Threads waiting now (a test probe): in fair mode those in line, who keep their place
    /// between steps; otherwise those asleep in a step.
    pub fn waiters(&self) -> usize {
        if self.fair {
            self.state.lock().queue.len()
        } else {
            self.changed.sleepers()
        }
    }
}

impl RawLock for Semaphore {
    fn try_acquire(&self) -> Result<bool, LockError> {
        let mut state = self.state.lock();
        if state.available > 0 && (!self.fair || state.queue.is_empty()) {
            state.available -= 1;
            return Ok(true);
        }
        Ok(false)
    }

    fn acquire_step(&self, step: Duration, ticket: &mut WaitTicket) -> Result<bool, LockError> {
        let until = wait::step_end(step);
        let mut state = self.state.lock();
        let mine = if self.fair {
            Some(*ticket.0.get_or_insert_with(|| {
                let t = state.next_ticket;
                state.next_ticket += 1;
                state.queue.push_back(t);
                t
            }))
        } else {
            None
        };
        let mut step_over = false;
        loop {
            let my_turn = mine.is_none() || state.queue.front().copied() == mine;
            if state.available > 0 && my_turn {
                state.available -= 1;
                if mine.is_some() {
                    state.queue.pop_front();
                    ticket.0 = None;
                    // The next in line may fit too when several permits are free.
                    self.changed.notify_all();
                }
                return Ok(true);
            }
            // Looked once more after the step ended: a wake-up that arrived with the deadline
            // may be the only one for the permit just freed.
            if step_over {
                return Ok(false);
            }
            step_over = self.changed.wait_until(&mut state, until);
        }
    }

    fn cancel_wait(&self, ticket: &mut WaitTicket) {
        if let Some(mine) = ticket.0.take() {
            let mut state = self.state.lock();
            state.queue.retain(|t| *t != mine);
            drop(state);
            // The waiter behind us may be first now.
            self.changed.notify_all();
        }
    }

    fn release(&self) -> Result<(), LockError> {
        let mut state = self.state.lock();
        if state.available >= self.permits {
            return Err(LockError::NotHeld);
        }
        state.available += 1;
        drop(state);
        if self.fair {
            self.changed.notify_all();
        } else {
            self.changed.notify_one();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wait::{acquire, Until};
    use std::sync::Arc;

    #[test]
    fn permits_bound_the_holders() {
        let s = Semaphore::new(2, false).expect("two permits");
        assert!(s.try_acquire().unwrap_or(false));
        assert!(s.try_acquire().unwrap_or(false));
        assert!(!s.try_acquire().unwrap_or(true));
        assert!(s.release().is_ok());
        assert!(s.release().is_ok());
        assert!(matches!(s.release(), Err(LockError::NotHeld)));
    }

    #[test]
    fn fair_waiters_are_served_in_arrival_order() {
        let s = Arc::new(Semaphore::new(1, true).expect("one permit"));
        assert!(s.try_acquire().unwrap_or(false));
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for i in 0..5 {
            let (sem, order) = (Arc::clone(&s), Arc::clone(&order));
            threads.push(std::thread::spawn(move || {
                // Steps of 1 ms end many times while they wait: the order must survive them.
                let steps = Until::forever().with_step(Duration::from_millis(1));
                let got = acquire(&*sem, steps, &mut || false).unwrap_or(false);
                order.lock().push(i);
                std::thread::sleep(Duration::from_millis(5));
                assert!(got && sem.release().is_ok());
            }));
            // Thread i is in line before i + 1 starts.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while s.waiters() <= i {
                assert!(std::time::Instant::now() < deadline, "waiter {i} never queued");
                std::thread::yield_now();
            }
        }
        assert!(s.release().is_ok());
        for t in threads {
            assert!(t.join().is_ok());
        }
        assert_eq!(*order.lock(), vec![0, 1, 2, 3, 4]);
        assert!(acquire(&*s, Until::now(), &mut || false).unwrap_or(false));
    }

    #[test]
    fn waiters_are_woken_and_permits_never_exceeded() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        for fair in [false, true] {
            let s = Semaphore::new(2, fair).expect("two permits");
            let (inside, most, done) =
                (AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0));
            std::thread::scope(|scope| {
                for _ in 0..8 {
                    scope.spawn(|| {
                        for _ in 0..500 {
                            // One step as long as the deadline: only a wake-up ends a wait
                            // in time, and a lost one fails the test instead of hanging it.
                            let until = Until::after(Some(Duration::from_secs(20)))
                                .with_step(Duration::from_secs(20));
                            assert!(acquire(&s, until, &mut || false).unwrap_or(false));
                            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            inside.fetch_sub(1, Ordering::SeqCst);
                            done.fetch_add(1, Ordering::SeqCst);
                            assert!(s.release().is_ok());
                        }
                    });
                }
            });
            assert_eq!(done.load(Ordering::SeqCst), 4_000);
            assert!(most.load(Ordering::SeqCst) <= 2);
            assert_eq!(s.available(), 2);
        }
    }

    #[test]
    fn a_wake_up_arriving_with_the_deadline_is_not_lost() {
        // A's one step ends just as the permit comes free; the wake-up it gets must still
        // serve someone: A, or B, whose single step lasts far longer than the test.
        for i in 0..60u64 {
            let s = Semaphore::new(1, false).expect("one permit");
            assert!(s.try_acquire().unwrap_or(false));
            let step = Duration::from_millis(3);
            let start = std::sync::Barrier::new(3);
            let (a, b) = std::thread::scope(|scope| {
                let b = scope.spawn(|| {
                    start.wait();
                    let long = Duration::from_secs(5);
                    acquire(&s, Until::after(Some(long)).with_step(long), &mut || false)
                        .unwrap_or(false)
                });
                let a = scope.spawn(|| {
                    start.wait();
                    let got = acquire(&s, Until::after(Some(step)).with_step(step), &mut || false)
                        .unwrap_or(false);
                    if got {
                        assert!(s.release().is_ok());
                    }
                    got
                });
                start.wait();
                let release_at = std::time::Instant::now() + step - Duration::from_micros(60)
                    + Duration::from_micros(i * 2);
                while std::time::Instant::now() < release_at {
                    std::hint::spin_loop();
                }
                assert!(s.release().is_ok());
                (a.join().unwrap_or(false), b.join().unwrap_or(false))
            });
            assert!(b, "round {i}: B timed out with the permit free (A got it: {a})");
            assert!(s.release().is_ok());
        }
    }
}
