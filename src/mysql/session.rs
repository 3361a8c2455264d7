//! One server session: connecting with bounded timeouts, the lock session's settings, the
//! Galera check, and the queries the lock needs.
//!
//! A session belongs to the process that opened it. Dropping a `mysql::Conn` sends `COM_QUIT`,
//! which in a forked child would end the parent's session and free the parent's locks, so a
//! session opened before a fork is leaked, never dropped, in the child.

use std::mem::ManuallyDrop;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use mysql::{ClientIdentity, Conn, OptsBuilder, SslOpts};

use super::url::MySqlUrl;
use crate::fork;
use crate::LockError;

/// How a query failed: the server answered with an error (the session is fine), or the
/// connection broke (the session, and every lock it held, is gone or unusable).
#[derive(Debug)]
pub enum Failure {
    Server(String),
    Connection(String),
}

impl Failure {
    fn of(err: mysql::Error) -> Failure {
        match err {
            mysql::Error::MySqlError(e) => {
                Failure::Server(format!("{} (error {})", e.message, e.code))
            }
            other => Failure::Connection(describe(&other)),
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Failure::Server(m) | Failure::Connection(m) => m,
        }
    }

    pub fn into_error(self, url: &MySqlUrl) -> LockError {
        backend_error(url, self.message().to_owned())
    }
}

pub fn backend_error(url: &MySqlUrl, message: String) -> LockError {
    LockError::Backend { backend: "mysql", server: url.server(), message }
}

/// The driver's text for an error, made clearer for the failures operators meet.
fn describe(err: &mysql::Error) -> String {
    match err {
        mysql::Error::IoError(io) => match io.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                "no answer from the server in time (read timeout)".to_owned()
            }
            _ => io.to_string(),
        },
        // The inner errors' own text, without the driver's "DriverError { .. }" wrapping.
        mysql::Error::DriverError(e) => e.to_string(),
        mysql::Error::MySqlError(e) => e.to_string(),
        mysql::Error::TlsError(e) => format!("TLS: {e}"),
        mysql::Error::CodecError(e) => e.to_string(),
        other => other.to_string(),
    }
}

pub struct Session {
    conn: ManuallyDrop<Conn>,
    generation: u64,
    pub id: u32,
    /// When the server last heard from us: the session ends `wait_timeout` after it.
    pub last_used: Instant,
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.generation == fork::generation() {
            // SAFETY: dropped once, here; `conn` is not used after.
            unsafe { ManuallyDrop::drop(&mut self.conn) };
        }
        // Otherwise the parent's session: leaked (its socket stays open, nothing is sent).
    }
}

impl Session {
    /// Open a lock session to `url`.
    ///
    /// # Errors
    /// `LockError::Backend` when the server cannot be reached, refuses us, or is a Galera node
    /// and the URL does not allow it.
    pub fn open(url: &MySqlUrl) -> Result<Session, LockError> {
        let mut opts = OptsBuilder::new()
            .user(Some(&url.user))
            .pass(url.password.clone())
            .db_name((!url.database.is_empty()).then(|| url.database.clone()))
            // Do not hop to a unix socket found on the server: the URL says where to connect.
            .prefer_socket(false)
            .tcp_connect_timeout(Some(url.connect_timeout))
            .read_timeout(Some(url.read_timeout))
            .write_timeout(Some(url.read_timeout))
            // A cut network shows as unacknowledged writes: give up on them as on a silent read.
            .tcp_user_timeout_ms(u32::try_from(url.read_timeout.as_millis()).ok())
            .tcp_nodelay(true)
            .stmt_cache_size(8);
        opts = match &url.unix_socket {
            Some(path) => opts.socket(Some(path.to_string_lossy())),
            None => opts.ip_or_hostname(Some(&url.host)).tcp_port(url.port),
        };
        if url.ssl_ca.is_some() || url.ssl_cert.is_some() {
            let identity = match (&url.ssl_cert, &url.ssl_key) {
                (Some(cert), Some(key)) => Some(ClientIdentity::new(cert.clone(), key.clone())),
                _ => None,
            };
            let ssl = SslOpts::default()
                .with_root_cert_path(url.ssl_ca.clone())
                .with_client_identity(identity)
                .with_danger_skip_domain_validation(!url.ssl_check_hostname);
            opts = opts.ssl_opts(Some(ssl));
        }
        let generation = fork::generation();
        let conn = Conn::new(opts).map_err(|e| backend_error(url, connect_message(url, &e)))?;
        let mut session = Session {
            id: conn.connection_id(),
            conn: ManuallyDrop::new(conn),
            generation,
            last_used: Instant::now(),
        };
        session.setup(url)?;
        Ok(session)
    }

    fn setup(&mut self, url: &MySqlUrl) -> Result<(), LockError> {
        // wait_timeout is ours (a parsed integer), not user text.
        let set = format!("SET SESSION wait_timeout = {}", url.wait_timeout);
        self.conn.query_drop(set).map_err(|e| Failure::of(e).into_error(url))?;
        let wsrep: Option<(String, String)> = self
            .conn
            .query_first("SHOW VARIABLES LIKE 'wsrep_on'")
            .map_err(|e| Failure::of(e).into_error(url))?;
        let galera = wsrep.is_some_and(|(_, v)| v.eq_ignore_ascii_case("ON"));
        if galera && !url.allow_galera {
            return Err(backend_error(
                url,
                "is a Galera cluster node (wsrep_on=ON). Galera does not replicate GET_LOCK: \
                 clients on two nodes would both get the same lock. Point the URL at one node \
                 that every lock user reaches (e.g. through an HAProxy backend with one active \
                 server), then add allow_galera=true to the URL to say so."
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// Whether this session can still be used in this process.
    pub fn is_ours(&self) -> bool {
        self.generation == fork::generation()
    }

    fn query_int(
        &mut self,
        sql: &str,
        params: impl Into<mysql::Params>,
    ) -> Result<Option<i64>, Failure> {
        let row: Option<Option<i64>> = self.conn.exec_first(sql, params).map_err(Failure::of)?;
        self.last_used = Instant::now();
        Ok(row.flatten())
    }

    /// `GET_LOCK(name, wait)`: `Some(true)` granted, `Some(false)` timed out, `None` an error
    /// the server reports as NULL.
    pub fn get_lock(&mut self, name: &str, wait: Duration) -> Result<Option<bool>, Failure> {
        let got = self.query_int("SELECT GET_LOCK(?, ?)", (name, wait.as_secs_f64()))?;
        Ok(got.map(|v| v == 1))
    }

    /// `RELEASE_LOCK(name)`: `Some(true)` released, `Some(false)` held by another session,
    /// `None` nobody held it.
    pub fn release_lock(&mut self, name: &str) -> Result<Option<bool>, Failure> {
        Ok(self.query_int("SELECT RELEASE_LOCK(?)", (name,))?.map(|v| v == 1))
    }

    /// Whether this session holds `name`; also resets the server's idle clock.
    pub fn owns(&mut self, name: &str) -> Result<bool, Failure> {
        Ok(self.query_int("SELECT IS_USED_LOCK(?) = CONNECTION_ID()", (name,))? == Some(1))
    }

    /// The session holding `name`, with its user and host when the processlist shows it.
    pub fn holder(&mut self, name: &str) -> Result<Option<Holder>, Failure> {
        let Some(id) = self.query_int("SELECT IS_USED_LOCK(?)", (name,))? else {
            return Ok(None);
        };
        let row: Option<(Option<String>, Option<String>)> = self
            .conn
            .exec_first("SELECT USER, HOST FROM information_schema.PROCESSLIST WHERE ID = ?", (id,))
            .map_err(Failure::of)?;
        let (user, host) = row.unwrap_or((None, None));
        Ok(Some(Holder { connection_id: u64::try_from(id).unwrap_or(0), user, host }))
    }
}

/// Who holds a lock on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub connection_id: u64,
    /// `None` when the processlist does not show that session to us (no PROCESS privilege).
    pub user: Option<String>,
    pub host: Option<String>,
}

fn connect_message(url: &MySqlUrl, err: &mysql::Error) -> String {
    let text = describe(err);
    let text = match &url.password {
        // The driver never puts the password in a message; make sure of it anyway.
        Some(p) if !p.is_empty() => text.replace(p.as_str(), "***"),
        _ => text,
    };
    format!("cannot connect as {:?}: {text}", url.user)
}
