//! Builds the API client from the global flags: the address, and the token or a local one.

use anyhow::{bail, Context, Result};
use registry_client::RegistryClient;
use registry_types::constants::{ADMIN_TOKEN_FILE, DATA_DIR_ENV, DEFAULT_DATA_DIR};
use std::path::{Path, PathBuf};
use url::{Host, Url};

use crate::cli::GlobalArgs;

/// A client for `--addr`, with `--token`, or for a local daemon the admin token it wrote.
pub(crate) fn client(global: &GlobalArgs) -> Result<RegistryClient> {
    let addr = parse_addr(&global.addr)?;
    let data_dir = std::env::var_os(DATA_DIR_ENV)
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let token = resolve_token(&addr, global.token.as_deref(), &data_dir);
    if token.is_some() && registry_client::sends_in_clear_off_this_machine(addr.as_str()) {
        eprintln!(
            "warning: sending the token over plain HTTP to {}; anyone on the way can read it (use https://)",
            addr.host_str().unwrap_or_default()
        );
    }
    let client = RegistryClient::new(addr.as_str(), token);
    if global.ca_cert.is_none() && global.client_cert.is_none() {
        return Ok(client);
    }
    let read =
        |path: &Path| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let ca = global.ca_cert.as_deref().map(read).transpose()?;
    let identity = match (&global.client_cert, &global.client_key) {
        (Some(cert), Some(key)) => Some([read(cert)?, b"\n".to_vec(), read(key)?].concat()),
        _ => None,
    };
    client
        .with_tls(ca.as_deref(), identity.as_deref())
        .context("loading --ca-cert / --client-cert / --client-key")
}

/// `--addr` as an http(s) URL with a host; `host:port` alone means `http://host:port`.
fn parse_addr(text: &str) -> Result<Url> {
    let full = if text.contains("://") {
        text.to_string()
    } else {
        format!("http://{text}")
    };
    let addr = Url::parse(&full).with_context(|| format!("invalid --addr {text:?}"))?;
    if !matches!(addr.scheme(), "http" | "https") || addr.host().is_none() {
        bail!("invalid --addr {text:?}: expected an http:// or https:// URL with a host");
    }
    Ok(addr)
}

/// The token to send: the given one, else for a loopback address the admin token in
/// `data_dir`, else none.
fn resolve_token(addr: &Url, given: Option<&str>, data_dir: &Path) -> Option<String> {
    if let Some(token) = given.map(str::trim).filter(|t| !t.is_empty()) {
        return Some(token.to_string());
    }
    if !is_loopback(addr) {
        return None;
    }
    let text = std::fs::read_to_string(data_dir.join(ADMIN_TOKEN_FILE)).ok()?;
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

fn is_loopback(addr: &Url) -> bool {
    match addr.host() {
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn given_token_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ADMIN_TOKEN_FILE), "file-token\n").unwrap();
        let token = resolve_token(&url("http://127.0.0.1:1"), Some("flag-token"), dir.path());
        assert_eq!(token.as_deref(), Some("flag-token"));
    }

    #[test]
    fn local_daemon_uses_the_admin_token_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ADMIN_TOKEN_FILE), "  file-token\n").unwrap();
        for addr in ["http://127.0.0.1:1", "http://localhost:1", "http://[::1]:1"] {
            let token = resolve_token(&url(addr), None, dir.path());
            assert_eq!(token.as_deref(), Some("file-token"), "{addr}");
        }
        assert_eq!(
            resolve_token(&url("http://127.0.0.1:1"), Some(" "), dir.path()).as_deref(),
            Some("file-token")
        );
    }

    #[test]
    fn remote_daemon_or_missing_file_sends_no_token() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            resolve_token(&url("http://127.0.0.1:1"), None, dir.path()),
            None
        );
        std::fs::write(dir.path().join(ADMIN_TOKEN_FILE), "file-token").unwrap();
        assert_eq!(
            resolve_token(&url("http://registry.example:1"), None, dir.path()),
            None
        );
    }

    #[test]
    fn addr_must_be_http_with_a_host() {
        assert!(parse_addr("http://127.0.0.1:58231").is_ok());
        assert!(parse_addr("https://registry.example").is_ok());
        assert_eq!(
            parse_addr("127.0.0.1:58231").unwrap().as_str(),
            "http://127.0.0.1:58231/"
        );
        assert!(parse_addr("ftp://127.0.0.1").is_err());
        assert!(parse_addr("not a url").is_err());
    }
}
