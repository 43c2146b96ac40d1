//! `fjord-controller`: loads and validates config, binds, runs until SIGTERM/SIGINT.
use std::path::PathBuf;

use clap::Parser;

/// Fjord controller: meetings API, join tokens and placement of meetings onto media nodes.
///
/// Configuration: defaults < --config file (TOML) < environment variables
/// FJORD_CONTROLLER__<KEY>[__<SUBKEY>] (for example FJORD_CONTROLLER__ETCD__ENDPOINTS='["http://10.0.0.5:2379"]').
#[derive(Parser)]
#[command(name = "fjord-controller", version)]
struct Args {
    /// TOML config file.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Load and check the config (file and environment), say whether it is valid, and
    /// exit without starting.
    #[arg(long)]
    check_config: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let cfg: controller::config::ControllerConfig =
        match common::config::load(args.config.as_deref(), "FJORD_CONTROLLER__") {
            Ok(c) => c,
            Err(e) => {
                eprintln!("fjord-controller: {e}");
                return std::process::ExitCode::from(2);
            }
        };
    if let Err(e) = cfg.validate() {
        eprintln!("fjord-controller: {e}");
        return std::process::ExitCode::from(2);
    }
    if args.check_config {
        println!("fjord-controller: the config is valid");
        return std::process::ExitCode::SUCCESS;
    }
    common::init_tracing(&cfg.log);
    let listener = match tokio::net::TcpListener::bind(&cfg.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "fjord-controller: cannot listen on {} (key `listen`): {e}",
                cfg.listen
            );
            return std::process::ExitCode::from(1);
        }
    };
    let shutdown = common::shutdown::token();
    let sd = shutdown.clone();
    tokio::spawn(async move {
        let sig = common::shutdown::wait_for_signal().await;
        tracing::info!(?sig, "stopping");
        sd.cancel();
    });
    match controller::run(cfg, listener, shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fjord-controller: {}", common::node::error_chain(&e));
            std::process::ExitCode::from(1)
        }
    }
}
