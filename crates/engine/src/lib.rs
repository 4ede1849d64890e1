//! The engine: the store says what is due; workers take one thing at a time (a task or a check
//! run), do it through a connector, and write each step back. Nothing is kept in memory that a
//! restart would need: a crashed worker's lease expires and another worker carries on.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod agents;
mod assess;
mod auto;
mod custom;
mod discover;
mod preview;
mod schedule;
mod tasks;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use catalog::Catalog;
use connectors::{CloudProvider, Connector};
use model::Vendor;
use store::{Claimed, WorkerStore};

pub use agents::{AgentWork, ReportRefusal};
pub use assess::evaluate_instance;
pub use preview::{preview_answer_json, preview_answer_of, PreviewAnswer};
pub use schedule::{default_schedule, due_window, selected_checks, WINDOWS};

/// How often each node looks for schedules whose window is open (a window is hours long).
pub const SCHEDULE_POLL: Duration = Duration::from_secs(5);

/// Engine settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// How long a lease lasts before another worker may take the task over.
    pub lease_ms: i64,
    /// Leases a task may take before it is failed (a task that keeps crashing its worker).
    pub max_attempts: i64,
    /// How long an idle worker sleeps before looking again (it is also woken on submission).
    pub idle_poll: Duration,
    /// How long the tasks and check runs of a server reached through its agent wait for an
    /// agent not heard from: then tasks that have changed nothing fail (`AgentOffline`) and
    /// the run's detail of the server fails.
    pub agent_deadline_ms: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config { lease_ms: 30_000, max_attempts: 5, idle_poll: Duration::from_millis(500), agent_deadline_ms: 600_000 }
    }
}

/// The engine's shared parts.
pub struct Engine {
    pub(crate) store: Arc<dyn WorkerStore>,
    pub(crate) catalog: Arc<Catalog>,
    connectors: Vec<Arc<dyn Connector>>,
    providers: Vec<Arc<dyn CloudProvider>>,
    pub(crate) config: Config,
    wake: (Mutex<u64>, Condvar),
    stop: AtomicBool,
    /// The tasks this engine's workers are driving, with when their lease was last taken or
    /// extended: the heartbeat keeps a step that runs longer than a lease (a slow cloud call)
    /// from being taken over by another worker or node.
    held: Mutex<HashMap<String, (Claimed, Instant)>>,
    /// Told at every wake-up too (the API's waiting agent polls).
    listeners: Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
}

impl Engine {
    /// A new engine with its connectors (one per asset kind) and cloud providers (one per vendor).
    pub fn new(
        store: Arc<dyn WorkerStore>,
        catalog: Arc<Catalog>,
        connectors: Vec<Arc<dyn Connector>>,
        providers: Vec<Arc<dyn CloudProvider>>,
        config: Config,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            store,
            catalog,
            connectors,
            providers,
            config,
            wake: (Mutex::new(0), Condvar::new()),
            stop: AtomicBool::new(false),
            held: Mutex::new(HashMap::new()),
            listeners: Mutex::new(Vec::new()),
        })
    }

    /// The connector for an instance's kind.
    pub fn connector(&self, kind: &str) -> Option<&Arc<dyn Connector>> {
        self.connectors.iter().find(|c| c.kind() == kind)
    }

    /// The cloud provider of a vendor.
    pub fn provider(&self, vendor: Vendor) -> Option<&Arc<dyn CloudProvider>> {
        self.providers.iter().find(|p| p.vendor() == vendor)
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Tells idle workers there is new work.
    pub fn wake(&self) {
        let (m, cv) = &self.wake;
        *m.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        cv.notify_all();
        for listener in self.listeners.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            listener();
        }
    }

    /// Calls `listener` at every wake-up as well.
    pub fn on_wake(&self, listener: Box<dyn Fn() + Send + Sync>) {
        self.listeners.lock().unwrap_or_else(|p| p.into_inner()).push(listener);
    }

    /// Does one unit of work if any is due. Returns whether it did something.
    pub fn work_once(&self) -> bool {
        match self.store.claim_task(self.config.lease_ms) {
            Ok(Some(claimed)) => {
                if claimed.task.attempts > 1 {
                    metrics::global().lease_expirations.inc(&[]);
                }
                self.drive(claimed);
                return true;
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, stage = "claim_task", "could not claim a task"),
        }
        match self.store.claim_run(self.config.lease_ms) {
            Ok(Some(run)) => {
                self.run_check(&run);
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::error!(error = %e, stage = "claim_run", "could not claim a check run");
                false
            }
        }
    }

    /// Works until nothing is due (tests and the demo's first check use it).
    pub fn drain(&self) {
        while self.work_once() {}
    }

    /// Starts `n` worker threads, the heartbeat that extends their leases, and the thread that
    /// applies whitelist expiries as they fall due. Work submitted
    /// through another node wakes them too, where the store can tell (PostgreSQL's NOTIFY);
    /// otherwise they look every `idle_poll`.
    pub fn start(self: &Arc<Self>, n: usize) -> Workers {
        let weak = Arc::downgrade(self);
        if let Err(e) = self.store.watch_work(Box::new(move || {
            if let Some(engine) = weak.upgrade() {
                engine.wake();
            }
        })) {
            tracing::warn!(error = %e, "work submitted on other nodes is found by polling only");
        }
        let mut handles: Vec<JoinHandle<()>> = (0..n)
            .map(|i| {
                let engine = self.clone();
                std::thread::Builder::new()
                    .name(format!("posture-worker-{i}"))
                    .spawn(move || engine.worker_loop())
                    .expect("a worker thread can be spawned")
            })
            .collect();
        if n > 0 {
            let engine = self.clone();
            handles.push(
                std::thread::Builder::new()
                    .name("posture-heartbeat".into())
                    .spawn(move || engine.heartbeat_loop())
                    .expect("the heartbeat thread can be spawned"),
            );
            let engine = self.clone();
            handles.push(
                std::thread::Builder::new()
                    .name("posture-expiries".into())
                    .spawn(move || engine.expiry_loop())
                    .expect("the expiry thread can be spawned"),
            );
        }
        Workers { engine: self.clone(), handles }
    }

    /// Every second, applies the whitelist expiries that have fallen due (any node may; reads
    /// apply their account's due expiries themselves, so this only keeps the counters current
    /// between reads), and fails the tasks of agents gone past the deadline; every
    /// [`SCHEDULE_POLL`], starts the runs of schedules whose window is open. A thread of its
    /// own: a large expiry must not delay the heartbeat.
    fn expiry_loop(&self) {
        let mut last_schedules = Instant::now() - SCHEDULE_POLL;
        while !self.stop.load(Ordering::Relaxed) {
            let (m, cv) = &self.wake;
            let guard = m.lock().unwrap_or_else(|p| p.into_inner());
            let _ = cv.wait_timeout_while(guard, Duration::from_secs(1), |_| !self.stop.load(Ordering::Relaxed));
            if let Err(e) = self.store.apply_due_expiries() {
                tracing::warn!(error = %e, "whitelist expiries could not be applied; reads apply them meanwhile");
            }
            match self.store.expire_approvals() {
                Ok(0) => {}
                // What waited behind them on the same files may go.
                Ok(_) => self.wake(),
                Err(e) => {
                    tracing::warn!(error = %e, "expired approvals could not be cancelled; tried again in a second")
                }
            }
            if let Err(e) = self.fail_offline_agent_tasks() {
                tracing::warn!(error = %e, "the tasks of offline agents could not be failed; tried again in a second");
            }
            if last_schedules.elapsed() >= SCHEDULE_POLL {
                last_schedules = Instant::now();
                if let Err(e) = self.start_due_schedules(store::now_ms()) {
                    tracing::warn!(error = %e, "due schedules could not be started; tried again shortly");
                }
                if let Err(e) = self.auto_remediate_ended_runs() {
                    tracing::warn!(error = %e, "auto-remediation could not act on ended check runs; tried again shortly");
                }
            }
        }
    }

    /// Every sixth of a lease, extends the leases last extended a third of a lease ago or more:
    /// a lease is renewed at most half a lease after its last renewal was asked for (measured
    /// from the asking, which comes before the write that sets it), so a slow write has the
    /// other half to commit in.
    fn heartbeat_loop(&self) {
        let third = Duration::from_millis((self.config.lease_ms / 3).max(1) as u64);
        while !self.stop.load(Ordering::Relaxed) {
            let (m, cv) = &self.wake;
            let guard = m.lock().unwrap_or_else(|p| p.into_inner());
            let _ = cv.wait_timeout_while(guard, third / 2, |_| !self.stop.load(Ordering::Relaxed));
            let due: Vec<Claimed> = {
                let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
                held.values().filter(|(_, at)| at.elapsed() >= third).map(|(c, _)| c.clone()).collect()
            };
            for claimed in due {
                let id = claimed.task.id.clone();
                let asked = Instant::now();
                let extended = self.store.extend_lease(&claimed, self.config.lease_ms);
                let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
                match extended {
                    Ok(()) => {
                        if let Some(entry) = held.get_mut(&id) {
                            entry.1 = asked;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(task = %id, error = %e, "the lease could not be extended");
                        if matches!(e, store::StoreError::LeaseLost) {
                            held.remove(&id);
                        }
                    }
                }
            }
        }
    }

    /// Marks a task as driven by this engine (its lease is kept by the heartbeat) until the
    /// returned guard drops.
    pub(crate) fn hold(&self, claimed: &Claimed) -> Held<'_> {
        let id = claimed.task.id.clone();
        self.held.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone(), (claimed.clone(), Instant::now()));
        Held { engine: self, id }
    }

    fn worker_loop(&self) {
        while !self.stop.load(Ordering::Relaxed) {
            if self.work_once() {
                continue;
            }
            let (m, cv) = &self.wake;
            let guard = m.lock().unwrap_or_else(|p| p.into_inner());
            let seen = *guard;
            let _ = cv
                .wait_timeout_while(guard, self.config.idle_poll, |n| *n == seen && !self.stop.load(Ordering::Relaxed));
        }
    }
}

/// A task held by a worker: released from the heartbeat when dropped.
pub(crate) struct Held<'a> {
    engine: &'a Engine,
    id: String,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.engine.held.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
    }
}

/// Running worker threads; dropping it stops them after their current unit of work.
pub struct Workers {
    engine: Arc<Engine>,
    handles: Vec<JoinHandle<()>>,
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.engine.stop.store(true, Ordering::Relaxed);
        self.engine.wake();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
