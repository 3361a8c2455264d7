//! The MySQL lock through the conformance kit, against the server of
//! `FERROLOCK_TEST_MYSQL_URL` (`python tests/services/mariadb.py` starts one and prints its
//! URL). Each pair is two `MySqlLock`s on a fresh name: two sessions, as two hosts would hold it.

#[macro_use]
mod conformance;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use conformance::Subject;
use ferrolock::mysql::MySqlLock;
use ferrolock::Lock;

/// Names made so far in this test process (the kit builds a subject per test, and tests run
/// in parallel: the counter must be shared).
static MADE: AtomicUsize = AtomicUsize::new(0);

struct MySql;

impl MySql {
    fn url() -> Option<String> {
        std::env::var("FERROLOCK_TEST_MYSQL_URL").ok().filter(|u| !u.is_empty())
    }
}

impl Subject for MySql {
    type Handle = MySqlLock;

    fn pair(&self) -> (MySqlLock, MySqlLock) {
        let url = MySql::url().unwrap_or_default();
        let name =
            format!("conformance-{}-{}", std::process::id(), MADE.fetch_add(1, Ordering::Relaxed));
        match (MySqlLock::new(&url, &name), MySqlLock::new(&url, &name)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => panic!("{e}"),
        }
    }

    // Each round is two round trips or more.
    fn rounds(&self) -> usize {
        100
    }

    // A server-side wait cannot outlast the socket's read timeout: the kind's own step.
    fn wake_step(&self) -> Duration {
        self.pair().0.max_step()
    }

    fn unavailable(&self) -> Option<String> {
        match MySql::url() {
            Some(_) => None,
            None => Some("FERROLOCK_TEST_MYSQL_URL is not set".to_owned()),
        }
    }
}

conformance_tests!(mysql, MySql);
