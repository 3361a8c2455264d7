//! The backend URL, in the grammar of tooz's MySQL driver:
//! `mysql://USER:PASSWORD@HOST[:PORT]/DBNAME[?unix_socket=...&ssl_ca=...&charset=...]`, also
//! `mysql+pymysql://` (the SQLAlchemy spelling some deployments share with their database URL).
//!
//! Errors name the part that is wrong and never contain the password: they end up in logs.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A URL that cannot be used: which part, and why. Never contains the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError {
    pub part: &'static str,
    pub reason: String,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid MySQL URL: {}: {}", self.part, self.reason)
    }
}

impl std::error::Error for UrlError {}

fn bad(part: &'static str, reason: impl Into<String>) -> UrlError {
    UrlError { part, reason: reason.into() }
}

/// Where and how to connect, and the lock session's settings.
#[derive(Clone, PartialEq)]
pub struct MySqlUrl {
    pub user: String,
    pub password: Option<String>,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub unix_socket: Option<PathBuf>,
    pub ssl_ca: Option<PathBuf>,
    pub ssl_cert: Option<PathBuf>,
    pub ssl_key: Option<PathBuf>,
    /// `ssl_check_hostname=false` accepts a certificate issued for another name.
    pub ssl_check_hostname: bool,
    /// Session idle timeout of lock connections: a holder that stops answering (frozen,
    /// partitioned) loses its session, so its lock, after about this long.
    pub wait_timeout: u32,
    pub connect_timeout: Duration,
    /// Longest wait for any answer but a granted `GET_LOCK`; a holder's keepalive that gets no
    /// answer within it treats the session as lost.
    pub read_timeout: Duration,
    /// Idle connections kept per URL.
    pub pool_size: usize,
    /// Connections open at once per URL (held locks and waiters each pin one).
    pub max_connections: usize,
    /// Galera clusters do not replicate `GET_LOCK`: refused unless this says the URL routes to
    /// one node.
    pub allow_galera: bool,
}

pub const DEFAULT_PORT: u16 = 3306;
pub const DEFAULT_WAIT_TIMEOUT: u32 = 10;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_millis(1500);
pub const DEFAULT_POOL_SIZE: usize = 8;
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// Options tooz or PyMySQL users put in their URLs that mean nothing for locks: accepted so a
/// tooz URL works unchanged. (The connection always speaks utf8mb4, so names are never mangled.)
const IGNORED_OPTIONS: &[&str] =
    &["charset", "use_unicode", "autocommit", "client_flag", "binary_prefix", "program_name"];

impl fmt::Debug for MySqlUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl MySqlUrl {
    /// Parse a backend URL.
    ///
    /// # Errors
    /// `UrlError` naming the malformed part (scheme, user, host, port, database, an option).
    pub fn parse(url: &str) -> Result<MySqlUrl, UrlError> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            bad("scheme", "expected mysql://USER:PASSWORD@HOST[:PORT]/DBNAME[?OPTIONS]")
        })?;
        if !matches!(scheme.to_ascii_lowercase().as_str(), "mysql" | "mysql+pymysql") {
            return Err(bad("scheme", format!("{scheme:?} is not mysql or mysql+pymysql")));
        }
        if rest.contains('#') {
            return Err(bad("fragment", "a '#' fragment is not allowed (percent-encode '#')"));
        }
        let (before_query, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match before_query.find('/') {
            Some(at) => (&before_query[..at], &before_query[at + 1..]),
            None => (before_query, ""),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (String::new(), None),
            Some(info) => match info.split_once(':') {
                Some((u, p)) => (decode(u, "user")?, Some(decode(p, "password")?)),
                None => (decode(info, "user")?, None),
            },
        };
        let (host, port) = split_host_port(hostport)?;
        if path.contains('/') {
            return Err(bad("database", "the path must be a single database name"));
        }
        let database = decode(path, "database")?;
        let mut parsed = MySqlUrl {
            user,
            password,
            host,
            port,
            database,
            unix_socket: None,
            ssl_ca: None,
            ssl_cert: None,
            ssl_key: None,
            ssl_check_hostname: true,
            wait_timeout: DEFAULT_WAIT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            pool_size: DEFAULT_POOL_SIZE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            allow_galera: false,
        };
        for pair in query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode_query(key, "option name")?;
            let value = decode_query(value, "option value")?;
            parsed.set_option(&key, value)?;
        }
        if parsed.host.is_empty() && parsed.unix_socket.is_none() {
            return Err(bad("host", "missing (give a host, or a unix_socket option)"));
        }
        if parsed.ssl_key.is_some() != parsed.ssl_cert.is_some() {
            return Err(bad("ssl_cert", "ssl_cert and ssl_key go together"));
        }
        Ok(parsed)
    }

    fn set_option(&mut self, key: &str, value: String) -> Result<(), UrlError> {
        match key {
            "unix_socket" => self.unix_socket = Some(non_empty(value, "unix_socket")?.into()),
            "ssl_ca" => self.ssl_ca = Some(non_empty(value, "ssl_ca")?.into()),
            "ssl_cert" => self.ssl_cert = Some(non_empty(value, "ssl_cert")?.into()),
            "ssl_key" => self.ssl_key = Some(non_empty(value, "ssl_key")?.into()),
            "ssl_check_hostname" => {
                self.ssl_check_hostname = boolean(&value, "ssl_check_hostname")?
            }
            "wait_timeout" => {
                self.wait_timeout = match value.parse::<u32>() {
                    Ok(n) if (1..=31_536_000).contains(&n) => n,
                    _ => return Err(bad("wait_timeout", "expected whole seconds, at least 1")),
                }
            }
            "connect_timeout" => self.connect_timeout = seconds(&value, "connect_timeout")?,
            "read_timeout" => self.read_timeout = seconds(&value, "read_timeout")?,
            "pool_size" => self.pool_size = count(&value, "pool_size", 0)?,
            "max_connections" => self.max_connections = count(&value, "max_connections", 1)?,
            "allow_galera" => self.allow_galera = boolean(&value, "allow_galera")?,
            k if IGNORED_OPTIONS.contains(&k) => {}
            _ => {
                return Err(UrlError {
                    part: "options",
                    reason: format!(
                        "unknown option {key:?} (known: unix_socket, ssl_ca, ssl_cert, ssl_key, \
                         ssl_check_hostname, wait_timeout, connect_timeout, read_timeout, \
                         pool_size, max_connections, allow_galera, charset)"
                    ),
                })
            }
        }
        Ok(())
    }

    /// Where the server is, for messages: `host:port` or the socket path.
    pub fn server(&self) -> String {
        match &self.unix_socket {
            Some(path) => path.display().to_string(),
            None if self.host.contains(':') => format!("[{}]:{}", self.host, self.port),
            None => format!("{}:{}", self.host, self.port),
        }
    }

    /// The URL with the password masked, for `repr` and logs.
    pub fn redacted(&self) -> String {
        let auth = match (&self.user, &self.password) {
            (u, _) if u.is_empty() && self.password.is_none() => String::new(),
            (u, Some(_)) => format!("{u}:***@"),
            (u, None) => format!("{u}@"),
        };
        let host = match &self.unix_socket {
            Some(_) => self.host.clone(),
            None => self.server(),
        };
        format!("mysql://{auth}{host}/{}", self.database)
    }
}

fn split_host_port(hostport: &str) -> Result<(String, u16), UrlError> {
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) =
            rest.split_once(']').ok_or_else(|| bad("host", "unclosed '[' in an IPv6 address"))?;
        match after {
            "" => (host, None),
            p => match p.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None => return Err(bad("host", "unexpected text after the IPv6 address")),
            },
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let port = match port {
        None | Some("") => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(bad("port", format!("{p:?} is not a port number (1-65535)"))),
        },
    };
    let host = decode(host, "host")?;
    if host.chars().any(|c| c.is_whitespace() || c == '/' || c == '@') {
        return Err(bad("host", format!("{host:?} is not a host name")));
    }
    Ok((host, port))
}

fn non_empty(value: String, part: &'static str) -> Result<String, UrlError> {
    if value.is_empty() {
        Err(bad(part, "is empty"))
    } else {
        Ok(value)
    }
}

fn boolean(value: &str, part: &'static str) -> Result<bool, UrlError> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(bad(part, format!("{value:?} is not a boolean (true/false, 1/0)"))),
    }
}

fn seconds(value: &str, part: &'static str) -> Result<Duration, UrlError> {
    match value.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 86_400.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err(bad(part, format!("{value:?} is not a positive number of seconds"))),
    }
}

fn count(value: &str, part: &'static str, min: usize) -> Result<usize, UrlError> {
    match value.parse::<usize>() {
        Ok(n) if n >= min && n <= 10_000 => Ok(n),
        _ => Err(bad(part, format!("{value:?} is not a whole number from {min} to 10000"))),
    }
}

/// Percent-decoding of a URL part; the text is only shown when the part is not the password.
fn decode(text: &str, part: &'static str) -> Result<String, UrlError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(b) => out.push(b),
                None => return Err(bad(part, "bad percent-escape (expected %XX)")),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad(part, "percent-escapes do not decode to UTF-8"))
}

/// Query strings also spell a space as '+', as Python's `parse_qs` (tooz) reads them.
fn decode_query(text: &str, part: &'static str) -> Result<String, UrlError> {
    decode(&text.replace('+', " "), part)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_url() {
        let u = MySqlUrl::parse(
            "mysql+pymysql://cinder:s%40cr%3Aet@db.example:3307/cinder?charset=utf8&wait_timeout=4",
        )
        .expect("valid");
        assert_eq!(u.user, "cinder");
        assert_eq!(u.password.as_deref(), Some("s@cr:et"));
        assert_eq!((u.host.as_str(), u.port), ("db.example", 3307));
        assert_eq!(u.database, "cinder");
        assert_eq!(u.wait_timeout, 4);
        assert_eq!(u.redacted(), "mysql://cinder:***@db.example:3307/cinder");
        assert!(!format!("{u:?}").contains("s@cr"));
    }

    #[test]
    fn defaults_and_ipv6_and_socket() {
        let u = MySqlUrl::parse("mysql://root@[::1]/db").expect("valid");
        assert_eq!((u.host.as_str(), u.port, u.password.is_none()), ("::1", 3306, true));
        assert_eq!(u.server(), "[::1]:3306");
        let u = MySqlUrl::parse("mysql://u:p@/db?unix_socket=/run/my%20sql.sock").expect("valid");
        assert_eq!(u.unix_socket.as_deref(), Some(std::path::Path::new("/run/my sql.sock")));
        // A password that is itself a valid-looking host:port or has '@' in it.
        let u = MySqlUrl::parse("mysql://u:a@b:1@h/db").expect("valid");
        assert_eq!((u.password.as_deref(), u.host.as_str()), (Some("a@b:1"), "h"));
    }

    #[test]
    fn errors_name_the_part_and_hide_the_password() {
        let cases = [
            ("postgres://u:hunter2@h/db", "scheme"),
            ("mysql:/u:hunter2@h/db", "scheme"),
            ("mysql://u:hunter2@h:99999/db", "port"),
            ("mysql://u:hunter2@h:abc/db", "port"),
            ("mysql://u:hunter2@/db", "host"),
            ("mysql://u:hunter2@h/db/x", "database"),
            ("mysql://u:hunter2@h/db?wait_timeout=0", "wait_timeout"),
            ("mysql://u:hunter2@h/db?nosuch=1", "options"),
            ("mysql://u:hunter2@h/db?allow_galera=maybe", "allow_galera"),
            ("mysql://u:hunter2%zz@h/db", "password"),
            ("mysql://u:hunter2@h/db#frag", "fragment"),
        ];
        for (url, part) in cases {
            let err = MySqlUrl::parse(url).expect_err(url);
            assert_eq!(err.part, part, "{url}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }
}
