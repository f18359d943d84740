use std::path::PathBuf;

/// Every way the runtime can fail. Each message is one line and names the
/// container, path or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The container id is unusable as a directory and cgroup name.
    #[error("invalid container id {0:?}: use 1-128 characters from [A-Za-z0-9_.-], not starting with '.' or '-'")]
    InvalidId(String),
    /// A container with this id already exists in the state root.
    #[error("container {0} already exists")]
    AlreadyExists(String),
    /// No container with this id exists in the state root.
    #[error("container {0} does not exist")]
    NotFound(String),
    /// The bundle (config.json or rootfs) is missing or malformed.
    #[error("bundle {path}: {msg}")]
    Bundle {
        /// The bundle's directory or file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// The spec asks for something invalid or unsupported.
    #[error("invalid spec: {0}")]
    Spec(String),
    /// The entrypoint cannot be run.
    #[error("entrypoint {path}: {msg}")]
    Entrypoint {
        /// The entrypoint as the spec names it.
        path: String,
        /// Why it cannot run.
        msg: String,
    },
    /// A Wasm module failed to compile or load.
    #[error("wasm module {path}: {msg}")]
    Wasm {
        /// The module's file.
        path: PathBuf,
        /// The engine's complaint.
        msg: String,
    },
    /// A cgroup operation failed.
    #[error("cgroup {path}: {msg}")]
    Cgroup {
        /// The cgroup's directory.
        path: PathBuf,
        /// What failed.
        msg: String,
    },
    /// The container's init reported a failure while setting up the sandbox.
    #[error("container {id}: {msg}")]
    Init {
        /// The container.
        id: String,
        /// The init's report.
        msg: String,
    },
    /// The operation does not fit the container's current status.
    #[error("container {id} is {status}: {msg}")]
    BadStatus {
        /// The container.
        id: String,
        /// Its current status.
        status: String,
        /// What the operation needs.
        msg: String,
    },
    /// A filesystem operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path operated on.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// The call and its arguments.
        what: String,
        /// The errno.
        #[source]
        source: nix::Error,
    },
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
    pub(crate) fn sys(what: impl Into<String>, source: nix::Error) -> Self {
        Error::Sys {
            what: what.into(),
            source,
        }
    }
}

/// Attach a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
