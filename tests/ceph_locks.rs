//! The Ceph locks' `Lock` contract against a real throwaway cluster, started by
//! `tests/services/ceph.py` (skipped when it cannot start, unless `CI=true`: then it fails).

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ferrolock::ceph::rados::{ObjectKey, RadosLock};
use ferrolock::ceph::rbd::{ImageKey, RbdLock, RbdOptions};
use ferrolock::ceph::ClusterKey;
use ferrolock::{Lock, LockError, Until};

struct Cluster {
    dir: PathBuf,
}

impl Cluster {
    fn start() -> Option<Cluster> {
        let dir = tempfile::tempdir().ok()?.keep();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/services/ceph.py");
        let out = Command::new("python3").arg(script).arg("start").arg(&dir).output();
        match out {
            Ok(o) if o.status.success() => Some(Cluster { dir }),
            other => {
                let why = format!("{other:?}");
                assert!(std::env::var("CI").as_deref() != Ok("true"), "no Ceph cluster: {why}");
                eprintln!("skipping: no Ceph cluster: {why}");
                None
            }
        }
    }

    fn key(&self) -> ClusterKey {
        ClusterKey {
            cluster: String::from("ceph"),
            conffile: Some(self.dir.join("ceph.conf")),
            rados_id: Some(String::from("openstack")),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/services/ceph.py");
        let _ = Command::new("python3").arg(script).arg("stop").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn never() -> impl FnMut() -> bool {
    || false
}

/// What every lock kind promises: try, busy, release, NotHeld, wait with a deadline.
fn contract(a: &dyn Lock, b: &dyn Lock) {
    assert!(a.blocking_io());
    assert!(a.acquire(Until::now(), &mut never()).expect("first try"));
    assert!(a.is_still_owner().expect("owner"));
    let t = Instant::now();
    assert!(!b.acquire(Until::now(), &mut never()).expect("busy try"));
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(!b
        .acquire(Until::after(Some(Duration::from_millis(200))), &mut never())
        .expect("wait"));
    assert!(matches!(b.release(), Err(LockError::NotHeld)));
    a.release().expect("release");
    assert!(!a.is_still_owner().expect("not owner"));
    assert!(matches!(a.release(), Err(LockError::NotHeld)));
    assert!(b.acquire(Until::after(Some(Duration::from_secs(10))), &mut never()).expect("b"));
    // an interrupted wait holds nothing
    let calls = AtomicUsize::new(0);
    let mut stop = || calls.fetch_add(1, Ordering::Relaxed) > 0;
    assert!(matches!(a.acquire(Until::forever(), &mut stop), Err(LockError::Interrupted)));
    b.release().expect("release b");
    assert!(a.acquire(Until::now(), &mut never()).expect("a again"));
    a.release().expect("release a");
}

#[test]
fn ceph_locks_keep_the_lock_contract() {
    let Some(cl) = Cluster::start() else { return };
    let image = |name: &str| ImageKey {
        cluster: cl.key(),
        pool: String::from("rbd"),
        namespace: None,
        image: name.to_owned(),
    };
    let opts = RbdOptions::default();
    let a = RbdLock::new(image("contract"), opts.clone(), None).expect("a");
    let b = RbdLock::new(image("contract"), opts.clone(), None).expect("b");
    contract(&a, &b);

    let object = |name: &str| ObjectKey {
        cluster: cl.key(),
        pool: String::from("rbd"),
        namespace: None,
        object: name.to_owned(),
    };
    let t = Duration::from_secs(10);
    let a = RadosLock::new(object("contract"), Duration::from_secs(5), t, None).expect("a");
    let b = RadosLock::new(object("contract"), Duration::from_secs(5), t, None).expect("b");
    contract(&a, &b);

    // (a broken lock and fencing need a second client: tests/ceph/test_rbd.py, with children)

    // errors name the problem, never a secret
    let missing = ImageKey { pool: String::from("nopool"), ..image("x") };
    let l = RbdLock::new(missing, opts, None).expect("made");
    let err = l.acquire(Until::now(), &mut never()).expect_err("no pool");
    assert!(err.to_string().contains("does not exist"), "{err}");
}
