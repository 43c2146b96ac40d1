use clap::Parser;

/// Fjord's SIP gateway: room systems and phones in meetings.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The configuration file (TOML).
    #[arg(long, env = "FJORD_SIP_CONFIG")]
    config: std::path::PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let cfg = sip_gateway::config::Config::load(&args.config)?;
    sip_gateway::server::run(cfg).await
}
