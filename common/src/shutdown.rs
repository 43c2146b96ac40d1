//! Process signals turned into one cancellation token that every task watches.
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Which signal asked the process to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    Terminate,
    Interrupt,
}

/// Waits for SIGTERM or SIGINT.
pub async fn wait_for_signal() -> StopSignal {
    // Installing a handler only fails if the runtime has no signal driver, which `full` tokio has.
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => StopSignal::Terminate,
        _ = int.recv() => StopSignal::Interrupt,
    }
}

pub fn token() -> CancellationToken {
    CancellationToken::new()
}

/// Nodes: SIGTERM cancels `drain` (graceful, exit when idle), SIGINT cancels `shutdown`.
pub fn spawn_node_signals(shutdown: CancellationToken, drain: CancellationToken) {
    tokio::spawn(async move {
        loop {
            match wait_for_signal().await {
                StopSignal::Terminate => {
                    tracing::info!("SIGTERM: draining");
                    drain.cancel();
                }
                StopSignal::Interrupt => {
                    tracing::info!("SIGINT: stopping");
                    shutdown.cancel();
                    return;
                }
            }
        }
    });
}
