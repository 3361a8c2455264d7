//! librados and librbd, loaded at run time with `dlopen`: the package builds and imports on hosts
//! without Ceph, and only the first Ceph lock needs the libraries (the C API of `librados.h` and
//! `librbd.h`, stable across releases).

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

pub type Rados = *mut c_void;
pub type IoCtx = *mut c_void;
pub type Image = *mut c_void;

pub type WatchCb = extern "C" fn(
    arg: *mut c_void,
    notify_id: u64,
    handle: u64,
    notifier_id: u64,
    data: *mut c_void,
    data_len: usize,
);
pub type WatchErrCb = extern "C" fn(arg: *mut c_void, cookie: u64, err: c_int);

#[repr(C)]
pub struct ImageWatcher {
    pub addr: *mut c_char,
    pub id: i64,
    pub cookie: u64,
}

pub const RBD_FEATURE_LAYERING: u64 = 1;
pub const RBD_FEATURE_EXCLUSIVE_LOCK: u64 = 4;
pub const RBD_LOCK_MODE_EXCLUSIVE: c_int = 0;
pub const LOCK_FLAG_MAY_RENEW: u8 = 1;
pub const LOCK_FLAG_MUST_RENEW: u8 = 2;

/// The entry points we use, resolved once per process.
pub struct Api {
    pub rados_create2: unsafe extern "C" fn(*mut Rados, *const c_char, *const c_char, u64) -> c_int,
    pub rados_conf_read_file: unsafe extern "C" fn(Rados, *const c_char) -> c_int,
    pub rados_conf_set: unsafe extern "C" fn(Rados, *const c_char, *const c_char) -> c_int,
    pub rados_conf_get: unsafe extern "C" fn(Rados, *const c_char, *mut c_char, usize) -> c_int,
    pub rados_connect: unsafe extern "C" fn(Rados) -> c_int,
    pub rados_shutdown: unsafe extern "C" fn(Rados),
    pub rados_get_instance_id: unsafe extern "C" fn(Rados) -> u64,
    pub rados_getaddrs: unsafe extern "C" fn(Rados, *mut *mut c_char) -> c_int,
    pub rados_buffer_free: unsafe extern "C" fn(*mut c_char),
    pub rados_ioctx_create: unsafe extern "C" fn(Rados, *const c_char, *mut IoCtx) -> c_int,
    pub rados_ioctx_destroy: unsafe extern "C" fn(IoCtx),
    pub rados_ioctx_set_namespace: unsafe extern "C" fn(IoCtx, *const c_char),
    pub rados_watch2: unsafe extern "C" fn(
        IoCtx,
        *const c_char,
        *mut u64,
        WatchCb,
        WatchErrCb,
        *mut c_void,
    ) -> c_int,
    pub rados_unwatch2: unsafe extern "C" fn(IoCtx, u64) -> c_int,
    pub rados_notify2: unsafe extern "C" fn(
        IoCtx,
        *const c_char,
        *const c_char,
        c_int,
        u64,
        *mut *mut c_char,
        *mut usize,
    ) -> c_int,
    pub rados_notify_ack:
        unsafe extern "C" fn(IoCtx, *const c_char, u64, u64, *const c_char, c_int) -> c_int,
    pub rados_lock_exclusive: unsafe extern "C" fn(
        IoCtx,
        *const c_char,
        *const c_char,
        *const c_char,
        *const c_char,
        *mut libc::timeval,
        u8,
    ) -> c_int,
    pub rados_unlock:
        unsafe extern "C" fn(IoCtx, *const c_char, *const c_char, *const c_char) -> c_int,
    pub rados_break_lock: unsafe extern "C" fn(
        IoCtx,
        *const c_char,
        *const c_char,
        *const c_char,
        *const c_char,
    ) -> c_int,
    #[allow(clippy::type_complexity)]
    pub rados_list_lockers: unsafe extern "C" fn(
        IoCtx,
        *const c_char,
        *const c_char,
        *mut c_int,
        *mut c_char,
        *mut usize,
        *mut c_char,
        *mut usize,
        *mut c_char,
        *mut usize,
        *mut c_char,
        *mut usize,
    ) -> isize,
    pub rbd_create2: unsafe extern "C" fn(IoCtx, *const c_char, u64, u64, *mut c_int) -> c_int,
    pub rbd_open: unsafe extern "C" fn(IoCtx, *const c_char, *mut Image, *const c_char) -> c_int,
    pub rbd_close: unsafe extern "C" fn(Image) -> c_int,
    pub rbd_get_id: unsafe extern "C" fn(Image, *mut c_char, usize) -> c_int,
    pub rbd_get_features: unsafe extern "C" fn(Image, *mut u64) -> c_int,
    pub rbd_lock_acquire: unsafe extern "C" fn(Image, c_int) -> c_int,
    pub rbd_lock_release: unsafe extern "C" fn(Image) -> c_int,
    pub rbd_lock_break: unsafe extern "C" fn(Image, c_int, *const c_char) -> c_int,
    pub rbd_is_exclusive_lock_owner: unsafe extern "C" fn(Image, *mut c_int) -> c_int,
    pub rbd_lock_get_owners:
        unsafe extern "C" fn(Image, *mut c_int, *mut *mut c_char, *mut usize) -> c_int,
    pub rbd_lock_get_owners_cleanup: unsafe extern "C" fn(*mut *mut c_char, usize),
    pub rbd_watchers_list: unsafe extern "C" fn(Image, *mut ImageWatcher, *mut usize) -> c_int,
    pub rbd_watchers_list_cleanup: unsafe extern "C" fn(*mut ImageWatcher, usize),
}

// SAFETY: plain function pointers into libraries that stay loaded for the process's life.
unsafe impl Send for Api {}
// SAFETY: as above; the functions themselves are thread-safe per the librados/librbd docs.
unsafe impl Sync for Api {}

/// A `&'static CStr` from a literal (C-string literals need a newer Rust than our minimum).
macro_rules! cstr {
    ($s:literal) => {
        match std::ffi::CStr::from_bytes_with_nul(concat!($s, "\0").as_bytes()) {
            Ok(c) => c,
            Err(_) => panic!("NUL inside a C string literal"),
        }
    };
}
pub(crate) use cstr;

const RADOS_LIB: &CStr = cstr!("librados.so.2");
const RBD_LIB: &CStr = cstr!("librbd.so.1");

fn dlerror_text() -> String {
    // SAFETY: dlerror returns NULL or a thread-local NUL-terminated string.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        String::from("unknown error")
    } else {
        // SAFETY: non-NULL, NUL-terminated, valid until the next dl* call on this thread.
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}

fn open(lib: &CStr) -> Result<*mut c_void, String> {
    // SAFETY: a valid C string; RTLD_NOW resolves everything up front, so a broken install
    // fails here rather than at the first call.
    let h = unsafe { libc::dlopen(lib.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if h.is_null() {
        return Err(format!(
            "cannot load {} ({}): install the Ceph client libraries (Debian/Ubuntu and RHEL \
             package librbd1, which pulls in librados2)",
            lib.to_string_lossy(),
            dlerror_text()
        ));
    }
    Ok(h)
}

fn sym(h: *mut c_void, lib: &CStr, name: &CStr) -> Result<*mut c_void, String> {
    // SAFETY: `h` is a live handle from dlopen and `name` a valid C string.
    let p = unsafe { libc::dlsym(h, name.as_ptr()) };
    if p.is_null() {
        return Err(format!(
            "{} has no {}: the installed Ceph client library is too old (Luminous or newer is \
             needed)",
            lib.to_string_lossy(),
            name.to_string_lossy()
        ));
    }
    Ok(p)
}

macro_rules! load_api {
    ($rados:expr, $rbd:expr; rados: $($r:ident),* ; rbd: $($b:ident),* $(,)?) => {
        Api {
            $(
                // SAFETY: the symbol has the C signature of librados.h declared in `Api`.
                $r: unsafe { fn_ptr(sym($rados, RADOS_LIB, &cstr_of(stringify!($r)))?) },
            )*
            $(
                // SAFETY: the symbol has the C signature of librbd.h declared in `Api`.
                $b: unsafe { fn_ptr(sym($rbd, RBD_LIB, &cstr_of(stringify!($b)))?) },
            )*
        }
    };
}

/// # Safety
/// `F` must be a function pointer type matching the symbol's C signature.
unsafe fn fn_ptr<F: Copy>(p: *mut c_void) -> F {
    debug_assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
    // SAFETY: per the caller, `F` is a pointer-sized function pointer type for `p`.
    unsafe { std::mem::transmute_copy::<*mut c_void, F>(&p) }
}

fn cstr_of(s: &str) -> std::ffi::CString {
    // Symbol names are identifiers: never a NUL byte.
    std::ffi::CString::new(s).unwrap_or_default()
}

fn load() -> Result<Api, String> {
    let rados = open(RADOS_LIB)?;
    let rbd = open(RBD_LIB)?;
    Ok(load_api!(rados, rbd;
        rados: rados_create2, rados_conf_read_file, rados_conf_set, rados_conf_get, rados_connect, rados_shutdown,
            rados_get_instance_id, rados_getaddrs, rados_buffer_free, rados_ioctx_create,
            rados_ioctx_destroy, rados_ioctx_set_namespace, rados_watch2, rados_unwatch2,
            rados_notify2, rados_notify_ack, rados_lock_exclusive, rados_unlock, rados_break_lock,
            rados_list_lockers;
        rbd: rbd_create2, rbd_open, rbd_close, rbd_get_id, rbd_get_features, rbd_lock_acquire,
            rbd_lock_release, rbd_lock_break, rbd_is_exclusive_lock_owner, rbd_lock_get_owners,
            rbd_lock_get_owners_cleanup, rbd_watchers_list, rbd_watchers_list_cleanup,
    ))
}

/// The loaded API, or why it cannot be loaded (the library and the package to install).
pub fn api() -> Result<&'static Api, String> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(load).as_ref().map_err(Clone::clone)
}

/// Owned copy of a C string the library gave us (NULL: empty).
///
/// # Safety
/// `p` is NULL or a valid NUL-terminated string.
pub unsafe fn owned(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: non-NULL NUL-terminated string owned by the library for the duration of the call.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// The NUL-terminated string at the start of a buffer a library call filled.
pub fn from_buf(buf: &[u8]) -> String {
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
