//! The agents' endpoints, `POST /agent/v1/{enroll,poll,report}`: JSON bodies, each request
//! signed with the agent's Ed25519 key (the enrolment with the key it registers) and
//! replay-protected like the API (the date within 15 minutes, the nonce used once). An agent
//! acts only for its own instance: every task and detail it names is checked to be its own.
//!
//! A poll waits (up to [`POLL_WAIT`]) for work of the agent's instance. Polls that wait hold a
//! permit of their own budget, so agents cannot take every connection from API clients: past
//! the budget a poll is answered at once and the agent polls again later.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use client::agent::{self as wire, Enroll, Enrolled, Failure, Next, Poll, Report, Work};
use connectors::ConnectorError;
use engine::{AgentWork, ReportRefusal};
use model::{ApiError, TaskStatus, Vendor};
use serde_json::Value;
use store::{Agent, Agents, Audit, EnrolRefusal, Enrolment, Instance, NewInstance};
use tokio::sync::{Notify, Semaphore};

use crate::auth::{NonceCheck, WINDOW_MS};
use crate::http::Request;
use crate::ops::db;
use crate::App;

/// The oldest agent version the server accepts.
pub const MIN_AGENT_VERSION: &str = "0.1.0";

/// The oldest agent version that previews changes (older ones cannot read the request).
pub const PREVIEW_AGENT_VERSION: &str = "0.2.0";

/// Whether an agent of this version previews changes.
fn previews(version: &str) -> bool {
    version_parts(version) >= version_parts(PREVIEW_AGENT_VERSION)
}

/// How long a poll waits for work: well inside the HTTP server's idle and body timeouts, and
/// the agent's heartbeat (an agent polls again at once, so it is heard from this often).
pub const POLL_WAIT: Duration = Duration::from_secs(30);

/// Agent requests doing their store work at once.
const LOOKS: usize = 8;

/// What the server keeps of its agents between requests.
pub struct AgentHub {
    /// When each agent was last heard from, not yet written (written every few seconds).
    seen: Mutex<HashMap<String, i64>>,
    /// Told whenever there may be new work (the engine's wake-ups), and counted.
    work: Notify,
    generation: AtomicU64,
    /// Permits of the polls that wait.
    polls: Arc<Semaphore>,
    /// Permits of the agents' store work on blocking threads (see [`blocking`]).
    looks: Semaphore,
    /// How long a poll waits.
    poll_wait: Duration,
    /// Set at shutdown: waiting polls end at once.
    stopping: AtomicBool,
}

impl AgentHub {
    /// A hub letting at most `max_polls` polls wait at once.
    pub fn new(max_polls: usize, poll_wait: Duration) -> AgentHub {
        AgentHub {
            seen: Mutex::new(HashMap::new()),
            work: Notify::new(),
            generation: AtomicU64::new(0),
            polls: Arc::new(Semaphore::new(max_polls.max(1))),
            looks: Semaphore::new(LOOKS),
            poll_wait,
            stopping: AtomicBool::new(false),
        }
    }

    /// Wakes every waiting poll to look for work.
    pub fn wake(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.work.notify_waiters();
    }

    /// How many wake-ups there have been.
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Ends every waiting poll (shutdown).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.work.notify_waiters();
    }

    fn saw(&self, agent_id: &str, at_ms: i64) {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).insert(agent_id.to_string(), at_ms);
    }

    /// Writes when agents were last heard from.
    pub fn flush(&self, store: &dyn Agents) {
        let seen: Vec<(String, i64)> = self.seen.lock().unwrap_or_else(|p| p.into_inner()).drain().collect();
        if let Err(e) = store.agents_seen(&seen) {
            tracing::warn!(error = %e, agents = seen.len(), "when agents were last heard from could not be written");
        }
    }

    /// Writes when agents were last heard from every `every`, for as long as the app lives.
    pub fn start_flushing(app: &Arc<App>, every: Duration) {
        let weak: Weak<App> = Arc::downgrade(app);
        let _ = std::thread::Builder::new().name("posture-agents-seen".into()).spawn(move || loop {
            std::thread::sleep(every);
            let Some(app) = weak.upgrade() else { return };
            app.agents.flush(&*app.store);
        });
    }
}

/// Who sent a request.
enum Sender {
    /// An agent enrolling (its key is in the body).
    Enrolling(Enroll),
    /// An enrolled agent, and its instance.
    Agent(Agent, Box<Instance>),
}

/// Answers one agent request (its JSON body, or an error for the envelope).
pub(crate) async fn handle(app: Arc<App>, req: Request) -> Result<Value, ApiError> {
    if req.method != "POST" {
        return Err(ApiError::unsupported_method());
    }
    let endpoint = req.path.strip_prefix(wire::PREFIX).unwrap_or_default().to_string();
    if !matches!(endpoint.as_str(), "enroll" | "poll" | "report") {
        return Err(ApiError::agent_path_not_found(&req.path));
    }
    let now = store::now_ms();
    let source = req.peer.ip().to_string();
    let checker = app.clone();
    // A poll's nonce goes to the log, as a read's does: what a poll may write (a lease of its
    // own instance's next step) is harmless to take twice. Enrolments and reports go ahead of
    // their writes.
    let may_write = endpoint != "poll";
    // Taken before a poll's first look, so that a wake-up during that look is not missed.
    let seen = app.agents.generation();
    let (sender, nonce, req, first) = blocking(&app.agents, move || {
        let (sender, nonce) = authenticate(&checker, &req, now)?;
        let nonce = nonce.send(&checker.store, may_write);
        // A poll looks for work at once, on this thread: its agent was just read.
        let first = match (&sender, may_write) {
            (Sender::Agent(agent, instance), false) => start_poll(&checker, agent, instance, &req.body)?,
            _ => None,
        };
        Ok::<_, ApiError>((sender, nonce, req, first))
    })
    .await?;
    // Nothing is answered before the nonce is committed, as for the API (a poll: see below).
    let poll_nonce = match may_write {
        true => {
            nonce.committed().await?;
            None
        }
        false => Some(nonce),
    };
    match (endpoint.as_str(), sender) {
        ("enroll", Sender::Enrolling(e)) => blocking(&app.clone().agents, move || enroll(&app, e, &source)).await,
        ("poll", Sender::Agent(agent, instance)) => {
            app.agents.saw(&agent.id, now);
            let work = match first {
                Some(work) => Some(to_wire(work)),
                None => poll(&app, &agent, &instance, seen).await?,
            };
            // A poll that hands out work is answered once its nonce is committed, so that no
            // replay of it is taken even after a crash; one that found nothing (an idle agent's
            // heartbeat, the common case) told nothing and changed nothing, so it does not wait
            // for the disk (its nonce is written all the same, and refused again meanwhile).
            if let (Some(_), Some(nonce)) = (&work, poll_nonce) {
                nonce.committed().await?;
            }
            Ok(serde_json::to_value(Next { work }).unwrap_or_default())
        }
        ("report", Sender::Agent(agent, instance)) => {
            app.agents.saw(&agent.id, now);
            let report: Report = serde_json::from_slice(&req.body)
                .map_err(|e| ApiError::agent_request_invalid(&format!("the report: {e}")))?;
            let work = blocking(&app.clone().agents, move || report_to_engine(&app, &agent, &instance, report)).await?;
            Ok(serde_json::to_value(Next { work }).unwrap_or_default())
        }
        _ => Err(ApiError::agent_request_invalid("enrol first, then poll and report as the enrolled agent")),
    }
}

/// A poll's first part: the version the agent runs now (an agent upgraded in place is
/// recorded; one too old is refused), then a first look for work.
fn start_poll(app: &App, agent: &Agent, instance: &Instance, body: &[u8]) -> Result<Option<AgentWork>, ApiError> {
    let asked: Poll =
        serde_json::from_slice(body).map_err(|e| ApiError::agent_request_invalid(&format!("the poll: {e}")))?;
    if asked.version != agent.version {
        check_version(&asked.version)?;
        app.store.set_agent_version(&agent.id, &asked.version).map_err(db)?;
    }
    app.engine.agent_next(instance, &agent.id, previews(&asked.version)).map_err(db)
}

/// Runs an agent request's store work on a blocking thread, a few at a time: when every
/// agent is woken at once (a check of the whole fleet), they queue here instead of each
/// taking a blocking thread of its own (hundreds of threads, and their memory, for nothing).
async fn blocking<T: Send + 'static>(
    hub: &AgentHub,
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let _permit = hub.looks.acquire().await.map_err(|_| ApiError::server_error())?;
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|_| Err(ApiError::server_error()))
}

fn header<'a>(req: &'a Request, name: &str) -> Result<&'a str, ApiError> {
    req.header(name).ok_or_else(|| ApiError::agent_request_invalid(&format!("the header {name} is missing")))
}

/// Verifies the signature, the date and the agent, and takes the nonce.
fn authenticate(app: &App, req: &Request, now: i64) -> Result<(Sender, NonceCheck), ApiError> {
    let agent_id = header(req, wire::AGENT_HEADER)?;
    let date_ms: i64 = header(req, wire::DATE_HEADER)?
        .parse()
        .map_err(|_| ApiError::agent_request_invalid("the date is not milliseconds since the epoch"))?;
    if (now - date_ms).abs() > WINDOW_MS {
        return Err(ApiError::timestamp_expired());
    }
    let nonce = header(req, wire::NONCE_HEADER)?;
    if nonce.is_empty() || nonce.len() > 64 {
        return Err(ApiError::agent_request_invalid("the nonce must be 1 to 64 characters"));
    }
    let signature = header(req, wire::SIGNATURE_HEADER)?;
    let verified = |key: &[u8], as_agent: &str| {
        wire::verify(key, signature, &req.method, &req.path, as_agent, date_ms, nonce, &req.body)
    };
    let (sender, signer) = if agent_id == wire::ENROLLING {
        let e: Enroll = serde_json::from_slice(&req.body)
            .map_err(|e| ApiError::agent_request_invalid(&format!("the enrolment: {e}")))?;
        let key = wire::unb64(&e.public_key).filter(|k| k.len() == 32).ok_or_else(|| {
            ApiError::agent_request_invalid("PublicKey must be the base64 of a 32-byte Ed25519 public key")
        })?;
        if !verified(&key, wire::ENROLLING) {
            return Err(ApiError::agent_signature_invalid());
        }
        check_version(&e.version)?;
        let signer = format!("enroll:{}", e.public_key);
        (Sender::Enrolling(e), signer)
    } else {
        let (agent, instance) = app.store.agent(agent_id).map_err(db)?.ok_or_else(ApiError::agent_unknown)?;
        if !verified(&agent.public_key, &agent.id) {
            return Err(ApiError::agent_signature_invalid());
        }
        if agent.revoked_ms.is_some() {
            return Err(ApiError::agent_revoked());
        }
        check_version(&agent.version)?;
        let signer = format!("agent:{}", agent.id);
        (Sender::Agent(agent, Box::new(instance)), signer)
    };
    let nonce = NonceCheck::record(&app.store, &signer, nonce, date_ms, now)?;
    Ok((sender, nonce))
}

/// `1.2.3` as numbers; anything else sorts first.
fn version_parts(v: &str) -> Vec<u64> {
    v.split(['.', '-', '+']).take(3).map(|p| p.parse().unwrap_or(0)).collect()
}

fn check_version(version: &str) -> Result<(), ApiError> {
    if version_parts(version) < version_parts(MIN_AGENT_VERSION) {
        return Err(ApiError::agent_version_unsupported(version, MIN_AGENT_VERSION));
    }
    Ok(())
}

/// A short printable field of an enrolment.
fn field<'a>(value: &'a str, name: &str, required: bool) -> Result<&'a str, ApiError> {
    let v = value.trim();
    if (required && v.is_empty()) || v.len() > 128 || v.chars().any(char::is_control) {
        return Err(ApiError::agent_request_invalid(&format!(
            "{name} must be {}at most 128 printable characters",
            if required { "1 to " } else { "" }
        )));
    }
    Ok(v)
}

fn enroll(app: &App, e: Enroll, source: &str) -> Result<Value, ApiError> {
    let instance_id = field(&e.instance_id, "InstanceId", true)?.to_string();
    let region_id = field(&e.region_id, "RegionId", false)?.to_string();
    let hostname = field(&e.info.hostname, "Hostname", false)?;
    let vendor =
        Vendor::from_code(e.vendor).ok_or_else(|| ApiError::agent_request_invalid("Vendor is not a vendor code"))?;
    let enrolment = Enrolment {
        token: e.token.clone(),
        instance: NewInstance {
            vendor,
            region_id,
            instance_id: instance_id.clone(),
            instance_name: if hostname.is_empty() { instance_id.clone() } else { hostname.to_string() },
            connector: "host".into(),
            locator: store::AGENT_LOCATOR.into(),
            os_type: "linux".into(),
            // The agent decides whether its root is live (its own `--live`), and acts on it.
            live: None,
        },
        public_key: wire::unb64(&e.public_key).unwrap_or_default(),
        version: e.version.clone(),
        info: serde_json::to_string(&e.info).unwrap_or_else(|_| "{}".into()),
    };
    match app.store.enroll_agent(&enrolment).map_err(db)? {
        Ok((agent, instance)) => {
            tracing::info!(agent = %agent.id, instance = %instance.instance_id, account = %agent.account_id, "agent enrolled");
            // The token is a secret: the record names the instance and the agent's key.
            let params =
                [("InstanceId", &instance.instance_id), ("PublicKey", &e.public_key), ("AgentVersion", &e.version)]
                    .map(|(k, v)| (k.to_string(), v.clone()));
            let mut entry = crate::ops::audit::entry(
                &agent.account_id,
                &format!("agent:{}", agent.id),
                source,
                "AgentEnroll",
                &params,
            );
            entry.outcome = "OK".into();
            if let Err(err) = app.store.record_audit(&entry, app.settings.audit_retention_ms) {
                tracing::error!(error = %err, "the enrolment could not be recorded in the audit trail");
            }
            let answer =
                Enrolled { agent_id: agent.id, instance_id: instance.instance_id, poll_seconds: POLL_WAIT.as_secs() };
            Ok(serde_json::to_value(answer).unwrap_or_default())
        }
        Err(EnrolRefusal::UnknownToken) => Err(ApiError::agent_token_invalid("it is not known")),
        Err(EnrolRefusal::Expired) => Err(ApiError::agent_token_invalid("it has expired")),
        Err(EnrolRefusal::UsedUp) => Err(ApiError::agent_token_invalid("it has been used as often as it allowed")),
        Err(EnrolRefusal::OtherInstance(id)) => Err(ApiError::agent_token_other_instance(&id)),
        Err(EnrolRefusal::InstanceExists) => Err(ApiError::agent_instance_exists(&instance_id)),
    }
}

/// Waits for work of the instance (after a first look that found none), at most the poll
/// time (not at all past the budget). Before each look the agent is read again: a poll of an
/// agent revoked (or replaced by a new enrolment) while it waited must not take its instance's
/// work, which would then sit leased to an agent that is gone until the lease ran out.
async fn poll(app: &Arc<App>, agent: &Agent, instance: &Instance, mut seen: u64) -> Result<Option<Work>, ApiError> {
    let hub = &app.agents;
    let permit = hub.polls.clone().try_acquire_owned().ok();
    let wait = if permit.is_some() { hub.poll_wait } else { Duration::ZERO };
    let until = tokio::time::Instant::now() + wait;
    loop {
        if hub.stopping.load(Ordering::Relaxed) || tokio::time::Instant::now() >= until {
            return Ok(None);
        }
        // Registered before the generation is compared, so that no wake-up falls between.
        let woken = hub.work.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        // A lease that runs out (an agent's interrupted step) wakes no one: that step is taken
        // at the agent's next poll. (Looking again every few seconds as well cost more than all
        // the polls themselves: 1,000 waiting polls made 200 looks a second.)
        if hub.generation() == seen {
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep_until(until) => return Ok(None),
            }
        }
        seen = hub.generation();
        let (a, i, id) = (app.clone(), instance.clone(), agent.id.clone());
        let work = blocking(hub, move || {
            let version = match a.store.agent(&id).map_err(db)? {
                Some((now, _)) if now.revoked_ms.is_none() => now.version,
                _ => return Err(ApiError::agent_revoked()),
            };
            a.engine.agent_next(&i, &id, previews(&version)).map_err(db)
        })
        .await?;
        if let Some(work) = work {
            return Ok(Some(to_wire(work)));
        }
    }
}

fn to_wire(work: AgentWork) -> Work {
    match work {
        AgentWork::Task { task_id, fence, status, kind, check_id, params, op } => Work::Task {
            task_id,
            fence,
            status: status.as_str().to_string(),
            task_type: kind.as_str().to_string(),
            check_id,
            params: params.0,
            op,
        },
        AgentWork::Check { detail_id } => Work::Check { detail_id },
        AgentWork::Preview { preview_id, check_id, params } => Work::Preview { preview_id, check_id, params: params.0 },
    }
}

/// The codes an agent may report (the host connector's and the agent's own refusals); any
/// other is recorded as `AgentError`, its message kept.
const AGENT_CODES: &[&str] = &[
    "InstanceFreed",
    "BackUpError",
    "RepairError",
    "RollbackError",
    "CheckError",
    "ConfigChangedSinceRepair",
    "ConfigChangedSinceBackup",
    "ConfigFileNotRegular",
    "ConfigFileTooLarge",
    "ConfigFileHardLinked",
    "FileOperationTimeout",
    "CheckNotInAgentCatalog",
    "StepNotAllowed",
    "RepairParamInvalid",
    "PreviewError",
];

fn connector_error(f: Failure) -> ConnectorError {
    let code = AGENT_CODES.iter().find(|c| **c == f.code).copied().unwrap_or("AgentError");
    let message = if code == "AgentError" { format!("{}: {}", f.code, f.message) } else { f.message };
    ConnectorError { code, message: message.chars().take(2000).collect(), freed: f.freed, retryable: f.retryable }
}

fn report_to_engine(app: &App, agent: &Agent, instance: &Instance, report: Report) -> Result<Option<Work>, ApiError> {
    let refused = |r: ReportRefusal| match r {
        ReportRefusal::NotYours => ApiError::agent_work_not_yours(),
        ReportRefusal::Stale => ApiError::agent_report_stale(),
        ReportRefusal::Store(e) => db(e),
    };
    let next_work =
        || Ok(app.engine.agent_next(instance, &agent.id, previews(&agent.version)).map_err(db)?.map(to_wire));
    match report {
        Report::Task { task_id, fence, status, outcome } => {
            let status = TaskStatus::parse(&status)
                .ok_or_else(|| ApiError::agent_request_invalid("Status is not a task status"))?;
            let next = app
                .engine
                .agent_report(instance, &agent.id, &task_id, fence, status, outcome.map_err(connector_error))
                .map_err(refused)?;
            match next {
                Some(work) => Ok(Some(to_wire(work))),
                None => next_work(),
            }
        }
        Report::Check { detail_id, outcome } => {
            app.engine.agent_check(instance, &detail_id, outcome.map_err(connector_error)).map_err(refused)?;
            next_work()
        }
        Report::Preview { preview_id, outcome } => {
            app.engine.agent_preview(instance, &preview_id, outcome.map_err(connector_error)).map_err(refused)?;
            next_work()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_numbers() {
        assert!(check_version("0.1.0").is_ok());
        assert!(check_version("0.10.0").is_ok());
        assert!(check_version("1.0.0-rc1").is_ok());
        assert_eq!(check_version("0.0.9").unwrap_err().code, "AgentVersionUnsupported");
        assert_eq!(check_version("garbage").unwrap_err().code, "AgentVersionUnsupported");
    }
}
