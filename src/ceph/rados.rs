//! Arbitrary lock names as librados object locks (`cls_lock`): `rados_lock_exclusive` on an
//! object named after the lock, with a lease the holder renews in the background
//! (`LIBRADOS_LOCK_FLAG_MUST_RENEW`, which fails with ENOENT once the lease expired: that is how
//! a holder learns it lost the lock). A crashed holder's lock frees itself after the lease.
//!
//! Waiters watch the object and a releaser notifies it (from a helper thread, so a waiter that
//! died does not hold up the release); a slow back-off covers expiries, which nobody announces.

use std::collections::HashMap;
use std::ffi::{c_int, c_void, CString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex as StdMutex};
use std::time::{Duration, Instant};

use super::cluster::{self, cstring, errno_text, ClusterKey, Pool, ESHUTDOWN};
use super::events::Events;
use super::ffi;
use crate::fork::PerProcess;
use crate::local::Mutex as LocalMutex;
use crate::{wait, Lock, LockError, RawLock, Until};

/// The cls_lock name on every lock object (the object name is the lock name).
const LOCK_NAME: &std::ffi::CStr = ffi::cstr!("ferrolock");
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

pub type OnLost = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    pub cluster: ClusterKey,
    pub pool: String,
    pub namespace: Option<String>,
    pub object: String,
}

struct WatchCtx {
    api: &'static ffi::Api,
    io: ffi::IoCtx,
    oid: CString,
    events: Arc<Events>,
}

extern "C" fn on_notify(
    arg: *mut c_void,
    notify_id: u64,
    handle: u64,
    _n: u64,
    _d: *mut c_void,
    _l: usize,
) {
    // SAFETY: `arg` is the WatchCtx of this watch, alive until the watch is removed.
    let ctx = unsafe { &*(arg as *const WatchCtx) };
    // SAFETY: live ioctx and oid; empty reply.
    unsafe {
        (ctx.api.rados_notify_ack)(ctx.io, ctx.oid.as_ptr(), notify_id, handle, std::ptr::null(), 0)
    };
    ctx.events.bump();
}

extern "C" fn on_watch_error(arg: *mut c_void, _cookie: u64, _err: c_int) {
    // SAFETY: as in `on_notify`.
    let ctx = unsafe { &*(arg as *const WatchCtx) };
    ctx.events.bump();
}

struct Watch {
    pool: Arc<Pool>,
    cookie: u64,
    _ctx: Box<WatchCtx>,
}

// SAFETY: the raw pointers in the context are thread-safe librados handles.
unsafe impl Send for Watch {}
// SAFETY: as above.
unsafe impl Sync for Watch {}

impl Drop for Watch {
    fn drop(&mut self) {
        if self.pool.conn.is_ours() {
            // SAFETY: our watch on our ioctx; no callback runs after this returns.
            unsafe { (self.pool.conn.api.rados_unwatch2)(self.pool.io, self.cookie) };
        }
    }
}

struct Shared {
    key: ObjectKey,
    generation: u64,
    local: LocalMutex,
    pool: StdMutex<Option<Arc<Pool>>>,
    watch: StdMutex<Option<Watch>>,
    events: Arc<Events>,
}

fn lock<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Per process: a forked child starts afresh and leaks its parent's (never closing them).
static SHARED: PerProcess<parking_lot::Mutex<HashMap<ObjectKey, Arc<Shared>>>> = PerProcess::new();

/// Open objects kept for reuse with no lock object using them: the nova pattern (a new lock
/// object per use) then costs no open, while a service locking many names holds a bounded set.
const IDLE_KEPT: usize = 64;

fn shared_for(key: &ObjectKey) -> Arc<Shared> {
    let gen = crate::fork::generation();
    let mut r = SHARED.get().lock();
    let mut evicted = Vec::new();
    if r.len() >= IDLE_KEPT && !r.contains_key(key) {
        // Only the registry refers to these: no lock object, attempt or hold uses them.
        let idle: Vec<ObjectKey> =
            r.iter().filter(|(_, s)| Arc::strong_count(s) == 1).map(|(k, _)| k.clone()).collect();
        evicted.extend(idle.iter().filter_map(|k| r.remove(k)));
    }
    let shared = Arc::clone(r.entry(key.clone()).or_insert_with(|| {
        Arc::new(Shared {
            key: key.clone(),
            generation: gen,
            local: LocalMutex::new(),
            pool: StdMutex::new(None),
            watch: StdMutex::new(None),
            events: Arc::new(Events::default()),
        })
    }));
    drop(r);
    // Closing images takes round trips: not under the registry lock.
    drop(evicted);
    shared
}

impl Shared {
    fn pool(&self, timeout: Duration) -> Result<Arc<Pool>, LockError> {
        let mut slot = lock(&self.pool);
        if let Some(p) = slot.as_ref() {
            if !p.conn.is_dead() {
                return Ok(Arc::clone(p));
            }
        }
        *slot = None;
        *lock(&self.watch) = None;
        let conn = cluster::connection(&self.key.cluster, timeout)?;
        let p = Arc::new(conn.ioctx(&self.key.pool, self.key.namespace.as_deref())?);
        *slot = Some(Arc::clone(&p));
        Ok(p)
    }

    fn error(&self, pool: &Pool, what: &str, rc: c_int) -> LockError {
        LockError::Backend {
            backend: "rados",
            server: pool.conn.server.clone(),
            message: format!(
                "{} object {}/{}: {what}: {}",
                self.key.cluster.describe(),
                self.key.pool,
                self.key.object,
                errno_text(rc)
            ),
        }
    }

    /// Watch the lock object so that a release wakes us (best effort: the back-off remains).
    fn ensure_watch(&self, pool: &Arc<Pool>, oid: &CString) {
        let mut w = lock(&self.watch);
        if w.as_ref().is_some_and(|w| Arc::ptr_eq(&w.pool, pool)) {
            return;
        }
        let api = pool.conn.api;
        let ctx = Box::new(WatchCtx {
            api,
            io: pool.io,
            oid: oid.clone(),
            events: Arc::clone(&self.events),
        });
        let mut cookie = 0u64;
        let ptr: *const WatchCtx = &*ctx;
        // SAFETY: live ioctx; `ctx` outlives the watch (dropped after unwatch in Watch::drop).
        let rc = unsafe {
            (api.rados_watch2)(
                pool.io,
                oid.as_ptr(),
                &mut cookie,
                on_notify,
                on_watch_error,
                ptr as *mut c_void,
            )
        };
        if rc == 0 {
            *w = Some(Watch { pool: Arc::clone(pool), cookie, _ctx: ctx });
        }
    }
}

fn lock_exclusive(
    pool: &Pool,
    oid: &CString,
    cookie: &CString,
    lease: Duration,
    flags: u8,
) -> c_int {
    let api = pool.conn.api;
    // Zero the whole struct: garbage in tv_usec lengthened leases by seconds.
    let mut tv = libc::timeval {
        tv_sec: lease.as_secs() as libc::time_t,
        tv_usec: lease.subsec_micros() as libc::suseconds_t,
    };
    let tvp = if lease.is_zero() { std::ptr::null_mut() } else { &mut tv as *mut libc::timeval };
    // SAFETY: live ioctx, C strings, valid (or NULL) duration.
    let rc = unsafe {
        (api.rados_lock_exclusive)(
            pool.io,
            oid.as_ptr(),
            LOCK_NAME.as_ptr(),
            cookie.as_ptr(),
            LOCK_NAME.as_ptr(),
            tvp,
            flags,
        )
    };
    if rc == -ESHUTDOWN {
        pool.conn.mark_dead();
    }
    rc
}

struct Renewer {
    stop: Arc<(StdMutex<bool>, Condvar)>,
}

struct Hold {
    pool: Arc<Pool>,
    lost: Arc<StdMutex<Option<String>>>,
    renewer: Option<Renewer>,
    generation: u64,
}

/// One lock on a RADOS object, with a lease renewed while held.
pub struct RadosLock {
    key: ObjectKey,
    oid: CString,
    cookie: CString,
    lease: Duration,
    connect_timeout: Duration,
    shared: StdMutex<Arc<Shared>>,
    held: StdMutex<Option<Hold>>,
    on_lost: Option<OnLost>,
}

static COOKIES: AtomicU64 = AtomicU64::new(0);

impl RadosLock {
    pub fn new(
        key: ObjectKey,
        lease: Duration,
        connect_timeout: Duration,
        on_lost: Option<OnLost>,
    ) -> Result<RadosLock, LockError> {
        if key.object.is_empty() {
            return Err(LockError::InvalidName {
                name: String::new(),
                reason: String::from("empty lock name"),
            });
        }
        let oid = cstring("lock name", &key.object)?;
        // Handles of one process share a client: the cookie tells their holds apart.
        let cookie = cstring(
            "cookie",
            &format!("{}-{}", std::process::id(), COOKIES.fetch_add(1, Ordering::Relaxed)),
        )?;
        let shared = StdMutex::new(shared_for(&key));
        Ok(RadosLock {
            key,
            oid,
            cookie,
            lease,
            connect_timeout,
            shared,
            held: StdMutex::new(None),
            on_lost,
        })
    }

    fn shared(&self) -> Arc<Shared> {
        let mut s = lock(&self.shared);
        if s.generation != crate::fork::generation() {
            let old = std::mem::replace(&mut *s, shared_for(&self.key));
            std::mem::forget(old);
        }
        Arc::clone(&s)
    }

    fn lost_error(&self, reason: &str) -> LockError {
        LockError::Lost {
            name: format!("{}/{}", self.key.pool, self.key.object),
            reason: reason.to_owned(),
        }
    }

    /// One try; `Ok(Some(pool))` when held.
    fn try_once(&self, shared: &Shared) -> Result<Option<Arc<Pool>>, LockError> {
        for _ in 0..2 {
            let pool = shared.pool(self.connect_timeout)?;
            match lock_exclusive(&pool, &self.oid, &self.cookie, self.lease, 0) {
                0 => return Ok(Some(pool)),
                rc if rc == -libc::EBUSY || rc == -libc::EEXIST => return Ok(None),
                // Fenced connection: once more on a new one.
                rc if rc == -ESHUTDOWN => continue,
                rc => return Err(shared.error(&pool, "rados_lock_exclusive failed", rc)),
            }
        }
        Ok(None)
    }

    fn take(&self, until: Until, interrupted: &mut dyn FnMut() -> bool) -> Result<bool, LockError> {
        let shared = self.shared();
        if !wait::acquire(&shared.local, until, interrupted)? {
            return Ok(false);
        }
        match self.acquire_object(&shared, until, interrupted) {
            Ok(Some(pool)) => {
                self.start_hold(pool);
                Ok(true)
            }
            other => {
                let _ = shared.local.release();
                other.map(|_| false)
            }
        }
    }

    fn acquire_object(
        &self,
        shared: &Shared,
        until: Until,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Arc<Pool>>, LockError> {
        let mut backoff = Duration::from_millis(50);
        loop {
            let seen = shared.events.seq();
            if let Some(p) = self.try_once(shared)? {
                return Ok(Some(p));
            }
            let deadline = until.deadline;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            if let Some(p) = lock(&shared.pool).clone() {
                shared.ensure_watch(&p, &self.oid);
            }
            let retry_at = Instant::now() + backoff;
            let step = until.step;
            loop {
                if interrupted() {
                    return Err(LockError::Interrupted);
                }
                let mut end = (Instant::now() + step).min(retry_at);
                if let Some(d) = deadline {
                    end = end.min(d);
                }
                if shared.events.wait_change(seen, end) {
                    backoff = Duration::from_millis(50);
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

    fn start_hold(&self, pool: Arc<Pool>) {
        let lost = Arc::new(StdMutex::new(None));
        let renewer = if self.lease.is_zero() {
            None
        } else {
            let stop = Arc::new((StdMutex::new(false), Condvar::new()));
            let (p, l, s) = (Arc::clone(&pool), Arc::clone(&lost), Arc::clone(&stop));
            let (oid, cookie, lease, cb) =
                (self.oid.clone(), self.cookie.clone(), self.lease, self.on_lost.clone());
            std::thread::Builder::new()
                .name(String::from("ferrolock-lease"))
                .spawn(move || renew(p, oid, cookie, lease, l, s, cb))
                .ok()
                .map(|_| Renewer { stop })
        };
        *lock(&self.held) =
            Some(Hold { pool, lost, renewer, generation: crate::fork::generation() });
    }

    fn give_back(&self) -> Result<(), LockError> {
        let Some(hold) = lock(&self.held).take() else { return Err(LockError::NotHeld) };
        if hold.generation != crate::fork::generation() {
            std::mem::forget(hold);
            return Ok(());
        }
        if let Some(r) = hold.renewer {
            let (m, cv) = &*r.stop;
            *lock(m) = true;
            cv.notify_all();
        }
        let api = hold.pool.conn.api;
        // SAFETY: live ioctx and C strings.
        let rc = unsafe {
            (api.rados_unlock)(
                hold.pool.io,
                self.oid.as_ptr(),
                LOCK_NAME.as_ptr(),
                self.cookie.as_ptr(),
            )
        };
        if rc == -ESHUTDOWN {
            hold.pool.conn.mark_dead();
        }
        let shared = self.shared();
        let _ = shared.local.release();
        if rc == 0 {
            notify_release(Arc::clone(&hold.pool), self.oid.clone());
        }
        let already = lock(&hold.lost).clone();
        match (rc, already) {
            (0, None) => Ok(()),
            (0, Some(reason)) => Err(self.lost_error(&reason)),
            (rc, already) if rc == -libc::ENOENT || rc == -ESHUTDOWN => {
                Err(self.lost_error(&already.unwrap_or_else(|| {
                    String::from("the lease expired or the lock was broken before release")
                })))
            }
            (rc, _) => Err(shared.error(&hold.pool, "rados_unlock failed", rc)),
        }
    }

    /// Asks the cluster (by renewing the lease, which fails once it is gone).
    fn still_owner(&self) -> Result<bool, LockError> {
        let held = lock(&self.held);
        let Some(hold) = held.as_ref() else { return Ok(false) };
        if hold.generation != crate::fork::generation() || lock(&hold.lost).is_some() {
            return Ok(false);
        }
        match lock_exclusive(
            &hold.pool,
            &self.oid,
            &self.cookie,
            self.lease,
            ffi::LOCK_FLAG_MUST_RENEW,
        ) {
            0 => Ok(true),
            rc if rc == -libc::ENOENT || rc == -ESHUTDOWN || rc == -libc::EBUSY => Ok(false),
            rc => Err(self.shared().error(&hold.pool, "lease renewal failed", rc)),
        }
    }

    pub fn holds(&self) -> bool {
        lock(&self.held).is_some()
    }

    /// (client, cookie, address) of each holder.
    pub fn lockers(&self) -> Result<Vec<(String, String, String)>, LockError> {
        let shared = self.shared();
        let pool = shared.pool(self.connect_timeout)?;
        let api = pool.conn.api;
        let mut cap = 4096usize;
        loop {
            let (mut tag, mut clients, mut cookies, mut addrs) =
                (vec![0u8; cap], vec![0u8; cap], vec![0u8; cap], vec![0u8; cap]);
            let (mut tl, mut cl, mut kl, mut al) = (cap, cap, cap, cap);
            let mut excl: c_int = 0;
            // SAFETY: live ioctx; each buffer is writable for its stated length.
            let n = unsafe {
                (api.rados_list_lockers)(
                    pool.io,
                    self.oid.as_ptr(),
                    LOCK_NAME.as_ptr(),
                    &mut excl,
                    tag.as_mut_ptr().cast(),
                    &mut tl,
                    clients.as_mut_ptr().cast(),
                    &mut cl,
                    cookies.as_mut_ptr().cast(),
                    &mut kl,
                    addrs.as_mut_ptr().cast(),
                    &mut al,
                )
            };
            if n == -(libc::ERANGE as isize) {
                cap = tl.max(cl).max(kl).max(al).max(cap * 2);
                continue;
            }
            if n == -(libc::ENOENT as isize) {
                return Ok(Vec::new());
            }
            if n < 0 {
                return Err(shared.error(&pool, "rados_list_lockers failed", n as c_int));
            }
            let split = |b: &[u8], len: usize| -> Vec<String> {
                b[..len.min(b.len())]
                    .split(|c| *c == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            };
            let (c, k, a) = (split(&clients, cl), split(&cookies, kl), split(&addrs, al));
            return Ok((0..n as usize)
                .map(|i| {
                    (
                        c.get(i).cloned().unwrap_or_default(),
                        k.get(i).cloned().unwrap_or_default(),
                        cluster::strip_addr(&a.get(i).cloned().unwrap_or_default()),
                    )
                })
                .collect());
        }
    }

    /// Break a holder's lock (no fencing: a frozen holder learns only at its next renewal).
    pub fn break_lock(&self, client: &str, cookie: &str) -> Result<bool, LockError> {
        let shared = self.shared();
        let pool = shared.pool(self.connect_timeout)?;
        let (c, k) = (cstring("client", client)?, cstring("cookie", cookie)?);
        // SAFETY: live ioctx and C strings.
        let rc = unsafe {
            (pool.conn.api.rados_break_lock)(
                pool.io,
                self.oid.as_ptr(),
                LOCK_NAME.as_ptr(),
                c.as_ptr(),
                k.as_ptr(),
            )
        };
        match rc {
            0 => {
                notify_release(Arc::clone(&pool), self.oid.clone());
                Ok(true)
            }
            rc if rc == -libc::ENOENT => Ok(false),
            rc => Err(shared.error(&pool, "rados_break_lock failed", rc)),
        }
    }
}

impl Lock for RadosLock {
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

impl Drop for RadosLock {
    fn drop(&mut self) {
        if self.holds() {
            let _ = self.give_back();
        }
    }
}

/// Tell waiters watching the object that it is free, without making the releaser wait for
/// their acks (a dead waiter's watch lingers until it times out).
fn notify_release(pool: Arc<Pool>, oid: CString) {
    let _ = std::thread::Builder::new().name(String::from("ferrolock-notify")).spawn(move || {
        let api = pool.conn.api;
        let mut reply: *mut std::ffi::c_char = std::ptr::null_mut();
        let mut len: usize = 0;
        // SAFETY: live ioctx, C string, empty payload; the reply buffer is freed below.
        unsafe {
            (api.rados_notify2)(
                pool.io,
                oid.as_ptr(),
                std::ptr::null(),
                0,
                2000,
                &mut reply,
                &mut len,
            )
        };
        if !reply.is_null() {
            // SAFETY: allocated by librados for this call.
            unsafe { (api.rados_buffer_free)(reply) };
        }
    });
}

#[allow(clippy::too_many_arguments)]
fn renew(
    pool: Arc<Pool>,
    oid: CString,
    cookie: CString,
    lease: Duration,
    lost: Arc<StdMutex<Option<String>>>,
    stop: Arc<(StdMutex<bool>, Condvar)>,
    on_lost: Option<OnLost>,
) {
    let (m, cv) = &*stop;
    let period = (lease / 3).max(Duration::from_millis(100));
    loop {
        {
            let g = lock(m);
            if *g {
                return;
            }
            let (g, _) = match cv.wait_timeout(g, period) {
                Ok(x) => x,
                Err(e) => e.into_inner(),
            };
            if *g {
                return;
            }
        }
        let reason = match lock_exclusive(&pool, &oid, &cookie, lease, ffi::LOCK_FLAG_MUST_RENEW) {
            0 => continue,
            rc if rc == -libc::ENOENT || rc == -libc::EBUSY => {
                "the lease expired before it was renewed (another client may hold the lock now)"
            }
            rc if rc == -ESHUTDOWN => "this client was blocklisted (fenced) by the cluster",
            // A transient failure: the lease may still be ours; retry next period.
            _ => continue,
        };
        if *lock(m) {
            return;
        }
        *lock(&lost) = Some(reason.to_owned());
        if let Some(cb) = &on_lost {
            cb(reason);
        }
        return;
    }
}
