use std::path::PathBuf;

/// Every way an image operation can fail; each message is one line naming
/// the path, digest or reference at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path operated on.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Content did not hash to the digest it claimed.
    #[error("digest mismatch: expected {expected}, content hashes to {actual}")]
    DigestMismatch {
        /// The digest claimed.
        expected: String,
        /// The digest of the content.
        actual: String,
    },
    /// A digest string is not `sha256:` + 64 lowercase hex digits.
    #[error("invalid digest {0:?}")]
    InvalidDigest(String),
    /// A reference is malformed.
    #[error("invalid reference {0:?}: {1}")]
    InvalidRef(String, String),
    /// No image has this reference.
    #[error("no image {0} in the store")]
    UnknownRef(String),
    /// A blob is missing from the store.
    #[error("blob {0} is not in the store")]
    MissingBlob(String),
    /// Input that is not what it claims to be.
    #[error("{0}")]
    Invalid(String),
    /// A registry could not be reached or answered with an error (worth
    /// trying again later: what was transferred is kept for a resume).
    #[error("{0}")]
    Registry(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
