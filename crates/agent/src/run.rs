//! `posture-agent run`: poll, do, report, for as long as the service accepts the agent.
//!
//! Only what is compiled in runs here: a task names a check item, and its steps are rendered
//! from the agent's own built-in catalog, with the task's values checked by the item's own
//! parameter types; a snapshot the service sends is restored only if every file in it is one
//! those steps may change. The service never sends a command, a path or a step to carry out.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use catalog::Catalog;
use client::agent::{Failure, Next, Poll, Report, Work};
use connectors::host::{snapshot_fits, HostConnector, HostSettings};
use connectors::{Connector, ConnectorError, Target};
use model::{Change, ConnectorOp, Services};

use crate::enroll::VERSION;
use crate::state::State;
use crate::transport::{self, CallError};

/// Why the agent stopped (its exit status and message).
#[derive(Debug)]
pub struct Stop {
    /// The exit status: 2 a local error, 3 refused by the service for good.
    pub code: u8,
    /// What happened.
    pub message: String,
}

impl Stop {
    /// A usage or local error (exit 2).
    pub fn usage(message: impl Into<String>) -> Stop {
        Stop { code: 2, message: message.into() }
    }
    /// The service refuses the agent for good (exit 3): revoked, unknown, too old.
    pub fn refused(message: impl Into<String>) -> Stop {
        Stop { code: 3, message: message.into() }
    }
}

/// The largest file the agent backs up: a snapshot travels to the service in one report,
/// base64-encoded, within the service's 1 MiB request limit.
const MAX_FILE_BYTES: u64 = 512 * 1024;

/// Codes after which the agent stops: nothing it can do will be accepted again.
const FINAL: &[&str] = &["AgentRevoked", "AgentNotFound", "AgentVersionUnsupported", "AgentSignatureInvalid"];

/// What carries work out on the root.
pub struct Worker {
    catalog: Catalog,
    host: HostConnector,
    target: Target,
}

impl Worker {
    /// A worker on `root` (`live`: how its running services are reached, when it is the
    /// running system).
    pub fn new(root: PathBuf, instance_id: &str, live: Option<Services>) -> Result<Worker, String> {
        let catalog = Catalog::builtin().map_err(|e| format!("the built-in catalog: {e}"))?;
        let host = HostConnector::new(HostSettings { max_file_bytes: MAX_FILE_BYTES, ..HostSettings::default() });
        let target = Target {
            instance_id: instance_id.to_string(),
            locator: root.display().to_string(),
            live,
            ..Target::default()
        };
        Ok(Worker { catalog, host, target })
    }

    /// Carries one piece of work out and says how it went.
    pub fn perform(&self, work: Work) -> Report {
        match work {
            Work::Check { detail_id } => {
                Report::Check { detail_id, outcome: self.host.fetch(&self.target).map_err(failure) }
            }
            Work::Preview { preview_id, check_id, params } => {
                tracing::info!(preview = %preview_id, check = check_id, "preview");
                let outcome =
                    self.change(check_id, &params).and_then(|change| self.host.preview(&self.target, &change));
                Report::Preview { preview_id, outcome: outcome.map_err(failure) }
            }
            Work::Task { task_id, fence, status, check_id, params, op, .. } => {
                tracing::info!(task = %task_id, check = check_id, status = %status, "task step");
                let outcome = self.change(check_id, &params).and_then(|change| {
                    let snapshot = match &op {
                        ConnectorOp::Apply { snapshot }
                        | ConnectorOp::Restore { snapshot }
                        | ConnectorOp::MatchesAndFetch { snapshot } => Some(snapshot),
                        ConnectorOp::Backup | ConnectorOp::Fetch => None,
                    };
                    if snapshot.is_some_and(|s| !snapshot_fits(&change.steps, s)) {
                        return Err(ConnectorError::new(
                            "StepNotAllowed",
                            format!("the snapshot names files or values that check item {check_id} never changes"),
                        ));
                    }
                    connectors::execute(&self.host, &self.target, &change, op)
                });
                Report::Task { task_id, fence, status, outcome: outcome.map_err(failure) }
            }
        }
    }

    /// The change of a check item, rendered from the agent's own catalog with checked values.
    fn change(&self, check_id: i64, params: &[(String, String)]) -> Result<Change, ConnectorError> {
        let check = self.catalog.get(check_id).filter(|c| c.asset == "host").ok_or_else(|| {
            ConnectorError::new(
                "CheckNotInAgentCatalog",
                format!("check item {check_id} is not one this agent carries out"),
            )
        })?;
        let repair = check.repair.as_ref().ok_or_else(|| {
            ConnectorError::new("CheckNotInAgentCatalog", format!("check item {check_id} has no repair in this agent"))
        })?;
        for (name, value) in params {
            let spec = repair.params.iter().find(|s| &s.name == name);
            if spec.is_none_or(|s| s.kind.check_meaning(value).is_err()) {
                return Err(ConnectorError::new(
                    "RepairParamInvalid",
                    format!("the value of {name} is not one check item {check_id} accepts"),
                ));
            }
        }
        Ok(check.change(params))
    }
}

fn failure(e: ConnectorError) -> Failure {
    Failure { code: e.code.to_string(), message: e.message, retryable: e.retryable, freed: e.freed }
}

/// A pause of `base` give or take a quarter, so that agents started together spread out.
fn jittered(base: Duration) -> Duration {
    let mut b = [0u8; 2];
    let _ = getrandom::getrandom(&mut b);
    let quarter = base.as_millis() as u64 / 4;
    let spread = if quarter == 0 { 0 } else { u64::from(u16::from_le_bytes(b)) % (2 * quarter) };
    Duration::from_millis(base.as_millis() as u64 - quarter + spread)
}

/// Runs until the service refuses the agent for good, or `stop` is set (checked between
/// polls; a poll waits at most the service's poll time, and the service ends waiting polls
/// when it stops).
pub fn run_until(dir: &std::path::Path, stop: &AtomicBool) -> Result<(), Stop> {
    let state = State::open(dir).map_err(Stop::usage)?;
    let enrolled = state.enrolled().map_err(Stop::usage)?;
    let secret = state.key().map_err(Stop::usage)?;
    let trust = transport::trust(enrolled.ca.as_deref(), enrolled.fingerprint.as_deref()).map_err(Stop::usage)?;
    let endpoint =
        transport::endpoint(&enrolled.server, enrolled.insecure_http, trust.as_ref()).map_err(Stop::usage)?;
    let worker =
        Worker::new(enrolled.root.clone(), &enrolled.instance_id, enrolled.live.clone()).map_err(Stop::usage)?;
    tracing::info!(server = %enrolled.server, agent = %enrolled.agent_id, instance = %enrolled.instance_id,
        root = %enrolled.root.display(), version = VERSION, "posture-agent running");
    let session = Session { link: transport::Link::new(endpoint), secret, agent: enrolled.agent_id.clone() };
    let mut backoff = Duration::from_secs(1);
    while !stop.load(Ordering::Relaxed) {
        let asked = Instant::now();
        let mut next = match session.call("poll", &Poll { version: VERSION.to_string() }) {
            Ok(next) => next,
            Err(e) => {
                stop_if_final(&e)?;
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "poll failed");
                std::thread::sleep(jittered(backoff));
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        backoff = Duration::from_secs(1);
        if next.work.is_none() && asked.elapsed() < Duration::from_secs(1) {
            // Answered at once with nothing: the service is stopping or its polls are all
            // taken. Ask again a little later.
            std::thread::sleep(jittered(Duration::from_secs(5)));
        }
        while let Some(work) = next.work.take() {
            let report = worker.perform(work);
            next = session.report(&report)?;
        }
    }
    Ok(())
}

/// The agent's signed exchanges with the service.
struct Session {
    link: transport::Link,
    secret: [u8; 32],
    agent: String,
}

impl Session {
    fn call(&self, endpoint: &str, body: &impl serde::Serialize) -> Result<Next, CallError> {
        self.link.call(&self.secret, &self.agent, endpoint, body)
    }

    /// Sends a report, trying again a few times when the service does not answer. A report
    /// that never arrives is not lost work: the task's lease runs out and the step is done
    /// again.
    fn report(&self, report: &Report) -> Result<Next, Stop> {
        for attempt in 1..=3u64 {
            match self.call("report", report) {
                Ok(next) => return Ok(next),
                Err(e) => {
                    stop_if_final(&e)?;
                    if let CallError::Refused { code, .. } = &e {
                        tracing::warn!(code = %code, error = %e, "report refused");
                        return Ok(Next::default());
                    }
                    tracing::warn!(error = %e, attempt, "report not delivered");
                    std::thread::sleep(jittered(Duration::from_secs(attempt)));
                }
            }
        }
        Ok(Next::default())
    }
}

fn stop_if_final(e: &CallError) -> Result<(), Stop> {
    match e {
        CallError::Refused { code, message, .. } if FINAL.contains(&code.as_str()) => {
            Err(Stop::refused(format!("the service refuses this agent ({code}): {message}")))
        }
        _ => Ok(()),
    }
}
