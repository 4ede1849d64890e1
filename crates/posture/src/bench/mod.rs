//! `posture bench`: each scenario starts its own service (this binary's `serve`) on a
//! temporary data directory and a free loopback port, drives it through the real signed HTTP
//! API, and measures, in the same run, the physical baseline it is bounded by.

mod agents;
mod api_load;
mod assess;
mod fanout;
mod fleet;
mod fleet_scale;
mod load;
mod repair;
mod service;

use std::process::ExitCode;

use serde_json::{json, Value};

/// Which benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// A RelationKey selection of N instances → time until SubmitOperationTask answers.
    Fanout,
    /// 64 concurrent clients on ListCheckResult, ListOperationTask, SubmitOperationTask.
    Api,
    /// N verified repairs and N verified rollbacks on host instances, end to end.
    Repair,
    /// A full check of N demo-like hosts.
    Assess,
    /// N registered and checked instances: the full check, and the console's listings with
    /// one client and with 64.
    Fleet,
    /// N agents (threads of this process, each on a small root) enrolled: a full check through
    /// them, and the service's cost of their heartbeats.
    Agents,
    /// Every scenario above.
    All,
}

#[derive(clap::Args)]
pub struct Args {
    /// The scenario.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Sizes to run (repeat for several); defaults: fanout and fleet 10k,100k,1M; repair and
    /// assess 1k,10k; agents 1k; api: the number of concurrent clients (64).
    #[arg(long)]
    scale: Vec<usize>,
    /// Seconds each api (and fleet) operation is loaded.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Small scales, for CI: every scenario in about a minute.
    #[arg(long)]
    smoke: bool,
    /// One JSON object per scenario and scale on its own line (no table, no progress). Progress
    /// is shown on stderr only when it is a terminal.
    #[arg(long)]
    json: bool,
    /// Run the services on PostgreSQL: a server URL (postgres://USER@HOST:PORT/DB) on which each
    /// service gets a new database, dropped afterwards. Default: SQLite in a temporary directory.
    #[arg(long, env = "POSTURE_BENCH_DATABASE_URL")]
    database: Option<String>,
    /// api: serve from this many nodes on one database (needs --database); the clients are
    /// spread over them.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// agents: how long an idle agent's poll waits (its heartbeat), in seconds; default the
    /// service's own (30), 5 with --smoke. 2,000 agents at 6 s poll as often as 10,000 at 30 s.
    #[arg(long)]
    poll_wait: Option<u64>,
}

/// Where progress goes: stderr, unless `--json`.
pub struct Progress {
    quiet: bool,
}

impl Progress {
    pub fn say(&self, msg: &str) {
        if !self.quiet {
            eprint!("\r\x1b[2K{msg}");
        }
    }
    pub fn done(&self) {
        if !self.quiet {
            eprint!("\r\x1b[2K");
        }
    }
}

fn defaults(s: Scenario, smoke: bool) -> Vec<usize> {
    match (s, smoke) {
        (Scenario::Fanout, false) => vec![10_000, 100_000, 1_000_000],
        (Scenario::Fanout, true) => vec![2_000],
        (Scenario::Repair | Scenario::Assess, false) => vec![1_000, 10_000],
        (Scenario::Repair | Scenario::Assess, true) => vec![100],
        (Scenario::Fleet, false) => vec![10_000, 100_000, 1_000_000],
        (Scenario::Fleet, true) => vec![200],
        (Scenario::Agents, false) => vec![1_000],
        (Scenario::Agents, true) => vec![20],
        (Scenario::Api, false) => vec![64],
        (Scenario::Api, true) => vec![8],
        (Scenario::All, _) => vec![],
    }
}

pub fn run(args: Args) -> ExitCode {
    // Progress is for a person at a terminal: not with --json, not into a log.
    let progress = Progress { quiet: args.json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) };
    let scenarios = match args.scenario {
        Scenario::All => {
            vec![Scenario::Fanout, Scenario::Api, Scenario::Repair, Scenario::Assess, Scenario::Fleet, Scenario::Agents]
        }
        s => vec![s],
    };
    let duration = if args.smoke { 1 } else { args.duration };
    if args.nodes > 1 && args.database.is_none() {
        eprintln!("bench: --nodes above 1 needs --database (several nodes share one PostgreSQL)");
        return ExitCode::FAILURE;
    }
    let backend = if args.database.is_some() { "postgres" } else { "sqlite" };
    service::use_database(args.database.clone());
    let mut rows: Vec<Value> = Vec::new();
    for s in scenarios {
        let scales = if args.scale.is_empty() || args.scenario == Scenario::All {
            defaults(s, args.smoke)
        } else {
            args.scale.clone()
        };
        for n in scales {
            let result = match s {
                Scenario::Fanout => fanout::run(n, &progress).map(|v| vec![v]),
                Scenario::Api => api_load::run(n, duration, args.nodes.max(1), &progress),
                Scenario::Repair => repair::run(n, &progress).map(|v| vec![v]),
                Scenario::Assess => assess::run(n, &progress).map(|v| vec![v]),
                Scenario::Fleet => fleet_scale::run(n, duration, 64, &progress),
                Scenario::Agents => {
                    let poll_wait = args.poll_wait.unwrap_or(if args.smoke { 5 } else { 30 });
                    agents::run(n, duration, poll_wait, &progress).map(|v| vec![v])
                }
                Scenario::All => unreachable!("expanded above"),
            };
            progress.done();
            match result {
                Ok(values) => {
                    for mut v in values {
                        v["backend"] = json!(backend);
                        if args.json {
                            println!("{v}");
                        }
                        rows.push(v);
                    }
                }
                Err(e) => {
                    eprintln!("bench {s:?} at {n}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    if !args.json {
        print_table(&rows);
    }
    ExitCode::SUCCESS
}

fn print_table(rows: &[Value]) {
    let machine = format!("{} cores", std::thread::available_parallelism().map_or(0, |n| n.get()));
    println!("posture bench ({machine})");
    for r in rows {
        let Value::Object(m) = r else { continue };
        let figures: Vec<String> = m
            .iter()
            .filter(|(k, _)| *k != "scenario" && *k != "n")
            .map(|(k, v)| match v {
                Value::Number(n) if n.is_f64() => format!("{k}={:.3}", n.as_f64().unwrap_or(0.0)),
                other => format!("{k}={other}"),
            })
            .collect();
        println!("{:<8} n={:<8} {}", m["scenario"].as_str().unwrap_or(""), m["n"], figures.join("  "));
    }
}

/// Rounds for the report.
pub fn r3(x: f64) -> Value {
    json!((x * 1000.0).round() / 1000.0)
}
