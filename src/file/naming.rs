//! oslo.concurrency's lock-file naming, with the checks oslo leaves to the OS: a lock file is
//! `lock_path/[prefix[-]]name` with every `/` of the name turned into `_`, so no name escapes
//! `lock_path`.

use std::path::{Path, PathBuf};

use crate::LockError;

/// Longest file name Linux filesystems accept (NAME_MAX).
pub const NAME_MAX: usize = 255;

fn invalid(name: &str, reason: String) -> LockError {
    LockError::InvalidName { name: name.to_owned(), reason }
}

/// The file name oslo gives lock `name` with `prefix`.
///
/// # Errors
/// `InvalidName` for an empty file name (an empty name without a prefix would be `lock_path`
/// itself), a NUL byte, `.`/`..`, or a result over 255 bytes. An empty name with a prefix is
/// oslo's file `prefix-`.
pub fn lock_file_name(name: &str, prefix: Option<&str>) -> Result<String, LockError> {
    if name.is_empty() && !prefix.is_some_and(|p| !p.is_empty()) {
        return Err(invalid(name, "the name is empty".into()));
    }
    if name.contains('\0') || prefix.is_some_and(|p| p.contains('\0')) {
        return Err(invalid(name, "lock names and prefixes cannot contain NUL bytes".into()));
    }
    let name_part = name.replace('/', "_");
    let file_name = match prefix {
        Some(p) if !p.is_empty() => {
            let sep = if p.ends_with('-') { "" } else { "-" };
            format!("{p}{sep}{name_part}")
        }
        _ => name_part,
    };
    if file_name == "." || file_name == ".." {
        return Err(invalid(name, "'.' and '..' name directories, not lock files".into()));
    }
    if file_name.len() > NAME_MAX {
        return Err(invalid(
            name,
            format!(
                "its lock file name is {} bytes, over the {NAME_MAX}-byte limit of file names",
                file_name.len()
            ),
        ));
    }
    Ok(file_name)
}

/// `lock_path` joined with the file name of `name`.
///
/// # Errors
/// As `lock_file_name`; `LockPath` for an empty `lock_path` or one with a NUL byte.
pub fn lock_file_path(
    lock_path: &Path,
    name: &str,
    prefix: Option<&str>,
) -> Result<PathBuf, LockError> {
    let file_name = lock_file_name(name, prefix)?;
    let bad_dir =
        lock_path.as_os_str().is_empty() || lock_path.as_os_str().as_encoded_bytes().contains(&0);
    if bad_dir {
        return Err(LockError::LockPath {
            path: lock_path.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "lock_path must be a non-empty path without NUL bytes",
            ),
        });
    }
    Ok(lock_path.join(file_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_oslo_naming() {
        let name = |n, p| lock_file_name(n, p).unwrap_or_default();
        assert_eq!(name("x", Some("nova")), "nova-x");
        assert_eq!(name("x", Some("nova-")), "nova-x");
        assert_eq!(name("x", None), "x");
        assert_eq!(name("x", Some("")), "x");
        assert_eq!(name("../../etc/passwd", None), ".._.._etc_passwd");
    }

    #[test]
    fn refuses_what_cannot_be_a_file_name() {
        for bad in ["", "a\0b", "..", "."] {
            assert!(matches!(lock_file_name(bad, None), Err(LockError::InvalidName { .. })));
        }
        assert!(lock_file_name(&"a".repeat(255), None).is_ok());
        assert!(lock_file_name(&"a".repeat(251), Some("nova")).is_err());
        assert!(lock_file_path(Path::new(""), "x", None).is_err());
        assert_eq!(
            lock_file_path(Path::new("/l"), "a/b", Some("p")).ok(),
            Some(PathBuf::from("/l/p-a_b"))
        );
    }
}
