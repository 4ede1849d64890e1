//! The `posture` command line.
#![forbid(unsafe_code)]

mod admin;
mod agents_cmd;
mod assess;
mod audit_cmd;
mod bench;
mod call;
mod config;
mod demo;
mod files;
mod serve;
mod store_cmd;
mod tls_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: the service makes many small, short-lived allocations per request (parameters,
/// JSON, rows), where it costs measurably less CPU than the system allocator (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// posture — security posture service: assess configuration, repair with a verified rollback.
#[derive(Parser)]
#[command(name = "posture", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (Sas 2018-12-03 compatible API on HTTP, or HTTPS with --tls-cert).
    Serve(serve::Args),
    /// Call one API action, signed like the official SDK, and print the JSON answer.
    ///
    /// Parameters are given as `--Name value` (or `--Name=value`), nested ones flattened:
    /// `--OperationTaskInstances.1.InstanceId i-abc`. Example:
    /// `posture call ListCheckResult --Statuses.1 NOT_PASS --Lang en`
    #[command(disable_help_flag = true)]
    Call {
        /// The action, e.g. ListCheckResult.
        action: String,
        /// `--Name value` parameters, plus `--endpoint [https://]HOST:PORT`, `--ca FILE` (the CA
        /// to trust over HTTPS; default: credentials.json's CaFile, else the system's roots),
        /// `--credentials FILE` (default ./posture-data/credentials.json) and
        /// `--signature v3|v1` (default v3).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        params: Vec<String>,
    },
    /// Accounts and their repair authorization (works beside a running serve).
    #[command(subcommand)]
    Accounts(admin::Accounts),
    /// AccessKeys: create, list, disable, enable, delete (works beside a running serve).
    #[command(subcommand)]
    Keys(admin::Keys),
    /// Register servers to assess (works beside a running serve).
    #[command(subcommand)]
    Instances(admin::Instances),
    /// Agents: enrolment tokens, listing, revocation (works beside a running serve).
    #[command(subcommand)]
    Agents(agents_cmd::AgentsCmd),
    /// The audit trail of an account: every call that changed (or tried to change) something,
    /// who made it, from where, and how it ended; newest first (works beside a running serve).
    Audit(audit_cmd::Args),
    /// Assess a root directory once, with no server and no database (for CI pipelines and
    /// golden images). Exit status 0: every item passes; 1: an item fails; 2: an error.
    Assess(assess::Args),
    /// Benchmarks: start a service, load it through the signed API, compare with baselines.
    Bench(bench::Args),
    /// The store itself: copy an installation from SQLite to PostgreSQL.
    #[command(subcommand)]
    Store(store_cmd::StoreCmd),
    /// TLS: a private CA and server certificates (for serving HTTPS without a PKI of your
    /// own), and the public-key pins agents enrol with.
    #[command(subcommand)]
    Tls(tls_cmd::TlsCmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Call { action, params } => call::run(&action, &params),
        Command::Accounts(cmd) => admin::accounts(cmd),
        Command::Keys(cmd) => admin::keys(cmd),
        Command::Instances(cmd) => admin::instances(cmd),
        Command::Agents(cmd) => agents_cmd::run(cmd),
        Command::Assess(args) => assess::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Store(cmd) => store_cmd::run(cmd),
        Command::Tls(cmd) => tls_cmd::run(cmd),
        Command::Audit(args) => audit_cmd::run(args),
    }
}

/// The default data directory.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("./posture-data")
}
