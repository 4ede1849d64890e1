//! The engine against a real store and real files: the full repair → verify → rollback cycle,
//! and crash recovery through lease expiry.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{Accounts, Instances, NewInstance, NewTask, Results, Store, Submission, TaskQueue};

use catalog::Catalog;
use connectors::host::HostConnector;
use connectors::{Connector, ConnectorError, Target};
use engine::{Config, Engine};
use model::{Change, CheckStatus, DimensionType, Document, Snapshot, TaskStatus, TaskType, Vendor};

const SSHD: &str = "# sshd\nPort 22\nPermitRootLogin yes\n";

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    store: Arc<Store>,
    account: String,
    pk: i64,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet/i-1");
    std::fs::create_dir_all(root.join("etc/ssh")).unwrap();
    std::fs::write(root.join("etc/ssh/sshd_config"), SSHD).unwrap();
    let store = Arc::new(Store::open(&dir.path().join("posture.db")).unwrap());
    let account = store.create_account("t").unwrap().id;
    let pk = store
        .upsert_instance(
            &account,
            &NewInstance {
                vendor: Vendor::Aliyun,
                region_id: "cn-hangzhou".into(),
                instance_id: "i-1".into(),
                instance_name: "one".into(),
                connector: "host".into(),
                locator: root.display().to_string(),
                os_type: "linux".into(),
                live: None,
            },
        )
        .unwrap()
        .pk;
    Fixture { _dir: dir, root, store, account, pk }
}

fn engine_with(store: &Arc<Store>, connector: Arc<dyn Connector>, lease_ms: i64) -> Arc<Engine> {
    Engine::new(
        store.clone(),
        Arc::new(Catalog::builtin().unwrap()),
        vec![connector],
        Vec::new(),
        Config { lease_ms, idle_poll: Duration::from_millis(10), ..Config::default() },
    )
}

fn submit(f: &Fixture, kind: TaskType, repair: Option<&str>) -> String {
    let id = store::new_id(16);
    f.store
        .submit(
            &f.account,
            &Submission {
                root_id: store::new_id(16),
                check_id: 1001,
                kind,
                dimension: DimensionType::Instance,
                tasks: vec![NewTask {
                    id: id.clone(),
                    instance_pk: f.pk,
                    repair_task_id: repair.map(String::from),
                    params: Default::default(),
                }],
                selection: None,
                scope: "file:/etc/ssh/sshd_config".into(),
                limits: Default::default(),
                submitted_by: "LTAItest".into(),
            },
        )
        .unwrap();
    id
}

fn sshd(root: &Path) -> String {
    std::fs::read_to_string(root.join("etc/ssh/sshd_config")).unwrap()
}

#[test]
fn repair_verify_rollback_walks_every_status_and_restores_the_bytes() {
    let f = fixture();
    let engine = engine_with(&f.store, Arc::new(HostConnector::default()), 30_000);
    let repair = submit(&f, TaskType::Repair, None);
    engine.drain();
    let t = f.store.get_task(&f.account, &repair).unwrap().unwrap();
    assert_eq!(t.status, TaskStatus::RepairSuccessVerified, "{}: {}", t.error_code, t.error_msg);
    assert_eq!(sshd(&f.root), SSHD.replace("PermitRootLogin yes", "PermitRootLogin no"));
    assert_eq!(f.store.result_status(&f.account, 1001, f.pk).unwrap(), Some(CheckStatus::Pass));
    let history = f.store.task_events(&repair).unwrap();
    assert!(history.iter().skip(1).all(|e| e.actor == store::WORKER_ACTOR), "driven by a worker: {history:?}");
    let events: Vec<String> = history.into_iter().map(|e| e.status).collect();
    assert_eq!(
        events,
        [
            "INIT",
            "IN_BACKUP",
            "BACKED_UP",
            "REPAIRING",
            "REPAIR_SUCCESS",
            "REPAIR_SUCCESS_VERIFYING",
            "REPAIR_SUCCESS_VERIFIED"
        ]
    );

    let rollback = submit(&f, TaskType::Rollback, Some(&repair));
    engine.drain();
    let t = f.store.get_task(&f.account, &rollback).unwrap().unwrap();
    assert_eq!(t.status, TaskStatus::RollBackVerified, "{}: {}", t.error_code, t.error_msg);
    assert_eq!(sshd(&f.root), SSHD, "byte for byte");
    assert_eq!(f.store.result_status(&f.account, 1001, f.pk).unwrap(), Some(CheckStatus::NotPass));
    let events: Vec<String> = f.store.task_events(&rollback).unwrap().into_iter().map(|e| e.status).collect();
    assert_eq!(events, ["ROLL_BACK_INIT", "ROLL_BACKING", "ROLL_BACKED", "ROLL_BACK_VERIFYING", "ROLL_BACK_VERIFIED"]);
}

/// The host connector with faults in apply: it dies (panics, like a crash) right after it
/// changed the files, before the engine could record the change (while `crash` is armed); or
/// it fails with a transient error, as a cloud that does not answer, `unreachable` more times.
struct Faulty {
    inner: HostConnector,
    crash: AtomicBool,
    unreachable: AtomicUsize,
    /// How long each change takes (a cloud call that takes its time).
    delay: Duration,
}

impl Faulty {
    fn new(crash: bool, unreachable: usize, delay: Duration) -> Arc<Faulty> {
        Arc::new(Faulty {
            inner: HostConnector::default(),
            crash: crash.into(),
            unreachable: unreachable.into(),
            delay,
        })
    }
    fn crashing() -> Arc<Faulty> {
        Faulty::new(true, 0, Duration::ZERO)
    }
    fn unreachable(times: usize) -> Arc<Faulty> {
        Faulty::new(false, times, Duration::ZERO)
    }
    fn slow(delay: Duration) -> Arc<Faulty> {
        Faulty::new(false, 0, delay)
    }
}

impl Connector for Faulty {
    fn kind(&self) -> &'static str {
        "host"
    }
    fn fetch(&self, t: &Target) -> Result<Document, ConnectorError> {
        self.inner.fetch(t)
    }
    fn backup(&self, t: &Target, change: &Change) -> Result<Snapshot, ConnectorError> {
        self.inner.backup(t, change)
    }
    fn apply(&self, t: &Target, change: &Change, snap: &mut Snapshot) -> Result<(), ConnectorError> {
        std::thread::sleep(self.delay);
        let left = self.unreachable.load(Ordering::SeqCst);
        if left > 0 {
            self.unreachable.store(left - 1, Ordering::SeqCst);
            return Err(ConnectorError::transient("CloudUnavailable", "connection refused"));
        }
        self.inner.apply(t, change, snap)?;
        if self.crash.swap(false, Ordering::SeqCst) {
            panic!("simulated crash after the change, before it was recorded");
        }
        Ok(())
    }
    fn restore(&self, t: &Target, change: &Change, snap: &Snapshot) -> Result<(), ConnectorError> {
        self.inner.restore(t, change, snap)
    }
    fn matches(&self, t: &Target, snap: &Snapshot) -> Result<bool, ConnectorError> {
        self.inner.matches(t, snap)
    }
}

#[test]
fn a_crash_mid_repair_is_resumed_from_the_first_snapshot_after_the_lease_expires() {
    let f = fixture();
    // Wide enough that a slow machine (a panic printing a symbolised backtrace can take a
    // noticeable time) still asks before it ends; the wait below is measured from the claim.
    const LEASE_MS: i64 = 5_000;
    let crashing = engine_with(&f.store, Faulty::crashing(), LEASE_MS);
    let repair = submit(&f, TaskType::Repair, None);
    let claimed = Instant::now();
    let crashed = std::panic::catch_unwind(AssertUnwindSafe(|| crashing.work_once()));
    assert!(crashed.is_err(), "the worker died");
    let t = f.store.get_task(&f.account, &repair).unwrap().unwrap();
    assert_eq!(t.status, TaskStatus::Repairing, "the change was made but not recorded");
    assert!(sshd(&f.root).contains("PermitRootLogin no"));

    // While the dead worker's lease runs, nobody takes the task.
    let healthy = engine_with(&f.store, Arc::new(HostConnector::default()), 30_000);
    assert!(!healthy.work_once(), "taken {:?} after the claim, within a {LEASE_MS} ms lease", claimed.elapsed());
    std::thread::sleep(Duration::from_millis(LEASE_MS as u64 + 50).saturating_sub(claimed.elapsed()));
    healthy.drain();
    let t = f.store.get_task(&f.account, &repair).unwrap().unwrap();
    assert_eq!(t.status, TaskStatus::RepairSuccessVerified, "{}: {}", t.error_code, t.error_msg);
    assert_eq!(t.attempts, 2);
    // The snapshot is still the one taken before the first change: not re-taken from changed files.
    let snap = f.store.get_snapshot(&repair).unwrap();
    assert_eq!(snap.items.len(), 1);
    assert_eq!(snap.items[0].data, SSHD.as_bytes());

    let rollback = submit(&f, TaskType::Rollback, Some(&repair));
    healthy.drain();
    assert_eq!(f.store.get_task(&f.account, &rollback).unwrap().unwrap().status, TaskStatus::RollBackVerified);
    assert_eq!(sshd(&f.root), SSHD);
}

#[test]
fn a_task_that_keeps_crashing_is_failed_and_its_half_change_undone() {
    let f = fixture();
    let repair = submit(&f, TaskType::Repair, None);
    for _ in 0..6 {
        let crashing = engine_with(&f.store, Faulty::crashing(), 0);
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| crashing.work_once()));
        std::thread::sleep(Duration::from_millis(2));
    }
    let t = f.store.get_task(&f.account, &repair).unwrap().unwrap();
    assert_eq!(t.status, TaskStatus::RepairFail);
    assert_eq!(t.error_code, "TooManyAttempts");
    assert_eq!(sshd(&f.root), SSHD, "the snapshot was put back");
}

#[test]
fn a_vanished_instance_fails_cleanly_and_is_marked_freed() {
    let f = fixture();
    let engine = engine_with(&f.store, Arc::new(HostConnector::default()), 30_000);
    std::fs::remove_dir_all(&f.root).unwrap();
    let repair = submit(&f, TaskType::Repair, None);
    engine.drain();
    let t = f.store.get_task(&f.account, &repair).unwrap().unwrap();
    assert_eq!(t.status, TaskStatus::BackupFail);
    assert_eq!(t.error_code, "InstanceFreed");
    assert!(t.instance_freed);
}

/// Runs the engine until the task is terminal, letting leases expire between attempts.
fn run_until_terminal(engine: &Engine, f: &Fixture, task: &str) -> store::TaskRow {
    for _ in 0..200 {
        engine.drain();
        let t = f.store.get_task(&f.account, task).unwrap().unwrap();
        if t.status.is_terminal() {
            return t;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("the task did not finish");
}

#[test]
fn a_transient_failure_is_retried_under_the_next_lease_and_then_succeeds() {
    let f = fixture();
    let engine = engine_with(&f.store, Faulty::unreachable(2), 20);
    let repair = submit(&f, TaskType::Repair, None);
    engine.drain();
    let t = f.store.get_task(&f.account, &repair).unwrap().unwrap();
    assert_eq!(t.status, TaskStatus::Repairing, "deferred, not failed: the step waits for the next lease");
    let t = run_until_terminal(&engine, &f, &repair);
    assert_eq!(t.status, TaskStatus::RepairSuccessVerified, "{}: {}", t.error_code, t.error_msg);
    assert_eq!(t.attempts, 3, "two failed leases, then the one that worked");
    assert!(sshd(&f.root).contains("PermitRootLogin no"));
}

#[test]
fn a_failure_that_stays_transient_fails_the_task_with_its_code_once_the_attempts_are_used_up() {
    let f = fixture();
    let engine = engine_with(&f.store, Faulty::unreachable(usize::MAX), 20);
    let repair = submit(&f, TaskType::Repair, None);
    let t = run_until_terminal(&engine, &f, &repair);
    assert_eq!(t.status, TaskStatus::RepairFail);
    assert_eq!((t.error_code.as_str(), t.attempts), ("CloudUnavailable", Config::default().max_attempts));
    assert_eq!(sshd(&f.root), SSHD, "nothing was changed");
}

#[test]
fn a_task_whose_stored_parameters_cannot_be_read_fails_before_anything_changes() {
    let f = fixture();
    let id = submit(&f, TaskType::Repair, None);
    // The row is damaged behind the store's back (as a failing disk or a hand edit would).
    let db = rusqlite::Connection::open(f._dir.path().join("posture.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.execute("UPDATE tasks SET params = '[[\"Port\"' WHERE id = ?", [&id]).unwrap();
    drop(db);
    engine_with(&f.store, Arc::new(HostConnector::default()), 30_000).drain();
    let t = f.store.get_task(&f.account, &id).unwrap().unwrap();
    assert_eq!((t.status, t.error_code.as_str()), (TaskStatus::Fail, "TaskRecordCorrupt"), "{}", t.error_msg);
    assert_eq!(sshd(&f.root), SSHD, "nothing was changed");
}

#[test]
fn a_step_longer_than_a_lease_keeps_its_lease_and_is_not_taken_over() {
    let f = fixture();
    // Two engines (two nodes) with a 300 ms lease; a repair step takes five leases.
    let slow = || Faulty::slow(Duration::from_millis(1500));
    let engines = [engine_with(&f.store, slow(), 300), engine_with(&f.store, slow(), 300)];
    let task = submit(&f, TaskType::Repair, None);
    let workers: Vec<_> = engines.iter().map(|e| e.start(1)).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let t = loop {
        let t = f.store.get_task(&f.account, &task).unwrap().unwrap();
        if t.status.is_terminal() {
            break t;
        }
        assert!(Instant::now() < deadline, "the repair did not end: {t:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(workers);
    assert_eq!(t.status, TaskStatus::RepairSuccessVerified, "{}: {}", t.error_code, t.error_msg);
    assert_eq!(t.attempts, 1, "the heartbeat kept the lease: nobody took the task over");
}

/// The host connector on a live system whose service keeps its old value of PermitRootLogin
/// (`Some`), or whose value in effect cannot be read (`None`): what a verification must catch.
struct StaleService(HostConnector, Option<&'static str>);

impl Connector for StaleService {
    fn kind(&self) -> &'static str {
        "host"
    }
    fn fetch(&self, t: &Target) -> Result<Document, ConnectorError> {
        let mut doc = self.0.fetch(t)?;
        doc.insert(model::LIVE_SYSTEM.into(), "yes".into());
        match self.1 {
            Some(v) => doc.insert(format!("{}sshd.permitrootlogin", model::LIVE), v.into()),
            None => doc.insert(format!("{}sshd", model::LIVE_ERROR), "sshd -T: no hostkeys available".into()),
        };
        Ok(doc)
    }
    fn backup(&self, t: &Target, change: &Change) -> Result<Snapshot, ConnectorError> {
        self.0.backup(t, change)
    }
    fn apply(&self, t: &Target, change: &Change, snap: &mut Snapshot) -> Result<(), ConnectorError> {
        self.0.apply(t, change, snap)
    }
    fn restore(&self, t: &Target, change: &Change, snap: &Snapshot) -> Result<(), ConnectorError> {
        self.0.restore(t, change, snap)
    }
    fn matches(&self, t: &Target, snap: &Snapshot) -> Result<bool, ConnectorError> {
        self.0.matches(t, snap)
    }
}

#[test]
fn a_value_in_effect_that_did_not_follow_the_file_leaves_the_repair_unverified() {
    for (live, code, says) in [
        (Some("yes"), "LiveValueMismatch", r#"the file has "no", in effect "yes""#),
        (None, "LiveValueUnread", "no hostkeys available"),
    ] {
        let f = fixture();
        let engine = engine_with(&f.store, Arc::new(StaleService(HostConnector::default(), live)), 30_000);
        let repair = submit(&f, TaskType::Repair, None);
        engine.drain();
        let t = f.store.get_task(&f.account, &repair).unwrap().unwrap();
        assert_eq!((t.status, t.error_code.as_str()), (TaskStatus::RepairSuccessUnverified, code), "{}", t.error_msg);
        assert!(t.error_msg.contains(says), "{}", t.error_msg);
        assert!(t.verification.contains("sshd -T"), "{}", t.verification);
        // The file was changed, and stays so: a rollback is the operator's call.
        assert!(sshd(&f.root).contains("PermitRootLogin no"));
    }
    // The same file with the value in effect following it is verified.
    let f = fixture();
    let engine = engine_with(&f.store, Arc::new(StaleService(HostConnector::default(), Some("no"))), 30_000);
    let repair = submit(&f, TaskType::Repair, None);
    engine.drain();
    let t = f.store.get_task(&f.account, &repair).unwrap().unwrap();
    assert_eq!(t.status, TaskStatus::RepairSuccessVerified, "{}: {}", t.error_code, t.error_msg);
}
