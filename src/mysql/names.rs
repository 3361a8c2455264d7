//! Lock names as the server sees them.
//!
//! MySQL rejects `GET_LOCK` names over 64 characters (MariaDB allows 192), and cinder's
//! `cinder-<uuid>-<function>` names often pass 64. A longer name maps to its first
//! `PREFIX_CHARS` characters, a `#`, and the start of the SHA-256 of the whole name: the same
//! name gives the same server name on every host and on both servers, and the prefix keeps it
//! readable in the processlist. Names are sent as query parameters, so quotes, backslashes and
//! non-ASCII are just characters.

use std::borrow::Cow;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

/// The longest name MySQL accepts, in characters.
pub const MAX_CHARS: usize = 64;
/// Hex digits of the hash kept: 23 (92 bits) leaves 40 characters of prefix.
const HASH_HEX: usize = 23;
const PREFIX_CHARS: usize = MAX_CHARS - HASH_HEX - 1;

/// The name to pass to `GET_LOCK` for `name`.
pub fn server_name(name: &str) -> Cow<'_, str> {
    if name.chars().count() <= MAX_CHARS {
        return Cow::Borrowed(name);
    }
    let digest = Sha256::digest(name.as_bytes());
    let mut mapped: String = name.chars().take(PREFIX_CHARS).collect();
    mapped.push('#');
    let mut hex = String::with_capacity(64);
    for byte in digest.iter() {
        let _ = write!(hex, "{byte:02x}");
    }
    mapped.push_str(&hex[..HASH_HEX]);
    Cow::Owned(mapped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_kept() {
        for name in ["a", "cinder-x", "it's \\ \"quoted\"", "verrou-éàü-日本", &"x".repeat(64)]
        {
            assert_eq!(server_name(name), name);
        }
    }

    #[test]
    fn long_names_map_to_64_chars_deterministically() {
        let long = format!(
            "cinder-{}-delete_volume_with_snapshots",
            "0f0e0d0c-0b0a-0908-0706-050403020100"
        );
        let mapped = server_name(&long);
        assert_eq!(mapped.chars().count(), 64);
        assert!(mapped.starts_with(&long[..PREFIX_CHARS]));
        assert_eq!(mapped, server_name(&long));
        // Same prefix, different tail: different server names.
        let other = long.replace("delete", "extend");
        assert_ne!(server_name(&other), mapped);
        // Non-ASCII long names count characters, not bytes.
        let wide = "日".repeat(100);
        assert_eq!(server_name(&wide).chars().count(), 64);
    }
}
