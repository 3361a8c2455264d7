//! Cluster connections, one per (cluster name, conffile, rados id) in a process and shared by
//! every lock on it: connecting costs about 7 ms and a thread pool, so a lock never connects per
//! use. A connection the cluster blocklisted (every call fails with ESHUTDOWN) is marked dead
//! and replaced at the next use. A forked child never touches its parent's connections: they
//! belong to threads that do not exist in the child.

use std::collections::HashMap;
use std::ffi::{c_char, CString};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::ffi::{self, Api, IoCtx, Rados};
use crate::fork::PerProcess;
use crate::LockError;

/// How to reach a cluster: the cache key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClusterKey {
    pub cluster: String,
    /// `None`: librados's search path (`$CEPH_CONF`, `/etc/ceph/ceph.conf`, ...).
    pub conffile: Option<PathBuf>,
    /// `None`: `admin`, as the `ceph` tools default.
    pub rados_id: Option<String>,
}

impl ClusterKey {
    pub fn describe(&self) -> String {
        let conf = self
            .conffile
            .as_ref()
            .map_or_else(|| String::from("default ceph.conf"), |p| p.display().to_string());
        format!(
            "cluster {:?} ({conf}) as client.{}",
            self.cluster,
            self.rados_id.as_deref().unwrap_or("admin")
        )
    }
}

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub const ESHUTDOWN: i32 = 108;

/// One connected `rados_t`.
pub struct Connection {
    pub api: &'static Api,
    handle: Rados,
    pub key: ClusterKey,
    /// The monitors, for error messages.
    pub server: String,
    dead: AtomicBool,
    generation: u64,
}

// SAFETY: librados handles are thread-safe; the pointer is only freed in Drop.
unsafe impl Send for Connection {}
// SAFETY: as above.
unsafe impl Sync for Connection {}

pub fn cstring(what: &str, s: &str) -> Result<CString, LockError> {
    CString::new(s).map_err(|_| LockError::InvalidName {
        name: s.to_owned(),
        reason: format!("{what} contains a NUL byte"),
    })
}

pub fn errno_text(rc: i32) -> String {
    let code = rc.abs();
    let text = std::io::Error::from_raw_os_error(code).to_string();
    match text.find(" (os error ") {
        Some(at) => format!("{} (errno {code})", &text[..at]),
        None => text,
    }
}

impl Connection {
    fn connect(key: &ClusterKey, timeout: Duration) -> Result<Connection, LockError> {
        let api = ffi::api().map_err(|message| LockError::Backend {
            backend: "ceph",
            server: String::from("-"),
            message,
        })?;
        let fail = |server: &str, message: String| LockError::Backend {
            backend: "ceph",
            server: server.to_owned(),
            message: format!("{}: {message}", key.describe()),
        };
        let cluster = cstring("cluster name", &key.cluster)?;
        let name =
            cstring("rados id", &format!("client.{}", key.rados_id.as_deref().unwrap_or("admin")))?;
        let mut handle: Rados = std::ptr::null_mut();
        // SAFETY: valid out-pointer and C strings; flags 0.
        let rc = unsafe { (api.rados_create2)(&mut handle, cluster.as_ptr(), name.as_ptr(), 0) };
        if rc < 0 {
            return Err(fail("-", format!("cannot create a client: {}", errno_text(rc))));
        }
        let mut conn = Connection {
            api,
            handle,
            key: key.clone(),
            server: String::from("-"),
            dead: AtomicBool::new(false),
            generation: crate::fork::generation(),
        };
        let conf = match &key.conffile {
            Some(p) => Some(cstring("conffile", &p.to_string_lossy())?),
            None => None,
        };
        // SAFETY: live handle; NULL means librados's default search path.
        let rc = unsafe {
            (api.rados_conf_read_file)(
                handle,
                conf.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            )
        };
        if rc < 0 {
            return Err(fail(
                "-",
                format!("cannot read the configuration file: {}", errno_text(rc)),
            ));
        }
        conn.server = conn.conf_get("mon_host").unwrap_or_else(|| String::from("-"));
        // librados would wait 300 s for an unreachable cluster and forever for a stuck op.
        let secs = timeout.as_secs().max(1).to_string();
        let op_secs = timeout.as_secs().max(30).to_string();
        for (opt, val) in [
            ("client_mount_timeout", secs.as_str()),
            ("rados_mon_op_timeout", op_secs.as_str()),
            ("rados_osd_op_timeout", op_secs.as_str()),
        ] {
            let (o, v) = (cstring("option", opt)?, cstring("value", val)?);
            // SAFETY: live handle, valid C strings.
            unsafe { (api.rados_conf_set)(handle, o.as_ptr(), v.as_ptr()) };
        }
        // SAFETY: live, configured handle.
        let rc = unsafe { (api.rados_connect)(handle) };
        if rc < 0 {
            let why = match -rc {
                libc::ETIMEDOUT => format!(
                    "cannot connect within {} s (monitors unreachable?)",
                    timeout.as_secs().max(1)
                ),
                libc::EACCES | libc::EPERM => {
                    String::from("authentication failed (wrong key or keyring for this client?)")
                }
                libc::ENOENT => String::from(
                    "cannot connect: no keyring or monitor address found (check the conffile)",
                ),
                _ => format!("cannot connect: {}", errno_text(rc)),
            };
            return Err(fail(&conn.server, why));
        }
        Ok(conn)
    }

    pub fn conf_get(&self, opt: &str) -> Option<String> {
        let o = CString::new(opt).ok()?;
        let mut buf = vec![0u8; 1024];
        // SAFETY: live handle; the buffer is writable for its length.
        let rc = unsafe {
            (self.api.rados_conf_get)(self.handle, o.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
        };
        if rc < 0 {
            return None;
        }
        Some(ffi::from_buf(&buf))
    }

    /// This client's address as owner strings show it (`127.0.0.1:0/123456`).
    pub fn address(&self) -> String {
        let mut p: *mut c_char = std::ptr::null_mut();
        // SAFETY: live handle; librados allocates the string, freed below.
        let rc = unsafe { (self.api.rados_getaddrs)(self.handle, &mut p) };
        if rc < 0 || p.is_null() {
            return String::new();
        }
        // SAFETY: non-NULL string librados allocated for us.
        let s = unsafe { ffi::owned(p) };
        // SAFETY: allocated by librados for us.
        unsafe { (self.api.rados_buffer_free)(p) };
        strip_addr(&s)
    }

    pub fn instance_id(&self) -> u64 {
        // SAFETY: live handle.
        unsafe { (self.api.rados_get_instance_id)(self.handle) }
    }

    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    /// Called when a call returned ESHUTDOWN: the cluster fenced this client.
    pub fn mark_dead(&self) {
        self.dead.store(true, Ordering::Release);
    }

    /// Whether this object belongs to this process (not inherited through fork).
    pub fn is_ours(&self) -> bool {
        self.generation == crate::fork::generation()
    }

    pub fn error(&self, message: String) -> LockError {
        LockError::Backend { backend: "ceph", server: self.server.clone(), message }
    }

    /// An I/O context on `pool` (and `namespace`).
    pub fn ioctx(self: &Arc<Self>, pool: &str, namespace: Option<&str>) -> Result<Pool, LockError> {
        let p = cstring("pool", pool)?;
        let mut io: IoCtx = std::ptr::null_mut();
        // SAFETY: live handle, valid out-pointer.
        let rc = unsafe { (self.api.rados_ioctx_create)(self.handle, p.as_ptr(), &mut io) };
        if rc < 0 {
            if -rc == ESHUTDOWN {
                self.mark_dead();
            }
            let why = if -rc == libc::ENOENT {
                format!("pool {pool:?} does not exist")
            } else {
                format!("cannot open pool {pool:?}: {}", errno_text(rc))
            };
            return Err(self.error(format!("{}: {why}", self.key.describe())));
        }
        if let Some(ns) = namespace {
            let n = cstring("namespace", ns)?;
            // SAFETY: live ioctx and C string.
            unsafe { (self.api.rados_ioctx_set_namespace)(io, n.as_ptr()) };
        }
        Ok(Pool { conn: Arc::clone(self), io })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // A parent's connection is left alone in a forked child: its threads are gone.
        if self.is_ours() {
            // SAFETY: the handle is ours and nothing uses it any more.
            unsafe { (self.api.rados_shutdown)(self.handle) };
        }
    }
}

/// "v1:127.0.0.1:0/123" and "[v2:...,v1:...]" to the "127.0.0.1:0/123" owner strings use.
pub fn strip_addr(s: &str) -> String {
    let s = s.trim_matches(|c| c == '[' || c == ']');
    let first = s.split(',').find(|a| a.starts_with("v1:")).unwrap_or(s);
    first.trim_start_matches("v1:").trim_start_matches("v2:").trim_start_matches("any:").to_owned()
}

/// An I/O context, keeping its connection alive.
pub struct Pool {
    pub conn: Arc<Connection>,
    pub io: IoCtx,
}

// SAFETY: ioctx handles may be used from any thread.
unsafe impl Send for Pool {}
// SAFETY: as above.
unsafe impl Sync for Pool {}

impl Drop for Pool {
    fn drop(&mut self) {
        if self.conn.is_ours() {
            // SAFETY: ours and unused from now on.
            unsafe { (self.conn.api.rados_ioctx_destroy)(self.io) };
        }
    }
}

/// A forked child gets an empty cache; the parent's connections are leaked there, never shut
/// down (their threads did not survive the fork).
static CACHE: PerProcess<parking_lot::Mutex<HashMap<ClusterKey, Arc<Connection>>>> =
    PerProcess::new();

/// The process's connection for `key`, connecting (within `timeout`) when there is none or the
/// cached one was fenced.
pub fn connection(key: &ClusterKey, timeout: Duration) -> Result<Arc<Connection>, LockError> {
    {
        let mut conns = CACHE.get().lock();
        if let Some(conn) = conns.get(key) {
            if !conn.is_dead() {
                return Ok(Arc::clone(conn));
            }
            conns.remove(key);
        }
    }
    // Connect outside the cache lock: other clusters' users must not wait for a slow connect.
    let conn = Arc::new(Connection::connect(key, timeout)?);
    let mut conns = CACHE.get().lock();
    if let Some(existing) = conns.get(key) {
        if !existing.is_dead() {
            // Another thread connected meanwhile: share its connection, drop ours.
            return Ok(Arc::clone(existing));
        }
    }
    conns.insert(key.clone(), Arc::clone(&conn));
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_match_owner_strings() {
        assert_eq!(strip_addr("127.0.0.1:0/12"), "127.0.0.1:0/12");
        assert_eq!(strip_addr("v1:127.0.0.1:0/12"), "127.0.0.1:0/12");
        assert_eq!(strip_addr("[v2:127.0.0.1:0/12,v1:127.0.0.1:0/12]"), "127.0.0.1:0/12");
    }

    #[test]
    fn errno_text_has_no_rust_suffix() {
        assert_eq!(errno_text(-2), "No such file or directory (errno 2)");
    }
}
