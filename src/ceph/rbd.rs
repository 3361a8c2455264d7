//! The managed exclusive lock of an RBD image (`rbd_lock_acquire(EXCLUSIVE)`) as a lock.
//!
//! Facts this design rests on (Ceph 16; the README's "Locks on Ceph"):
//! - a conflicting `rbd_lock_acquire` fails with EROFS in about 1.5 ms when the owner is alive,
//!   but blocks for the whole `osd_client_watch_timeout` when the owner is dead or frozen (then
//!   blocklists it and succeeds). So every attempt runs on a helper thread and a caller waits for
//!   it at most `try_bound`; an attempt still running is joined by the next try, and one that
//!   succeeds with nobody waiting for it gives the lock straight back.
//! - librbd notifies the header object `rbd_header.<id>` when a holder releases: waiters watch
//!   it and try again when told, with a slow back-off as the safety net for a lost message.
//! - handles sharing a connection show the same owner string and closing an image releases its
//!   lock, so threads of one process contend on an in-process mutex first and one open image per
//!   process is shared by every `RbdLock` naming it (kept open between uses: an open image that
//!   released its lock holds nothing).
//! - a fenced (blocklisted) client gets ESHUTDOWN on every call: it has lost the lock, and its
//!   connection is replaced.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::{Arc, Condvar, Mutex as StdMutex};
use std::time::{Duration, Instant};

use super::cluster::{self, cstring, errno_text, ClusterKey, Connection, Pool, ESHUTDOWN};
use super::events::Events;
use super::ffi::{self, Image, ImageWatcher};
use crate::fork::PerProcess;
use crate::local::Mutex as LocalMutex;
use crate::{wait, Lock, LockError, RawLock, Until};

/// Size of an image made to carry a lock: nothing is ever written to it.
const LOCK_IMAGE_SIZE: u64 = 4 << 20;
/// A non-blocking try gives up on an owner that does not answer after this long.
pub const DEFAULT_TRY_BOUND: Duration = Duration::from_secs(1);
/// Longest safety-net pause between tries when no release notification came.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often a holder with an `on_lost` callback checks it still owns the lock.
const LOST_CHECK: Duration = Duration::from_secs(1);

/// librbd's notify ops (`librbd/WatchNotifyTypes.h`): only a release frees the lock.
const NOTIFY_OP_RELEASED_LOCK: u32 = 1;

pub type OnLost = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageKey {
    pub cluster: ClusterKey,
    pub pool: String,
    pub namespace: Option<String>,
    pub image: String,
}

impl ImageKey {
    pub fn spec(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{}/{}", self.pool, ns, self.image),
            None => format!("{}/{}", self.pool, self.image),
        }
    }
}

#[derive(Clone)]
pub struct RbdOptions {
    pub create: bool,
    pub connect_timeout: Duration,
    pub try_bound: Duration,
}

impl Default for RbdOptions {
    fn default() -> Self {
        RbdOptions {
            create: true,
            connect_timeout: cluster::DEFAULT_CONNECT_TIMEOUT,
            try_bound: DEFAULT_TRY_BOUND,
        }
    }
}

/// What a watch callback needs; boxed so its address stays put while the watch lives.
struct WatchCtx {
    api: &'static ffi::Api,
    io: ffi::IoCtx,
    oid: CString,
    events: Arc<Events>,
    /// The watch failed (connection reset, timed out): it wakes nobody any more, so the next
    /// acquire that may reopen the image does (waiters meanwhile retry on the back-off).
    broken: std::sync::atomic::AtomicBool,
}

extern "C" fn on_notify(
    arg: *mut c_void,
    notify_id: u64,
    handle: u64,
    _notifier: u64,
    data: *mut c_void,
    len: usize,
) {
    // SAFETY: `arg` is the WatchCtx registered with this watch; it outlives the watch
    // (unwatched before it is freed).
    let ctx = unsafe { &*(arg as *const WatchCtx) };
    // Ack at once: the notifier (the releasing holder's librbd) waits for every watcher's ack.
    // SAFETY: live ioctx and oid; empty reply.
    unsafe {
        (ctx.api.rados_notify_ack)(ctx.io, ctx.oid.as_ptr(), notify_id, handle, std::ptr::null(), 0)
    };
    // Payload: ENCODE_START header (version, compat, u32 length), then the u32 op. Our own
    // attempts send "request lock" notifications: waking on those would make waiters spin.
    let op = if len >= 10 && !data.is_null() {
        let mut b = [0u8; 4];
        // SAFETY: `data` holds `len` >= 10 readable bytes for the call.
        unsafe { std::ptr::copy_nonoverlapping((data as *const u8).add(6), b.as_mut_ptr(), 4) };
        Some(u32::from_le_bytes(b))
    } else {
        None
    };
    if op.map_or(true, |op| op == NOTIFY_OP_RELEASED_LOCK) {
        ctx.events.bump();
    }
}

extern "C" fn on_watch_error(arg: *mut c_void, _cookie: u64, _err: c_int) {
    // SAFETY: as in `on_notify`.
    let ctx = unsafe { &*(arg as *const WatchCtx) };
    ctx.broken.store(true, std::sync::atomic::Ordering::Release);
    // Whatever broke the watch, waiters and the lost-lock check should look now.
    ctx.events.bump();
}

/// One open image with a watch on its header.
pub struct OpenImage {
    pool: Pool,
    image: Image,
    pub id: String,
    watch: Option<u64>,
    watch_ctx: Box<WatchCtx>,
}

// SAFETY: librbd image handles are thread-safe; the raw pointers are freed only in Drop.
unsafe impl Send for OpenImage {}
// SAFETY: as above.
unsafe impl Sync for OpenImage {}

impl Drop for OpenImage {
    fn drop(&mut self) {
        if !self.pool.conn.is_ours() {
            // Inherited through fork: the parent's handles are not ours to close.
            return;
        }
        let api = self.pool.conn.api;
        if let Some(cookie) = self.watch.take() {
            // SAFETY: our watch on our ioctx; after this no callback uses `watch_ctx`.
            unsafe { (api.rados_unwatch2)(self.pool.io, cookie) };
        }
        // SAFETY: our image, unused from now on.
        unsafe { (api.rbd_close)(self.image) };
    }
}

impl OpenImage {
    fn conn(&self) -> &Arc<Connection> {
        &self.pool.conn
    }

    fn api(&self) -> &'static ffi::Api {
        self.pool.conn.api
    }

    /// Notes a fenced connection so that the next use gets a new one.
    fn check(&self, rc: c_int) -> c_int {
        if rc == -ESHUTDOWN {
            self.conn().mark_dead();
        }
        rc
    }

    fn lock_acquire(&self) -> c_int {
        // SAFETY: live image.
        self.check(unsafe {
            (self.api().rbd_lock_acquire)(self.image, ffi::RBD_LOCK_MODE_EXCLUSIVE)
        })
    }

    fn lock_release(&self) -> c_int {
        // SAFETY: live image.
        self.check(unsafe { (self.api().rbd_lock_release)(self.image) })
    }

    /// `Ok(None)`: this client was fenced.
    fn is_owner(&self) -> Result<Option<bool>, c_int> {
        let mut owner: c_int = 0;
        // SAFETY: live image and out-pointer.
        let rc =
            self.check(unsafe { (self.api().rbd_is_exclusive_lock_owner)(self.image, &mut owner) });
        match rc {
            0 => Ok(Some(owner != 0)),
            rc if rc == -ESHUTDOWN => Ok(None),
            rc => Err(rc),
        }
    }

    fn owners(&self) -> Result<Vec<String>, c_int> {
        let mut cap: usize = 8;
        loop {
            let mut mode: c_int = 0;
            let mut list: Vec<*mut c_char> = vec![std::ptr::null_mut(); cap];
            let mut n = cap;
            // SAFETY: live image; `list` has room for `n` pointers.
            let rc = self.check(unsafe {
                (self.api().rbd_lock_get_owners)(self.image, &mut mode, list.as_mut_ptr(), &mut n)
            });
            if rc == -libc::ERANGE && n > cap {
                cap = n;
                continue;
            }
            if rc == -libc::ENOENT {
                return Ok(Vec::new());
            }
            if rc < 0 {
                return Err(rc);
            }
            // SAFETY: librbd filled the first `n` entries with NUL-terminated strings.
            let out = list.iter().take(n).map(|p| unsafe { ffi::owned(*p) }).collect();
            // SAFETY: `n` strings allocated by librbd in this call.
            unsafe { (self.api().rbd_lock_get_owners_cleanup)(list.as_mut_ptr(), n) };
            return Ok(out);
        }
    }

    fn watchers(&self) -> Result<Vec<Watcher>, c_int> {
        let mut cap: usize = 16;
        loop {
            let mut list: Vec<ImageWatcher> = (0..cap)
                .map(|_| ImageWatcher { addr: std::ptr::null_mut(), id: 0, cookie: 0 })
                .collect();
            let mut n = cap;
            // SAFETY: live image; `list` has room for `n` entries.
            let rc = self.check(unsafe {
                (self.api().rbd_watchers_list)(self.image, list.as_mut_ptr(), &mut n)
            });
            if rc == -libc::ERANGE && n > cap {
                cap = n;
                continue;
            }
            if rc < 0 {
                return Err(rc);
            }
            let out = list
                .iter()
                .take(n)
                .map(|w| Watcher {
                    // SAFETY: librbd filled this entry's address (a C string or NULL).
                    address: cluster::strip_addr(&unsafe { ffi::owned(w.addr) }),
                    client_id: w.id,
                    cookie: w.cookie,
                })
                .collect();
            // SAFETY: `n` entries filled by librbd in this call.
            unsafe { (self.api().rbd_watchers_list_cleanup)(list.as_mut_ptr(), n) };
            return Ok(out);
        }
    }

    fn break_lock(&self, owner: &str) -> c_int {
        let Ok(o) = CString::new(owner) else { return -libc::EINVAL };
        // SAFETY: live image, C string.
        self.check(unsafe {
            (self.api().rbd_lock_break)(self.image, ffi::RBD_LOCK_MODE_EXCLUSIVE, o.as_ptr())
        })
    }
}

/// A client watching the image header (every open image has one, librbd's own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watcher {
    pub address: String,
    pub client_id: i64,
    pub cookie: u64,
}

/// An owner and whether it still has a live watch (a dead client's watch expires after
/// `osd_client_watch_timeout`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub address: String,
    pub alive: bool,
}

#[derive(Default)]
struct Attempt {
    running: bool,
    /// The finished attempt's result and the image it ran on, kept for a waiting claimer.
    result: Option<(c_int, Arc<OpenImage>)>,
    /// Callers waiting for the running attempt: with none left, a success is given back.
    claimers: usize,
}

/// Everything a process shares about one image.
struct Shared {
    key: ImageKey,
    generation: u64,
    /// Threads of this process, whatever `RbdLock` object they use.
    local: LocalMutex,
    image: StdMutex<Option<Arc<OpenImage>>>,
    attempt: StdMutex<Attempt>,
    attempt_done: Condvar,
    events: Arc<Events>,
}

fn lock<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Per process: a forked child starts afresh and leaks its parent's (never closing them).
static SHARED: PerProcess<parking_lot::Mutex<HashMap<ImageKey, Arc<Shared>>>> = PerProcess::new();

/// Open images kept for reuse with no lock object using them: the nova pattern (a new lock
/// object per use) then costs no open, while a service locking many names holds a bounded set.
const IDLE_KEPT: usize = 64;

fn shared_for(key: &ImageKey) -> Arc<Shared> {
    let gen = crate::fork::generation();
    let mut r = SHARED.get().lock();
    let mut evicted = Vec::new();
    if r.len() >= IDLE_KEPT && !r.contains_key(key) {
        // Only the registry refers to these: no lock object, attempt or hold uses them.
        let idle: Vec<ImageKey> =
            r.iter().filter(|(_, s)| Arc::strong_count(s) == 1).map(|(k, _)| k.clone()).collect();
        evicted.extend(idle.iter().filter_map(|k| r.remove(k)));
    }
    let shared = Arc::clone(r.entry(key.clone()).or_insert_with(|| {
        Arc::new(Shared {
            key: key.clone(),
            generation: gen,
            local: LocalMutex::new(),
            image: StdMutex::new(None),
            attempt: StdMutex::new(Attempt::default()),
            attempt_done: Condvar::new(),
            events: Arc::new(Events::default()),
        })
    }));
    drop(r);
    // Closing images takes round trips: not under the registry lock.
    drop(evicted);
    shared
}

impl Shared {
    fn error(&self, conn: Option<&Connection>, what: &str, rc: c_int) -> LockError {
        let message = format!(
            "{} image {}: {what}: {}",
            self.key.cluster.describe(),
            self.key.spec(),
            errno_text(rc)
        );
        LockError::Backend {
            backend: "rbd",
            server: conn.map_or_else(|| String::from("-"), |c| c.server.clone()),
            message,
        }
    }

    /// The open image, opening (and creating, when asked) it on first use or after the
    /// connection was fenced.
    /// `renew_watch`: the caller holds the in-process mutex and no attempt runs, so nothing
    /// in this process holds the lock through the open image and it may be reopened to get a
    /// working watch (closing an image releases its lock).
    fn open(
        &self,
        opts: &RbdOptions,
        create: bool,
        renew_watch: bool,
    ) -> Result<Arc<OpenImage>, LockError> {
        let mut slot = lock(&self.image);
        if let Some(img) = slot.as_ref() {
            // (An image that could not be watched at all is not reopened for it each time.)
            let watch_ok = !img.watch_ctx.broken.load(std::sync::atomic::Ordering::Acquire);
            if !img.conn().is_dead() && (watch_ok || !renew_watch) {
                return Ok(Arc::clone(img));
            }
        }
        *slot = None;
        let conn = cluster::connection(&self.key.cluster, opts.connect_timeout)?;
        let pool = conn.ioctx(&self.key.pool, self.key.namespace.as_deref())?;
        let api = conn.api;
        let name = cstring("image name", &self.key.image)?;
        let mut image: Image = std::ptr::null_mut();
        // SAFETY: live ioctx, C string, out-pointer; no snapshot.
        let mut rc =
            unsafe { (api.rbd_open)(pool.io, name.as_ptr(), &mut image, std::ptr::null()) };
        if rc == -libc::ENOENT && create {
            let mut order: c_int = 0;
            let features = ffi::RBD_FEATURE_LAYERING | ffi::RBD_FEATURE_EXCLUSIVE_LOCK;
            // SAFETY: live ioctx, C string, out-pointer.
            let made = unsafe {
                (api.rbd_create2)(pool.io, name.as_ptr(), LOCK_IMAGE_SIZE, features, &mut order)
            };
            // Another process creating it at the same moment is fine: both use that image.
            if made < 0 && made != -libc::EEXIST {
                return Err(self.error(Some(&conn), "cannot create the lock image", made));
            }
            // SAFETY: as above.
            rc = unsafe { (api.rbd_open)(pool.io, name.as_ptr(), &mut image, std::ptr::null()) };
        }
        if rc < 0 {
            if rc == -ESHUTDOWN {
                conn.mark_dead();
            }
            let what = if rc == -libc::ENOENT {
                "no such image (create=False)"
            } else {
                "cannot open the image"
            };
            return Err(self.error(Some(&conn), what, rc));
        }
        let mut features: u64 = 0;
        // SAFETY: live image and out-pointer.
        unsafe { (api.rbd_get_features)(image, &mut features) };
        let mut idbuf = [0u8; 128];
        // SAFETY: live image; the buffer is writable for its length.
        let idrc = unsafe { (api.rbd_get_id)(image, idbuf.as_mut_ptr().cast(), idbuf.len()) };
        let id = if idrc >= 0 { ffi::from_buf(&idbuf) } else { String::new() };
        let oid = cstring("header", &format!("rbd_header.{id}"))?;
        let mut img = OpenImage {
            watch_ctx: Box::new(WatchCtx {
                api,
                io: pool.io,
                oid,
                events: Arc::clone(&self.events),
                broken: std::sync::atomic::AtomicBool::new(false),
            }),
            pool,
            image,
            id,
            watch: None,
        };
        if features & ffi::RBD_FEATURE_EXCLUSIVE_LOCK == 0 {
            return Err(LockError::Backend {
                backend: "rbd",
                server: img.conn().server.clone(),
                message: format!(
                    "image {} lacks the exclusive-lock feature, which RbdLock needs; enable it \
                     with: rbd feature enable {} exclusive-lock",
                    self.key.spec(),
                    self.key.spec()
                ),
            });
        }
        if idrc >= 0 {
            let mut cookie: u64 = 0;
            let ctx: *const WatchCtx = &*img.watch_ctx;
            // SAFETY: live ioctx; `ctx` stays valid until the watch is removed in Drop.
            let rc = unsafe {
                (api.rados_watch2)(
                    img.pool.io,
                    img.watch_ctx.oid.as_ptr(),
                    &mut cookie,
                    on_notify,
                    on_watch_error,
                    ctx as *mut c_void,
                )
            };
            // Without a watch, waiters still make progress through the back-off.
            if rc == 0 {
                img.watch = Some(cookie);
            }
        }
        let img = Arc::new(img);
        *slot = Some(Arc::clone(&img));
        Ok(img)
    }

    /// The image if it is open or can be opened without creating it; `None` if it does not exist.
    fn existing(&self, opts: &RbdOptions) -> Result<Option<Arc<OpenImage>>, LockError> {
        match self.open(opts, false, false) {
            Ok(img) => Ok(Some(img)),
            Err(LockError::Backend { ref message, .. }) if message.contains("no such image") => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// One `rbd_lock_acquire`, waited for at most `bound` (see the module comment). Called
    /// with the in-process mutex held. `Ok(Some(image))`: held on `image`.
    fn attempt(
        self: &Arc<Self>,
        img: &Arc<OpenImage>,
        bound: Duration,
    ) -> Result<Option<Arc<OpenImage>>, c_int> {
        let mut st = lock(&self.attempt);
        if !st.running && st.result.is_none() {
            st.running = true;
            let me = Arc::clone(self);
            let on = Arc::clone(img);
            let spawned = std::thread::Builder::new()
                .name(String::from("ferrolock-rbd"))
                .spawn(move || me.run_attempt(on));
            if spawned.is_err() {
                // No thread to be had: try on this thread, unbounded (the rare path).
                st.running = false;
                drop(st);
                let rc = img.lock_acquire();
                return if rc == 0 { Ok(Some(Arc::clone(img))) } else { classify(rc) };
            }
        }
        st.claimers += 1;
        let deadline = Instant::now() + bound;
        while st.result.is_none() && st.running {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = match self.attempt_done.wait_timeout(st, left) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        st.claimers -= 1;
        match st.result.take() {
            Some((0, on)) => Ok(Some(on)),
            Some((rc, _)) => classify(rc),
            None => Ok(None),
        }
    }

    /// One attempt on the calling thread, if none is running. Used right after a release
    /// notification: the lock is free then and the call returns in about a millisecond, and
    /// the helper thread's extra wake-ups would be much of the handoff on a loaded machine.
    /// (Only a client that took the lock in between and froze could make this call block.)
    fn attempt_inline(
        &self,
        img: &Arc<OpenImage>,
    ) -> Option<Result<Option<Arc<OpenImage>>, c_int>> {
        {
            let mut st = lock(&self.attempt);
            if st.running || st.result.is_some() {
                return None;
            }
            st.running = true;
        }
        let rc = img.lock_acquire();
        lock(&self.attempt).running = false;
        self.attempt_done.notify_all();
        Some(if rc == 0 { Ok(Some(Arc::clone(img))) } else { classify(rc) })
    }

    fn run_attempt(&self, img: Arc<OpenImage>) {
        let rc = img.lock_acquire();
        let mut st = lock(&self.attempt);
        st.running = false;
        if st.claimers > 0 {
            st.result = Some((rc, img));
        } else if rc == 0 {
            // Everyone gave up on this attempt (a frozen owner made it outlast their bound):
            // nothing may stay held that no caller knows of.
            img.lock_release();
        }
        drop(st);
        self.attempt_done.notify_all();
    }
}

/// Busy (`Ok(None)`) or a real error.
fn classify(rc: c_int) -> Result<Option<Arc<OpenImage>>, c_int> {
    if rc == -libc::EROFS || rc == -libc::EBUSY || rc == -libc::EAGAIN {
        Ok(None)
    } else {
        Err(rc)
    }
}

struct Monitor {
    stop: Arc<(StdMutex<bool>, Condvar)>,
}

impl Monitor {
    fn stop(self) {
        let (m, cv) = &*self.stop;
        *lock(m) = true;
        cv.notify_all();
    }
}

struct Hold {
    image: Arc<OpenImage>,
    lost: Arc<StdMutex<Option<String>>>,
    monitor: Option<Monitor>,
    generation: u64,
}

/// One `RbdLock`: a handle on the process's shared state for its image.
pub struct RbdLock {
    key: ImageKey,
    opts: RbdOptions,
    shared: StdMutex<Arc<Shared>>,
    held: StdMutex<Option<Hold>>,
    on_lost: Option<OnLost>,
}

impl RbdLock {
    pub fn new(
        key: ImageKey,
        opts: RbdOptions,
        on_lost: Option<OnLost>,
    ) -> Result<RbdLock, LockError> {
        if key.image.is_empty() || key.image.contains('/') || key.image.contains('@') {
            return Err(LockError::InvalidName {
                name: key.image.clone(),
                reason: String::from("an RBD image name must be non-empty, without '/' or '@'"),
            });
        }
        if key.pool.is_empty() {
            return Err(LockError::InvalidName {
                name: key.pool.clone(),
                reason: String::from("empty pool name"),
            });
        }
        let shared = StdMutex::new(shared_for(&key));
        Ok(RbdLock { key, opts, shared, held: StdMutex::new(None), on_lost })
    }

    pub fn key(&self) -> &ImageKey {
        &self.key
    }

    /// The process's shared state (a new one in a forked child).
    fn shared(&self) -> Arc<Shared> {
        let mut s = lock(&self.shared);
        if s.generation != crate::fork::generation() {
            let old = std::mem::replace(&mut *s, shared_for(&self.key));
            std::mem::forget(old);
        }
        Arc::clone(&s)
    }

    fn lost_error(&self, reason: &str) -> LockError {
        LockError::Lost { name: self.key.spec(), reason: reason.to_owned() }
    }

    /// Take the lock, waiting until `until.deadline`. A non-blocking call (`Until::now()`)
    /// returns within about `try_bound` even when the owner is frozen.
    fn take(&self, until: Until, interrupted: &mut dyn FnMut() -> bool) -> Result<bool, LockError> {
        let shared = self.shared();
        if !wait::acquire(&shared.local, until, interrupted)? {
            return Ok(false);
        }
        match self.acquire_rbd(&shared, until, interrupted) {
            Ok(Some(image)) => {
                self.start_hold(image);
                Ok(true)
            }
            Ok(None) => {
                let _ = shared.local.release();
                Ok(false)
            }
            Err(e) => {
                let _ = shared.local.release();
                Err(e)
            }
        }
    }

    fn acquire_rbd(
        &self,
        shared: &Arc<Shared>,
        until: Until,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Arc<OpenImage>>, LockError> {
        let mut backoff = Duration::from_millis(100);
        let mut fenced_retries = 0;
        let mut woken = false;
        loop {
            let seen = shared.events.seq();
            let idle = !lock(&shared.attempt).running;
            let img = shared.open(&self.opts, self.opts.create, idle)?;
            let bound = match until.deadline {
                Some(d) if d > Instant::now() => {
                    self.opts.try_bound.min(d - Instant::now()).max(Duration::from_millis(1))
                }
                _ => self.opts.try_bound,
            };
            let outcome = match woken {
                true => shared.attempt_inline(&img).unwrap_or_else(|| shared.attempt(&img, bound)),
                false => shared.attempt(&img, bound),
            };
            woken = false;
            match outcome {
                Ok(Some(on)) => return Ok(Some(on)),
                Ok(None) => {}
                Err(rc) if rc == -ESHUTDOWN && fenced_retries < 2 => {
                    // Our connection was fenced earlier: open again on a new one.
                    fenced_retries += 1;
                    continue;
                }
                Err(rc) if rc == -libc::EINVAL => {
                    return Err(shared.error(Some(img.conn()), "rbd_lock_acquire refused (exclusive-lock feature disabled or image read-only?)", rc))
                }
                Err(rc) => return Err(shared.error(Some(img.conn()), "rbd_lock_acquire failed", rc)),
            }
            let deadline = until.deadline;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            // Sleep until a release notification, the end of a running attempt, the back-off
            // (safety net) or the deadline, asking `interrupted` every step.
            let retry_at = Instant::now() + backoff;
            let step = until.step;
            loop {
                if interrupted() {
                    return Err(LockError::Interrupted);
                }
                let now = Instant::now();
                let mut end = (now + step).min(retry_at);
                if let Some(d) = deadline {
                    end = end.min(d);
                }
                if shared.events.wait_change(seen, end) {
                    backoff = Duration::from_millis(100);
                    woken = true;
                    break;
                }
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    return Ok(None);
                }
                if now >= retry_at {
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    break;
                }
            }
        }
    }

    fn start_hold(&self, image: Arc<OpenImage>) {
        let lost = Arc::new(StdMutex::new(None));
        let monitor = self.on_lost.as_ref().and_then(|cb| {
            let stop = Arc::new((StdMutex::new(false), Condvar::new()));
            let (img, lost, cb, stop2) =
                (Arc::clone(&image), Arc::clone(&lost), Arc::clone(cb), Arc::clone(&stop));
            std::thread::Builder::new()
                .name(String::from("ferrolock-rbd-lost"))
                .spawn(move || watch_for_loss(img, lost, cb, stop2))
                .ok()
                .map(|_| Monitor { stop })
        });
        *lock(&self.held) =
            Some(Hold { image, lost, monitor, generation: crate::fork::generation() });
    }

    /// Give the lock back. `LockError::Lost` when it had been taken away (this client fenced,
    /// or no longer the owner); the lock is not held afterwards either way.
    fn give_back(&self) -> Result<(), LockError> {
        let Some(hold) = lock(&self.held).take() else {
            return Err(LockError::NotHeld);
        };
        if hold.generation != crate::fork::generation() {
            // Taken by our parent before it forked: the parent's client holds it, not us.
            std::mem::forget(hold);
            return Ok(());
        }
        if let Some(m) = hold.monitor {
            m.stop();
        }
        let rc = hold.image.lock_release();
        let shared = self.shared();
        let _ = shared.local.release();
        let already = lock(&hold.lost).clone();
        match rc {
            0 => match already {
                Some(reason) => Err(self.lost_error(&reason)),
                None => Ok(()),
            },
            rc if rc == -ESHUTDOWN => Err(self.lost_error(
                "this client was blocklisted (fenced) by the cluster: another client took the lock",
            )),
            rc if rc == -libc::EINVAL => Err(self.lost_error(&already.unwrap_or_else(|| {
                String::from("this client was no longer the owner when it released")
            }))),
            rc => Err(shared.error(Some(hold.image.conn()), "rbd_lock_release failed", rc)),
        }
    }

    /// Whether this handle holds the lock and the cluster agrees.
    fn still_owner(&self) -> Result<bool, LockError> {
        let held = lock(&self.held);
        let Some(hold) = held.as_ref() else { return Ok(false) };
        if hold.generation != crate::fork::generation() {
            return Ok(false);
        }
        match hold.image.is_owner() {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Ok(false),
            Err(rc) => Err(self.shared().error(
                Some(hold.image.conn()),
                "rbd_is_exclusive_lock_owner failed",
                rc,
            )),
        }
    }

    pub fn holds(&self) -> bool {
        lock(&self.held).is_some()
    }

    /// The current owners (addresses of their rados clients) and whether each has a live watch.
    pub fn owners(&self) -> Result<Vec<Owner>, LockError> {
        let shared = self.shared();
        let Some(img) = shared.existing(&self.opts)? else { return Ok(Vec::new()) };
        let owners = img
            .owners()
            .map_err(|rc| shared.error(Some(img.conn()), "rbd_lock_get_owners failed", rc))?;
        if owners.is_empty() {
            return Ok(Vec::new());
        }
        let watchers = img
            .watchers()
            .map_err(|rc| shared.error(Some(img.conn()), "rbd_watchers_list failed", rc))?;
        Ok(owners
            .into_iter()
            .map(|o| {
                let address = cluster::strip_addr(&o);
                let alive = watchers.iter().any(|w| w.address == address);
                Owner { address, alive }
            })
            .collect())
    }

    /// Every client watching the image (each open handle, ours included).
    pub fn watchers(&self) -> Result<Vec<Watcher>, LockError> {
        let shared = self.shared();
        let Some(img) = shared.existing(&self.opts)? else { return Ok(Vec::new()) };
        img.watchers().map_err(|rc| shared.error(Some(img.conn()), "rbd_watchers_list failed", rc))
    }

    /// Break `owner`'s lock (librbd blocklists that client, fencing it). `Ok(false)` when
    /// `owner` no longer owns it.
    pub fn break_lock(&self, owner: &str) -> Result<bool, LockError> {
        let shared = self.shared();
        let Some(img) = shared.existing(&self.opts)? else { return Ok(false) };
        // librbd wants the owner string exactly as it reports it.
        let exact = img
            .owners()
            .map_err(|rc| shared.error(Some(img.conn()), "rbd_lock_get_owners failed", rc))?
            .into_iter()
            .find(|o| cluster::strip_addr(o) == cluster::strip_addr(owner));
        let Some(exact) = exact else { return Ok(false) };
        match img.break_lock(&exact) {
            0 => Ok(true),
            rc if rc == -libc::ENOENT => Ok(false),
            rc => Err(shared.error(Some(img.conn()), "rbd_lock_break failed", rc)),
        }
    }

    /// This process's client address for the image's cluster (what owners show for us).
    pub fn client_address(&self) -> Result<String, LockError> {
        let shared = self.shared();
        let img = shared.open(&self.opts, self.opts.create, false)?;
        Ok(img.conn().address())
    }
}

impl Lock for RbdLock {
    /// A non-blocking call (`Until::now()`) returns within about the try bound even when the
    /// owner is frozen.
    fn acquire(
        &self,
        until: Until,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<bool, LockError> {
        self.take(until, interrupted)
    }

    /// `Lost` when it had been taken away (this client fenced, lease expired, lock broken); it
    /// is not held afterwards either way.
    fn release(&self) -> Result<(), LockError> {
        self.give_back()
    }

    /// Asks the cluster.
    fn is_still_owner(&self) -> Result<bool, LockError> {
        self.still_owner()
    }

    fn blocking_io(&self) -> bool {
        true
    }
}

impl Drop for RbdLock {
    fn drop(&mut self) {
        // A handle dropped while held gives the lock back (its in-process mutex too).
        if self.holds() {
            let _ = self.give_back();
        }
    }
}

fn watch_for_loss(
    img: Arc<OpenImage>,
    lost: Arc<StdMutex<Option<String>>>,
    cb: OnLost,
    stop: Arc<(StdMutex<bool>, Condvar)>,
) {
    let (m, cv) = &*stop;
    loop {
        {
            let stopped = lock(m);
            if *stopped {
                return;
            }
            let (g, _) = match cv.wait_timeout(stopped, LOST_CHECK) {
                Ok(x) => x,
                Err(e) => e.into_inner(),
            };
            if *g {
                return;
            }
        }
        let reason = match img.is_owner() {
            Ok(Some(true)) => continue,
            Ok(Some(false)) => "this client is no longer the owner (the lock was broken)",
            Ok(None) => {
                "this client was blocklisted (fenced) by the cluster: another client took the lock"
            }
            // A transient failure says nothing about ownership: look again later.
            Err(_) => continue,
        };
        if *lock(m) {
            return;
        }
        *lock(&lost) = Some(reason.to_owned());
        cb(reason);
        return;
    }
}
