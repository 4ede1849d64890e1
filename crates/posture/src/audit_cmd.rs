//! `posture audit`: an account's audit trail, newest first, on the data directory (safe while
//! `serve` runs on it): one line per call, or JSON with `--json`.

use std::process::ExitCode;

use serde_json::Value;
use store::{Audit as _, AuditFilter};

use crate::admin::{open, DataDir};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    dir: DataDir,
    /// The account.
    #[arg(long)]
    account: String,
    /// Only calls of this action (SubmitOperationTask, KeysCreate, AgentEnroll, …).
    #[arg(long)]
    action: Option<String>,
    /// Only calls by this AccessKeyId (or `agent:<AgentId>`, `cli:<user>`).
    #[arg(long)]
    actor: Option<String>,
    /// Only calls with this outcome: OK, FAILED (any refusal) or an error code.
    #[arg(long)]
    outcome: Option<String>,
    /// Only the calls of the last 90s, 15m, 24h, 7d …
    #[arg(long)]
    since: Option<String>,
    /// The most records printed.
    #[arg(long, default_value_t = 100)]
    limit: i64,
    /// Print JSON (an array, as DescribeAuditLog's Records) instead of one line per call.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> ExitCode {
    match list(&args) {
        Ok(records) if args.json => {
            println!("{}", serde_json::to_string_pretty(&Value::Array(records)).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(records) => {
            for r in records {
                let at = client::time::format_utc(r["Time"].as_i64().unwrap_or_default() / 1000);
                // One record, one line: a control character (a newline, an escape) is shown
                // escaped, so that no record can forge another or drive the terminal.
                let field = |k: &str| r[k].as_str().unwrap_or_default().escape_debug().to_string();
                println!(
                    "{at}  {}  {}  {}  {}  {}",
                    field("Actor"),
                    field("SourceIp"),
                    field("ActionName"),
                    field("Outcome"),
                    r["Parameters"]
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn list(args: &Args) -> Result<Vec<Value>, String> {
    if !(1..=10_000).contains(&args.limit) {
        return Err("--limit takes a number from 1 to 10000".into());
    }
    let start_ms = match &args.since {
        None => None,
        Some(text) => Some(
            store::now_ms()
                - api::ops::agents::parse_duration(text)
                    .ok_or_else(|| format!("--since {text:?} is not a duration such as 90s, 15m, 24h or 7d"))?,
        ),
    };
    let filter = AuditFilter {
        action: args.action.clone(),
        actor: args.actor.clone(),
        outcome: args.outcome.clone(),
        start_ms,
        end_ms: None,
        offset: 0,
        limit: args.limit,
    };
    let (rows, _) = open(&args.dir)?.list_audit(&args.account, &filter).map_err(|e| e.to_string())?;
    Ok(rows.into_iter().map(api::ops::audit::record_json).collect())
}
