//! RbdLock and RadosLock through the conformance kit, on one throwaway cluster for the whole
//! test binary (started by `tests/services/ceph.py` on first use, stopped at exit). Without a
//! cluster the checks pass with a note, except under `CI=true`, where they fail.

#[macro_use]
mod conformance;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use conformance::Subject;
use ferrolock::ceph::rados::{ObjectKey, RadosLock};
use ferrolock::ceph::rbd::{ImageKey, RbdLock, RbdOptions};
use ferrolock::ceph::ClusterKey;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/services/ceph.py");

static CLUSTER: OnceLock<Result<PathBuf, String>> = OnceLock::new();
static NAMES: AtomicUsize = AtomicUsize::new(0);

/// Stops the cluster once this test process has exited: stopping it from an exit handler, with
/// librados clients of this process still connected, crashed their threads during exit.
fn stop_after_exit(dir: &std::path::Path) {
    let watchdog = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.2; done; python3 {SCRIPT} stop {d}; rm -rf {d}",
        pid = std::process::id(),
        d = dir.display()
    );
    let _ = Command::new("sh")
        .arg("-c")
        .arg(watchdog)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

fn cluster() -> &'static Result<PathBuf, String> {
    CLUSTER.get_or_init(|| {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?.keep();
        let out = Command::new("python3").arg(SCRIPT).arg("start").arg(&dir).output();
        match out {
            Ok(o) if o.status.success() => {
                stop_after_exit(&dir);
                Ok(dir)
            }
            other => Err(format!("the Ceph test cluster did not start: {other:?}")),
        }
    })
}

fn key(dir: &std::path::Path) -> ClusterKey {
    ClusterKey {
        cluster: String::from("ceph"),
        conffile: Some(dir.join("ceph.conf")),
        rados_id: Some(String::from("openstack")),
    }
}

fn fresh(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), NAMES.fetch_add(1, Ordering::Relaxed))
}

struct Rbd;

impl Subject for Rbd {
    type Handle = RbdLock;
    fn pair(&self) -> (RbdLock, RbdLock) {
        let Ok(dir) = cluster() else { panic!("no cluster") };
        let image = ImageKey {
            cluster: key(dir),
            pool: String::from("rbd"),
            namespace: None,
            image: fresh("conformance"),
        };
        let make = || match RbdLock::new(image.clone(), RbdOptions::default(), None) {
            Ok(l) => l,
            Err(e) => panic!("RbdLock: {e}"),
        };
        (make(), make())
    }
    fn rounds(&self) -> usize {
        20
    }
    fn unavailable(&self) -> Option<String> {
        cluster().as_ref().err().cloned()
    }
}

struct Rados;

impl Subject for Rados {
    type Handle = RadosLock;
    fn pair(&self) -> (RadosLock, RadosLock) {
        let Ok(dir) = cluster() else { panic!("no cluster") };
        let object = ObjectKey {
            cluster: key(dir),
            pool: String::from("rbd"),
            namespace: None,
            object: fresh("conformance"),
        };
        let t = Duration::from_secs(10);
        let make = || match RadosLock::new(object.clone(), Duration::from_secs(30), t, None) {
            Ok(l) => l,
            Err(e) => panic!("RadosLock: {e}"),
        };
        (make(), make())
    }
    fn rounds(&self) -> usize {
        20
    }
    fn unavailable(&self) -> Option<String> {
        cluster().as_ref().err().cloned()
    }
}

conformance_tests!(rbd, super::Rbd);
conformance_tests!(rados, super::Rados);
