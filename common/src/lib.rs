//! Shared building blocks of the Fjord binaries. Nothing here owns a socket or a task
//! except [`registration`] (the node's lease) and [`ops`] (the ops HTTP router it hands out).
#![forbid(unsafe_code)]

pub mod cloud_recording;
pub mod config;
pub mod download;
pub mod etcd;
pub mod ids;
pub mod keyspace;
pub mod node;
pub mod ops;
pub mod rate;
pub mod registration;
pub mod shutdown;
pub mod tls;
pub mod token;
pub mod tone;
pub mod vp8;

/// Wall-clock milliseconds since the Unix epoch, as stored in etcd records.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Installs the tracing subscriber every binary uses (`RUST_LOG` overrides `info`), as
/// `log` says: text for people (coloured only on a terminal, never in a file), or one
/// JSON object a line with the fields of the spans it happened in (`meeting_id`,
/// `participant_id`, …) for a log pipeline.
pub fn init_tracing(log: &config::LogConfig) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = match log.format {
        config::LogFormat::Text => fmt.with_ansi(std::io::stdout().is_terminal()).try_init(),
        config::LogFormat::Json => fmt
            .json()
            .with_ansi(false)
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
}
