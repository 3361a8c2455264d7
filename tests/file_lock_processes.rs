//! The core's file locks across real processes: this test binary re-runs itself as the worker
//! (selected by an environment variable), so no Python is involved.
//!
//! A waiter is seen blocked in `/proc/locks` before its holder is killed, so the kill lands on
//! a real wait; bounds on waits only catch hangs (how fast is the benchmark's business).

use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::linux::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferrolock::file::FileLock;
use ferrolock::wait::Until;
use ferrolock::Lock;

const ROLE: &str = "FERROLOCK_TEST_ROLE";
const DIR: &str = "FERROLOCK_TEST_DIR";
const ROUNDS: usize = 300;
/// Bound of every wait that should end: catches a hang, says nothing about speed.
const PATIENCE: Duration = Duration::from_secs(10);

fn lock_path(dir: &Path) -> PathBuf {
    dir.join("locks").join("counter")
}

fn acquire(lock: &FileLock, timeout: Option<Duration>) -> bool {
    lock.acquire(Until::after(timeout), &mut || false).expect("acquire")
}

/// Worker: increments the counter file ROUNDS times under the lock, with a read, a pause and
/// a write, so that any overlap loses updates.
fn counter_worker(dir: &Path) {
    let lock = FileLock::new(&lock_path(dir));
    let counter = dir.join("counter.txt");
    for _ in 0..ROUNDS {
        assert!(acquire(&lock, None));
        let n: usize =
            fs::read_to_string(&counter).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        std::thread::yield_now();
        fs::write(&counter, format!("{}", n + 1)).expect("write counter");
        lock.release().expect("release");
    }
}

/// Worker: holds the lock with the classic POSIX `lockf` oslo/fasteners use, until killed.
fn lockf_holder(dir: &Path) {
    let path = lock_path(dir);
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let file = fs::OpenOptions::new().create(true).append(true).open(&path).expect("open");
    // SAFETY: valid open descriptor; F_LOCK with length 0 locks to EOF like Python's lockf.
    assert_eq!(unsafe { libc::lockf(file.as_raw_fd(), libc::F_LOCK, 0) }, 0);
    println!("held");
    std::io::stdout().flush().expect("flush");
    std::thread::sleep(Duration::from_secs(60));
}

/// Worker: holds the lock with ferrolock until killed.
fn ofd_holder(dir: &Path) {
    let lock = FileLock::new(&lock_path(dir));
    assert!(acquire(&lock, None));
    println!("held");
    std::io::stdout().flush().expect("flush");
    std::thread::sleep(Duration::from_secs(60));
}

fn spawn(role: &str, dir: &Path, test: &str) -> Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(DIR, dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn worker")
}

fn wait_until_held(child: &mut Child) {
    use std::io::{BufRead, BufReader};
    let out = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    // libtest prints "test NAME ... " before running it, so "held" may end that line.
    let held = lines.any(|l| l.map(|l| l.trim_end().ends_with("held")).unwrap_or(false));
    assert!(held, "worker never reported holding the lock");
}

/// Requests blocked in the kernel on the file at `path`: `/proc/locks` lists each as a
/// `N: -> KIND ADVISORY TYPE PID MAJ:MIN:INODE START END` line (major and minor in hex).
fn blocked_requests(path: &Path) -> usize {
    let Ok(meta) = fs::metadata(path) else { return 0 };
    let (major, minor) = (libc::major(meta.st_dev()), libc::minor(meta.st_dev()));
    let key = format!("{major:02x}:{minor:02x}:{}", meta.st_ino());
    let table = fs::read_to_string("/proc/locks").expect("read /proc/locks");
    table
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("->"))
        .filter(|l| l.split_whitespace().nth(6) == Some(key.as_str()))
        .count()
}

/// Wait (bounded) until a request is blocked on `path`.
fn wait_until_blocked(path: &Path) {
    let deadline = Instant::now() + PATIENCE;
    while blocked_requests(path) == 0 {
        assert!(Instant::now() < deadline, "no waiter blocked on {path:?} within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Runs the worker body when this process is a worker; the test itself otherwise.
fn worker_role() -> Option<(String, PathBuf)> {
    Some((std::env::var(ROLE).ok()?, PathBuf::from(std::env::var(DIR).ok()?)))
}

#[test]
fn four_processes_lose_no_update() {
    if let Some((role, dir)) = worker_role() {
        assert_eq!(role, "counter");
        return counter_worker(&dir);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let workers: Vec<Child> =
        (0..4).map(|_| spawn("counter", dir.path(), "four_processes_lose_no_update")).collect();
    for mut w in workers {
        assert!(w.wait().expect("wait").success());
    }
    let total = fs::read_to_string(dir.path().join("counter.txt")).expect("counter");
    assert_eq!(total.trim(), format!("{}", 4 * ROUNDS));
}

#[test]
fn a_lockf_holder_excludes_us_and_its_death_releases() {
    if let Some((role, dir)) = worker_role() {
        assert_eq!(role, "lockf");
        return lockf_holder(&dir);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut holder =
        spawn("lockf", dir.path(), "a_lockf_holder_excludes_us_and_its_death_releases");
    wait_until_held(&mut holder);
    let path = lock_path(dir.path());
    let lock = FileLock::new(&path);
    assert!(!acquire(&lock, Some(Duration::from_millis(200))), "lockf holder did not exclude us");
    std::thread::scope(|s| {
        let waiter = s.spawn(|| acquire(&lock, Some(PATIENCE * 6)));
        wait_until_blocked(&path);
        holder.kill().expect("SIGKILL");
        assert!(waiter.join().expect("waiter"), "the holder's death did not hand us the lock");
    });
    let _ = holder.wait();
    lock.release().expect("release");
}

#[test]
fn our_holder_excludes_lockf_until_killed() {
    if let Some((role, dir)) = worker_role() {
        assert_eq!(role, "ofd");
        return ofd_holder(&dir);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut holder = spawn("ofd", dir.path(), "our_holder_excludes_lockf_until_killed");
    wait_until_held(&mut holder);
    let file = fs::OpenOptions::new().append(true).open(lock_path(dir.path())).expect("open");
    let try_lockf = || {
        // SAFETY: `file` is an open descriptor for the call; F_TLOCK never blocks.
        unsafe { libc::lockf(file.as_raw_fd(), libc::F_TLOCK, 0) }
    };
    assert_eq!(try_lockf(), -1, "lockf got a lock our OFD holder has");
    holder.kill().expect("SIGKILL");
    let _ = holder.wait();
    // The holder is dead, so the kernel dropped its lock.
    assert_eq!(try_lockf(), 0);
}

#[test]
fn a_timed_wait_ends_after_its_deadline_holding_nothing() {
    if let Some((role, dir)) = worker_role() {
        assert_eq!(role, "ofd");
        return ofd_holder(&dir);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut holder =
        spawn("ofd", dir.path(), "a_timed_wait_ends_after_its_deadline_holding_nothing");
    wait_until_held(&mut holder);
    let lock = FileLock::new(&lock_path(dir.path()));
    let started = Instant::now();
    assert!(!acquire(&lock, Some(Duration::from_millis(300))));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300) && waited < PATIENCE, "{waited:?}");
    assert!(!lock.locked());
    holder.kill().expect("SIGKILL");
    let _ = holder.wait();
    assert!(acquire(&lock, Some(PATIENCE)));
    lock.release().expect("release");
}
