//! `posture store copy`: move an installation from SQLite (a data directory) to PostgreSQL.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{json, Map, Value};
use store::{Location, Store};

#[derive(clap::Subcommand)]
pub enum StoreCmd {
    /// Copy everything a data directory's SQLite database holds into an empty PostgreSQL
    /// database, secrets still sealed. Stop `serve` first; afterwards run every node with
    /// `--database URL` and the same master key (the data directory's master.key by default).
    Copy {
        /// The data directory whose posture.db is copied.
        #[arg(long)]
        from: PathBuf,
        /// The PostgreSQL database: postgres://USER@HOST:PORT/DB (its schema is created).
        #[arg(long)]
        to: String,
        /// The master key the secrets are sealed with (default FROM/master.key).
        #[arg(long)]
        master_key: Option<PathBuf>,
    },
}

pub fn run(cmd: StoreCmd) -> ExitCode {
    let StoreCmd::Copy { from, to, master_key } = cmd;
    crate::admin::done(copy(from, to, master_key))
}

fn copy(from: PathBuf, to: String, master_key: Option<PathBuf>) -> Result<Value, String> {
    if !from.join("posture.db").exists() {
        return Err(format!("{} has no posture.db", from.display()));
    }
    let source =
        Store::connect(&Location { data: from.clone(), database: None, master_key: master_key.clone(), pool: None })
            .map_err(|e| format!("cannot open {}: {e}", from.display()))?;
    let target = Store::connect(&Location { data: from, database: Some(to), master_key, pool: None })
        .map_err(|e| format!("cannot open the target database: {e}"))?;
    let report = source
        .copy_into(&target, |table, rows| eprintln!("copied {table}: {rows} rows"))
        .map_err(|e| format!("the copy failed, the target is unchanged: {e}"))?;
    let tables: Map<String, Value> = report.into_iter().map(|(t, n)| (t.to_string(), json!(n))).collect();
    Ok(json!({"Copied": tables}))
}
