//! `posture-agent`: enrol a server with a posture service once, then run: poll for the
//! server's work, carry it out on the server's root with the host connector, report back.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use posture_agent::{enroll, run, state};

/// posture-agent — carries out a posture service's checks, repairs and rollbacks on this server.
#[derive(Parser)]
#[command(name = "posture-agent", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// Parsed once at start: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Enrol this server with a posture service (once); writes the state directory.
    Enroll(enroll::Args),
    /// Run: poll for work, carry it out, report. Needs only the state directory.
    Run {
        /// The state directory written by `enroll`.
        #[arg(long, default_value = state::DEFAULT_STATE)]
        state: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("POSTURE_AGENT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().command {
        Command::Enroll(args) => enroll::Options::try_from(args).and_then(enroll::enroll).map(|e| {
            println!("{}", serde_json::json!({"AgentId": e.agent_id, "InstanceId": e.instance_id}));
        }),
        Command::Run { state } => run::run_until(&state, &std::sync::atomic::AtomicBool::new(false)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(run::Stop { code, message }) => {
            tracing::error!("{message}");
            ExitCode::from(code)
        }
    }
}
