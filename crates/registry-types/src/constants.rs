//! Names and defaults that the daemon, the client library, the CLI and the benchmarks must
//! agree on, so that each is written once.
//!
//! ```
//! use registry_types::constants::{DEFAULT_LISTEN, DEFAULT_URL};
//!
//! assert_eq!(DEFAULT_URL, format!("http://{DEFAULT_LISTEN}"));
//! ```

/// The response header of every list endpoint that carries the revision of the latest change
/// of the listed kind (the "index" of a blocking query). Lower case, as HTTP/1 header names
/// are case-insensitive and `http::HeaderName::from_static` accepts only lower case.
pub const INDEX_HEADER: &str = "x-registry-index";

/// The request header that asks for this registry's extensions: `true` answers with the
/// whole model (health settings, metadata, node status, `next`, a registration's id);
/// absent or `false` answers exactly with the original's schema. Lower case, as
/// [`INDEX_HEADER`].
pub const EXTENSIONS_HEADER: &str = "x-registry-extensions";

/// The file, inside the daemon's data dir, holding the bootstrap admin token; the CLI reads
/// it to talk to a daemon on this machine.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Expands to the daemon's default listen address, so that [`DEFAULT_LISTEN`] and
/// [`DEFAULT_URL`] are one literal.
macro_rules! default_listen {
    () => {
        "127.0.0.1:58231"
    };
}

/// The address the daemon listens on by default (`serve --listen`).
pub const DEFAULT_LISTEN: &str = default_listen!();

/// The URL clients talk to by default: the daemon's default address on this machine.
pub const DEFAULT_URL: &str = concat!("http://", default_listen!());

/// The daemon's data dir by default (`serve --data-dir`), relative to its working directory.
pub const DEFAULT_DATA_DIR: &str = "./registry-data";

/// The environment variable naming the daemon's data dir; the CLI reads it too, to find the
/// admin token of a local daemon.
pub const DATA_DIR_ENV: &str = "REGISTRY_DATA_DIR";

/// The environment variable holding the daemon's bootstrap admin token (read only from the
/// environment, so that it never shows in a process listing).
pub const ADMIN_TOKEN_ENV: &str = "REGISTRY_ADMIN_TOKEN";

/// The environment variable holding the daemon's URL for clients (the CLI's `--addr`).
pub const ADDR_ENV: &str = "REGISTRY_ADDR";

/// The environment variable holding a client's API token (the CLI's `--token`).
pub const TOKEN_ENV: &str = "REGISTRY_TOKEN";
