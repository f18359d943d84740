//! The engine's errors: what went wrong, naming the container, path or
//! option at fault.

use std::fmt::Display;
use std::path::PathBuf;

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No container has this id, name or id prefix.
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    /// An id prefix that more than one container's id starts with.
    #[error("{0:?} matches more than one container: give more of the id, or the name")]
    Ambiguous(String),
    /// `--name` of a container that exists already.
    #[error("the name {0:?} is already in use by container {1}")]
    NameInUse(String, String),
    /// The operation needs a stopped container.
    #[error("container {0} is running: stop it first, or force it")]
    Running(String),
    /// The operation needs a running container.
    #[error("container {0} is not running")]
    NotRunning(String),
    /// A bad option, spec or image: the message names the fault.
    #[error("{0}")]
    Invalid(String),
    /// From the runtime.
    #[error(transparent)]
    Runtime(#[from] amphi_runtime::Error),
    /// From the image store.
    #[error(transparent)]
    Images(#[from] amphi_images::Error),
    /// A file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A failure with what we were doing when it happened.
    #[error("{context}")]
    Context {
        /// What we were doing.
        context: String,
        /// The cause (shown by `{:#}` of anyhow and by error reporters).
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// An I/O error at `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds what we were doing to an error (or turns a `None` into one).
pub trait Context<T> {
    /// Wraps the error with `context`.
    fn context(self, context: impl Display) -> Result<T>;
    /// Wraps the error with the context `f` makes (only on error).
    fn with_context<C: Display>(self, f: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Display) -> Result<T> {
        self.map_err(|e| Error::Context {
            context: context.to_string(),
            source: Box::new(e),
        })
    }
    fn with_context<C: Display>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| Error::Context {
            context: f().to_string(),
            source: Box::new(e),
        })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, context: impl Display) -> Result<T> {
        self.ok_or_else(|| Error::Invalid(context.to_string()))
    }
    fn with_context<C: Display>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.ok_or_else(|| Error::Invalid(f().to_string()))
    }
}

/// Returns an [`Error::Invalid`] with a formatted message.
#[macro_export]
#[doc(hidden)]
macro_rules! bail {
    ($($t:tt)*) => {
        return Err($crate::Error::Invalid(format!($($t)*)))
    };
}
