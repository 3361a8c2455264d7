//! The MySQL lock against a real server: `FERROLOCK_TEST_MYSQL_URL` (the Makefile starts a
//! throwaway MariaDB with `tests/services/mariadb.py` and sets it). Without it these tests
//! pass vacuously, except when `CI=true`, where a missing server is a failure.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ferrolock::lock::Lock;
use ferrolock::mysql::MySqlLock;
use ferrolock::wait::Until;
use ferrolock::LockError;

fn server_url() -> Option<String> {
    match std::env::var("FERROLOCK_TEST_MYSQL_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true and no FERROLOCK_TEST_MYSQL_URL: the MySQL tests need a server"
            );
            eprintln!("FERROLOCK_TEST_MYSQL_URL not set: MySQL test skipped");
            None
        }
    }
}

fn unique(name: &str) -> String {
    format!("cargo-{}-{name}", std::process::id())
}

fn never() -> impl FnMut() -> bool {
    || false
}

#[test]
fn try_wait_timeout_release() {
    let Some(url) = server_url() else { return };
    let name = unique("basic");
    let a = MySqlLock::new(&url, &name).expect("url");
    let b = MySqlLock::new(&url, &name).expect("url");
    assert!(a.acquire(Until::now(), &mut never()).expect("acquire"));
    assert!(a.is_still_owner().expect("owner"));
    assert!(!b.acquire(Until::now(), &mut never()).expect("try"));
    let started = Instant::now();
    assert!(!b
        .acquire(Until::after(Some(Duration::from_millis(300))), &mut never())
        .expect("wait"));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250) && waited < Duration::from_secs(10), "{waited:?}");
    let holder = b.holder().expect("holder").expect("someone holds it");
    assert_eq!(Some(holder.connection_id), a.connection_id().map(u64::from));
    a.release().expect("release");
    assert!(matches!(a.release(), Err(LockError::NotHeld)));
    assert!(b.acquire(Until::now(), &mut never()).expect("acquire after release"));
    b.release().expect("release");
    assert!(b.holder().expect("holder").is_none());
}

#[test]
fn a_waiter_is_woken_by_the_server() {
    let Some(url) = server_url() else { return };
    let name = unique("wake");
    let a = Arc::new(MySqlLock::new(&url, &name).expect("url"));
    assert!(a.acquire(Until::now(), &mut never()).expect("acquire"));
    let waiter = {
        let url = url.clone();
        let name = name.clone();
        thread::spawn(move || {
            let b = MySqlLock::new(&url, &name).expect("url");
            let got = b.acquire(Until::after(Some(Duration::from_secs(20))), &mut never());
            let _ = b.release();
            got
        })
    };
    thread::sleep(Duration::from_millis(200));
    a.release().expect("release");
    assert!(waiter.join().expect("thread").expect("acquire"));
}

#[test]
fn threads_exclude_each_other_and_reuse_connections() {
    let Some(url) = server_url() else { return };
    let name = unique("threads");
    let inside = Arc::new(AtomicBool::new(false));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let count = Arc::new(Mutex::new(0u32));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (url, name) = (url.clone(), name.clone());
            let (inside, overlaps, count) = (inside.clone(), overlaps.clone(), count.clone());
            thread::spawn(move || {
                let lock = MySqlLock::new(&url, &name).expect("url");
                for _ in 0..50 {
                    assert!(lock.acquire(Until::forever(), &mut || false).expect("acquire"));
                    if inside.swap(true, Ordering::SeqCst) {
                        overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                    if let Ok(mut c) = count.lock() {
                        *c += 1;
                    }
                    inside.store(false, Ordering::SeqCst);
                    lock.release().expect("release");
                }
                lock.connections_opened()
            })
        })
        .collect();
    let mut opened = 0;
    for w in workers {
        opened = opened.max(w.join().expect("worker"));
    }
    assert_eq!(overlaps.load(Ordering::SeqCst), 0);
    assert_eq!(*count.lock().expect("count"), 200);
    // 200 cycles by 4 threads on one pool: a handful of connections, not 200.
    assert!(opened <= 16, "opened {opened} connections");
}

#[test]
fn interrupted_wait_holds_nothing() {
    let Some(url) = server_url() else { return };
    let name = unique("interrupt");
    let a = MySqlLock::new(&url, &name).expect("url");
    let b = MySqlLock::new(&url, &name).expect("url");
    assert!(a.acquire(Until::now(), &mut never()).expect("acquire"));
    let mut asked = 0;
    let got = b.acquire(Until::forever(), &mut || {
        asked += 1;
        asked >= 2
    });
    assert!(matches!(got, Err(LockError::Interrupted)));
    assert!(!b.locked());
    a.release().expect("release");
}

#[test]
fn long_and_odd_names() {
    let Some(url) = server_url() else { return };
    let base = unique("x");
    let names = [
        format!("{base}-{}", "long".repeat(40)),
        format!("{base}-{}-other", "long".repeat(40)),
        format!("{base}-it's \"quoted\" \\ back\\slash"),
        format!("{base}-verrou-éàü-日本"),
        format!("{base}-{}", "日本".repeat(80)),
    ];
    let locks: Vec<_> = names.iter().map(|n| MySqlLock::new(&url, n).expect("url")).collect();
    for lock in &locks {
        assert!(lock.acquire(Until::now(), &mut never()).expect("distinct names"));
    }
    for name in &names {
        let again = MySqlLock::new(&url, name).expect("url");
        assert!(!again.acquire(Until::now(), &mut never()).expect("same name collides"));
    }
    for lock in &locks {
        lock.release().expect("release");
    }
}

#[test]
fn bad_server_fails_fast_without_the_password() {
    let Some(url) = server_url() else { return };
    let secret = "very-secret-pw";
    // Wrong password on the real server.
    let at = url.rfind('@').expect("url has credentials");
    let colon = url[..at].rfind(':').expect("url has a password");
    let wrong = format!("{}:{secret}{}", &url[..colon], &url[at..]);
    // A refused port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let refused = format!("mysql://u:{secret}@127.0.0.1:{port}/db");
    for bad in [wrong, refused] {
        let lock = MySqlLock::new(&bad, &unique("bad")).expect("url");
        let started = Instant::now();
        let err = lock.acquire(Until::now(), &mut never()).expect_err("must fail");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(matches!(err, LockError::Backend { .. }), "{err:?}");
        let text = format!("{err} {err:?}");
        assert!(!text.contains(secret), "{text}");
    }
}
