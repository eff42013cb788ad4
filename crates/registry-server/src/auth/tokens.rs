//! Token secrets: making them, hashing them, and the bootstrap admin token.

use crate::ids;
use chrono::{DateTime, Utc};
use registry_types::{Role, TokenInfo};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Name of the file, in the data dir, holding the bootstrap admin token.
pub(crate) use registry_types::constants::ADMIN_TOKEN_FILE;

/// A token as stored: its hash, never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredToken {
    pub id: String,
    /// Hex SHA-256 of the secret.
    pub hash: String,
    pub slug: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// Where a daemon wrote the secret of the registry's first admin token: only that
    /// token says, as its secret is kept nowhere else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_to: Option<SecretFile>,
}

/// A file holding a token's secret, on the machine of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SecretFile {
    /// The URL of the node that wrote it.
    pub node: String,
    /// Its path on that node's machine.
    pub path: String,
}

impl StoredToken {
    pub(crate) fn info(&self) -> TokenInfo {
        TokenInfo {
            id: self.id.clone(),
            slug: self.slug.clone(),
            role: self.role,
            created_at: self.created_at,
        }
    }
}

pub(crate) fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new token for `slug`: the secret to show once, and what to store.
pub(crate) fn new_token(slug: &str, role: Role) -> (String, StoredToken) {
    // 32 base62 characters carry about 190 bits.
    let secret = format!("rsv_{}", ids::random_base62(32));
    let stored = StoredToken {
        id: ids::token_id(),
        hash: hash_token(&secret),
        slug: slug.to_string(),
        role,
        created_at: Utc::now(),
        written_to: None,
    };
    (secret, stored)
}

/// Makes the first admin token and writes its secret to `<data_dir>/admin.token` (mode
/// 0600, fsynced) before the caller stores it, so a crash in between leaves no token that
/// nobody can read. The token records that file as written by `node`. Returns the token
/// to store and the file's path.
pub(crate) fn bootstrap_admin_token(
    data_dir: &Path,
    node: &str,
) -> std::io::Result<(StoredToken, PathBuf)> {
    let (secret, mut stored) = new_token("admin", Role::Admin);
    std::fs::create_dir_all(data_dir)?;
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    // Absolute, so that the path means something in another node's log.
    let path = std::path::absolute(&path).unwrap_or(path);
    stored.written_to = Some(SecretFile {
        node: node.to_string(),
        path: path.display().to_string(),
    });
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path)?;
    #[cfg(unix)]
    {
        // An older file may have looser permissions; `mode` applies only on creation.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    writeln!(file, "{secret}")?;
    file.sync_all()?;
    Ok((stored, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_stored_hashed() {
        let (a, stored_a) = new_token("user-svc", Role::User);
        let (b, _) = new_token("user-svc", Role::User);
        assert_ne!(a, b);
        assert!(a.len() >= 32);
        assert_eq!(stored_a.hash, hash_token(&a));
        assert!(!stored_a.hash.contains(&a));
    }

    #[cfg(unix)]
    #[test]
    fn bootstrap_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (stored, path) = bootstrap_admin_token(dir.path(), "http://127.0.0.1:1").unwrap();
        let secret = std::fs::read_to_string(&path).unwrap();
        assert_eq!(hash_token(secret.trim()), stored.hash);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(stored.role, Role::Admin);
        let written_to = stored.written_to.unwrap();
        assert_eq!(written_to.node, "http://127.0.0.1:1");
        assert_eq!(std::path::Path::new(&written_to.path), path);
    }
}
