//! etcd (when on PATH) as the yardstick: a single member on 127.0.0.1 in a throwaway
//! data dir, loaded with the registry's own instances and driven through its v3 JSON
//! gateway (`POST /v3/kv/put`, `POST /v3/kv/range`). Killed, and its dir removed, however
//! the run ends.

use crate::daemon::TempDir;
use crate::http::LOAD_CONCURRENCY;
use anyhow::{bail, Context, Result};
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// How long etcd may take to answer `/health`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the registry's instances live in etcd: `<PREFIX><slug>/<id>`.
pub(crate) const PREFIX: &str = "/registry/instances/";

/// `etcd` on PATH, if there is one.
pub(crate) fn on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
}

/// A running single-member etcd. Dropping it kills etcd and removes its data dir.
pub(crate) struct Etcd {
    child: Child,
    /// `http://127.0.0.1:PORT`: the client URL, also the JSON gateway.
    pub url: String,
    dir: TempDir,
}

/// A port free on 127.0.0.1 a moment ago (the listener is closed before etcd binds it).
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

impl Etcd {
    /// Starts `binary` on free 127.0.0.1 ports and waits until `/health` says true.
    pub(crate) async fn start(binary: &Path, http: &reqwest::Client) -> Result<Etcd> {
        let dir = TempDir::new()?;
        let (client_port, peer_port) = (free_port()?, free_port()?);
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = fs::File::create(dir.path().join("etcd.log")).context("creating etcd.log")?;
        let mut command = Command::new(binary);
        // Only the flags below configure it.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ETCD") {
                command.env_remove(name);
            }
        }
        let child = command
            .args(["--name", "default", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("default={peer_url}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut etcd = Etcd {
            child,
            url: client_url,
            dir,
        };
        let started = Instant::now();
        loop {
            etcd.check_alive()?;
            let health = http.get(format!("{}/health", etcd.url)).send().await;
            if let Ok(response) = health {
                if response.status().is_success()
                    && response.text().await.unwrap_or_default().contains("true")
                {
                    return Ok(etcd);
                }
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                bail!(
                    "etcd not healthy within {}s{}",
                    STARTUP_TIMEOUT.as_secs(),
                    etcd.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Err` with etcd's last log lines when it is no longer running.
    pub(crate) fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!("etcd exited ({status}){}", self.log_tail()),
            Err(e) => Err(e).context("checking on etcd"),
        }
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(5)..].join("\n  ");
        format!("; its log ends:\n  {tail}")
    }

    /// Puts every `(key, value)`, [`LOAD_CONCURRENCY`] at a time.
    pub(crate) async fn load(
        &self,
        http: &reqwest::Client,
        items: Vec<(String, Vec<u8>)>,
    ) -> Result<()> {
        let items = Arc::new(items);
        let next = Arc::new(AtomicUsize::new(0));
        let mut workers = JoinSet::new();
        let put_url = format!("{}/v3/kv/put", self.url);
        for _ in 0..LOAD_CONCURRENCY {
            let (http, items, next, put_url) =
                (http.clone(), items.clone(), next.clone(), put_url.clone());
            workers.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((key, value)) = items.get(i) else {
                        return Ok::<(), anyhow::Error>(());
                    };
                    let body = format!(
                        r#"{{"key":"{}","value":"{}"}}"#,
                        base64(key.as_bytes()),
                        base64(value)
                    );
                    let response = http
                        .post(&put_url)
                        .body(body)
                        .send()
                        .await
                        .with_context(|| format!("etcd put {key}"))?;
                    if !response.status().is_success() {
                        bail!(
                            "etcd put {key}: {} {}",
                            response.status(),
                            response.text().await.unwrap_or_default()
                        );
                    }
                }
            });
        }
        while let Some(done) = workers.join_next().await {
            done.context("an etcd load task failed")??;
        }
        Ok(())
    }

    /// `etcd 3.4.23` as its `/version` says, or just `etcd`.
    pub(crate) async fn version(&self, http: &reqwest::Client) -> String {
        let text = match http.get(format!("{}/version", self.url)).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        // {"etcdserver":"3.4.23","etcdcluster":"3.4.0"}
        let marker = "\"etcdserver\":\"";
        match text.find(marker) {
            Some(at) => {
                let rest = &text[at + marker.len()..];
                format!("etcd {}", &rest[..rest.find('"').unwrap_or(0)])
            }
            None => "etcd".to_string(),
        }
    }

    /// How many keys lie under `prefix`.
    pub(crate) async fn count(&self, http: &reqwest::Client, prefix: &str) -> Result<u64> {
        let (key, range_end) = prefix_range(prefix);
        let text = http
            .post(format!("{}/v3/kv/range", self.url))
            .body(format!(
                r#"{{"key":"{key}","range_end":"{range_end}","count_only":true}}"#
            ))
            .send()
            .await?
            .text()
            .await?;
        // The gateway writes int64 as a string and leaves out zero values: {"count":"100"}.
        let Some(at) = text.find("\"count\":") else {
            return Ok(0);
        };
        let digits: String = text[at + 8..]
            .chars()
            .skip_while(|c| *c == '"')
            .take_while(char::is_ascii_digit)
            .collect();
        digits
            .parse()
            .with_context(|| format!("unexpected range answer {text}"))
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // `dir` is removed when the field drops, after this.
    }
}

/// The base64 (standard alphabet, padded) of `key` and of the key just past every key
/// that starts with `prefix`: the `key`/`range_end` pair of a prefix range.
pub(crate) fn prefix_range(prefix: &str) -> (String, String) {
    let mut end = prefix.as_bytes().to_vec();
    // The prefixes here end in '/', never in 0xff.
    *end.last_mut().expect("a non-empty prefix") += 1;
    (base64(prefix.as_bytes()), base64(&end))
}

/// Standard base64 with padding, as etcd's gateway expects for bytes fields.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (chunk[0] as u32) << 16
            | (chunk.get(1).copied().unwrap_or(0) as u32) << 8
            | chunk.get(2).copied().unwrap_or(0) as u32;
        out.push(ALPHABET[(n >> 18) as usize & 63] as char);
        out.push(ALPHABET[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            ALPHABET[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            ALPHABET[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// wrk script: a prefix range read, `POST /v3/kv/range`; `{{KEY}}` and `{{END}}` are
/// replaced with the base64 key and range end.
pub(crate) const RANGE_SCRIPT: &str = r#"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"key":"{{KEY}}","range_end":"{{END}}"}'
"#;

/// wrk script: a put of a new key per request, `POST /v3/kv/put`, each thread and request
/// its own key under `/registry/instances/wrk-N/`; `{{VALUE}}` is replaced with the
/// base64 of an instance's JSON, so every value is a real instance's size.
pub(crate) const PUT_SCRIPT: &str = r#"
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function sextet(v) return alphabet:sub(v + 1, v + 1) end
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    out[#out + 1] = sextet(math.floor(n / 262144) % 64) .. sextet(math.floor(n / 4096) % 64)
      .. (b and sextet(math.floor(n / 64) % 64) or "=") .. (c and sextet(n % 64) or "=")
  end
  return table.concat(out)
end
local threads = 0
function setup(thread) thread:set("id", threads); threads = threads + 1 end
local n = 0
function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end
function request()
  n = n + 1
  local key = string.format("/registry/instances/wrk-%d/t%d-%d", n % 1000, id, n)
  local body = '{"key":"' .. base64(key) .. '","value":"{{VALUE}}"}'
  return wrk.format(nil, "/v3/kv/put", nil, body)
end
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_examples() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn a_prefix_range_ends_just_past_the_prefix() {
        let (key, end) = prefix_range("/a/");
        assert_eq!(key, base64(b"/a/"));
        assert_eq!(end, base64(b"/a0"));
    }
}
