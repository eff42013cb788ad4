//! The one error type of the daemon. Every layer returns it; `api::errors` turns it into a
//! status code and a `{"error": ...}` body, so no handler maps errors itself.

use registry_store::StoreError;
use registry_types::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed request or invalid field; the message names the problem.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what the registry holds (a restore into a registry
    /// that is not empty; revoking the last admin token).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A caller went over its rate limit; it may try again after this many seconds.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    /// The store failed; nothing was changed. The answer says so in general words; the
    /// store's own error, with its causes, goes to the daemon's log.
    #[error("the store is unavailable; see the daemon log")]
    Store(#[from] StoreError),
    /// The daemon cannot serve the request now (it is shutting down, or a background
    /// task is restarting).
    #[error("{0}")]
    Unavailable(String),
    /// A restore stopped part way, leaving part of the backup in the registry.
    #[error(
        "restore stopped after {restored} of {total} objects ({source}); the registry holds \
         part of the backup: empty its store and restore again"
    )]
    RestoreStopped {
        restored: usize,
        total: usize,
        source: Box<Error>,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<FieldError> for Error {
    fn from(e: FieldError) -> Self {
        Error::BadRequest(e.to_string())
    }
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;
