//! `RecordingError`: why a recording, one of its files, or a probe of a file failed. The
//! node's own start-up and serving errors are `NodeError` (lib.rs).
use std::error::Error as StdError;

type Source = Box<dyn StdError + Send + Sync>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordingError {
    /// GStreamer could not build or run something (a missing plugin, caps, a link, a
    /// state change). `what` says what we were doing.
    #[error("GStreamer: {what}")]
    Gst {
        what: String,
        #[source]
        source: Option<Source>,
    },
    /// A running pipeline posted an error, or did not finish in time.
    #[error("{0}")]
    Pipeline(String),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("subscribing to the meeting on {node}")]
    Subscribe {
        node: String,
        #[source]
        source: relay::RelayError,
    },
    /// The relay link to the media node failed after it was up.
    #[error("the relay link to the media node")]
    Relay(#[from] relay::RelayError),
    /// A blocking task (finishing or measuring a file) panicked or was cancelled.
    #[error("a recording task")]
    Task(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    /// A recording's request or files are not what they must be (a path, a manifest).
    #[error("{0}")]
    Invalid(String),
}

/// `.gst(...)`: a GStreamer call's failure (an error, or a `None`) as
/// [`RecordingError::Gst`], saying what we were doing.
pub(crate) trait GstContext<T> {
    fn gst(self, what: impl FnOnce() -> String) -> Result<T, RecordingError>;
}

impl<T, E: StdError + Send + Sync + 'static> GstContext<T> for Result<T, E> {
    fn gst(self, what: impl FnOnce() -> String) -> Result<T, RecordingError> {
        self.map_err(|e| RecordingError::Gst {
            what: what(),
            source: Some(Box::new(e)),
        })
    }
}

impl<T> GstContext<T> for Option<T> {
    fn gst(self, what: impl FnOnce() -> String) -> Result<T, RecordingError> {
        self.ok_or_else(|| RecordingError::Gst {
            what: what(),
            source: None,
        })
    }
}

/// An I/O failure, saying what we were doing.
pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RecordingError {
    let what = what.into();
    move |source| RecordingError::Io { what, source }
}
