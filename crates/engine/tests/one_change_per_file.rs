//! One change at a time per file of an instance, and rollbacks that can always bring a file
//! back to its original bytes: the engine, the store and the host connector together, on real
//! files, with workers racing and with workers dying at random points.

use std::os::unix::fs::PermissionsExt;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use store::{Accounts, Instances, NewInstance, NewTask, Store, StoreError, Submission, TaskQueue};

use catalog::Catalog;
use connectors::host::HostConnector;
use connectors::{Connector, ConnectorError, Target};
use engine::{Config, Engine};
use model::{Change, DimensionType, Document, Snapshot, Step, TaskStatus, TaskType, Vendor};
use proptest::prelude::*;

/// A Debian-like sshd_config (with a Latin-1 byte in a comment) and login.defs.
const SSHD: &[u8] = b"# sshd_config \xa9 Debian\nInclude /etc/ssh/sshd_config.d/*.conf\n\nLoginGraceTime 2m\nPermitRootLogin yes\nMaxAuthTries 6\nX11Forwarding yes\nUsePAM yes\n";
const LOGIN_DEFS: &[u8] = b"MAIL_DIR /var/mail\nPASS_MAX_DAYS\t99999\nPASS_MIN_DAYS\t0\nPASS_WARN_AGE\t7\nUMASK 022\n";

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    store: Arc<Store>,
    catalog: Arc<Catalog>,
    account: String,
    pk: i64,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet/i-1");
    std::fs::create_dir_all(root.join("etc/ssh/sshd_config.d")).unwrap();
    std::fs::write(root.join("etc/ssh/sshd_config"), SSHD).unwrap();
    std::fs::set_permissions(root.join("etc/ssh/sshd_config"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(root.join("etc/login.defs"), LOGIN_DEFS).unwrap();
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
    Fixture { _dir: dir, root, store, catalog: Arc::new(Catalog::builtin().unwrap()), account, pk }
}

impl Fixture {
    fn engine(&self, connector: Arc<dyn Connector>, lease_ms: i64) -> Arc<Engine> {
        Engine::new(
            self.store.clone(),
            self.catalog.clone(),
            vec![connector],
            Vec::new(),
            Config { lease_ms, idle_poll: Duration::from_millis(5), ..Config::default() },
        )
    }

    /// Submits as SubmitOperationTask does: default parameters, the connector's scope.
    fn submit(&self, check_id: i64, kind: TaskType, repair: Option<&str>) -> Result<String, StoreError> {
        let check = self.catalog.get(check_id).unwrap();
        let params = model::resolve_params(&check.repair.as_ref().unwrap().params, &[]).unwrap();
        let id = store::task_id();
        self.store.submit(
            &self.account,
            &Submission {
                root_id: store::new_id(16),
                check_id,
                kind,
                dimension: DimensionType::Instance,
                tasks: vec![NewTask {
                    id: id.clone(),
                    instance_pk: self.pk,
                    repair_task_id: repair.map(String::from),
                    params: params.clone(),
                }],
                selection: None,
                scope: HostConnector::default().scope(&check.render_steps(&params)),
                limits: Default::default(),
                submitted_by: "LTAItest".into(),
            },
        )?;
        Ok(id)
    }

    fn status(&self, id: &str) -> TaskStatus {
        self.store.get_task(&self.account, id).unwrap().unwrap().status
    }

    fn file(&self, rel: &str) -> (Vec<u8>, u32) {
        let p = self.root.join(rel);
        (std::fs::read(&p).unwrap(), std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777)
    }

    /// Files the connector left beside the configuration (temporary files of a write).
    fn leftovers(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for dir in ["etc", "etc/ssh"] {
            for e in std::fs::read_dir(self.root.join(dir)).unwrap() {
                let p = e.unwrap().path();
                if p.file_name().unwrap().to_string_lossy().contains(".posture-") {
                    out.push(p);
                }
            }
        }
        out
    }
}

/// Runs the engine on this thread until no task is unfinished, surviving simulated crashes
/// (a panicking step leaves its task leased; the lease expires and the task is taken again).
fn drain(f: &Fixture, engine: &Engine, lease_ms: i64) {
    for _ in 0..10_000 {
        let worked = std::panic::catch_unwind(AssertUnwindSafe(|| engine.work_once())).unwrap_or(true);
        if !worked {
            if f.store.count_active_tasks().unwrap() == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(lease_ms as u64 + 1));
        }
    }
    panic!("the engine did not finish");
}

#[test]
fn five_repairs_of_one_file_run_one_after_another_and_undo_in_reverse() {
    let f = fixture();
    let engine = f.engine(Arc::new(HostConnector::default()), 30_000);
    // Submitted together, run by 8 racing workers.
    let checks = [1001, 1003, 1004, 1005, 1006];
    let ids: Vec<String> = checks.iter().map(|c| f.submit(*c, TaskType::Repair, None).unwrap()).collect();
    assert!(ids[1..].iter().all(|id| f.status(id) == TaskStatus::Throttling), "all but the first wait");
    let workers = engine.start(8);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while f.store.count_active_tasks().unwrap() > 0 {
        assert!(std::time::Instant::now() < deadline, "the repairs did not finish");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(workers);
    for id in &ids {
        assert_eq!(f.status(id), TaskStatus::RepairSuccessVerified, "no change was lost");
    }
    let (text, mode) = f.file("etc/ssh/sshd_config");
    let text = String::from_utf8_lossy(&text);
    for line in ["PermitRootLogin no", "MaxAuthTries 4", "X11Forwarding no", "LoginGraceTime 60"] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    assert_eq!(mode, 0o600, "the mode repair was not undone by a content repair");
    // Never did two run at once: each started after the one before it had ended.
    let spans: Vec<(i64, i64)> = ids
        .iter()
        .map(|id| {
            let ev = f.store.task_events(id).unwrap();
            let start = ev.iter().find(|e| e.status == "IN_BACKUP").unwrap().at_ms;
            (start, ev.last().unwrap().at_ms)
        })
        .collect();
    for w in spans.windows(2) {
        assert!(w[1].0 >= w[0].1, "overlapping changes: {spans:?}");
    }
    // An older repair cannot be rolled back while a later one of the file stands.
    assert_eq!(
        f.submit(1001, TaskType::Rollback, Some(&ids[0])),
        Err(StoreError::NotLatest { repair: ids[0].clone(), newer: ids[4].clone() })
    );
    // In reverse order, every rollback is verified and the file is back, byte for byte.
    for (check, id) in checks.iter().zip(&ids).rev() {
        let rb = f.submit(*check, TaskType::Rollback, Some(id)).unwrap();
        drain(&f, &engine, 30_000);
        assert_eq!(f.status(&rb), TaskStatus::RollBackVerified);
    }
    assert_eq!(f.file("etc/ssh/sshd_config"), (SSHD.to_vec(), 0o644));
}

#[test]
fn a_mode_repair_rolled_back_after_a_content_repair_leaves_the_content() {
    let f = fixture();
    let engine = f.engine(Arc::new(HostConnector::default()), 30_000);
    let content = f.submit(1001, TaskType::Repair, None).unwrap();
    let mode = f.submit(1006, TaskType::Repair, None).unwrap();
    drain(&f, &engine, 30_000);
    let (after, _) = f.file("etc/ssh/sshd_config");
    // The mode repair is the latest: its rollback changes the mode only.
    let rb = f.submit(1006, TaskType::Rollback, Some(&mode)).unwrap();
    drain(&f, &engine, 30_000);
    assert_eq!(f.status(&rb), TaskStatus::RollBackVerified);
    assert_eq!(f.file("etc/ssh/sshd_config"), (after, 0o644));
    let rb = f.submit(1001, TaskType::Rollback, Some(&content)).unwrap();
    drain(&f, &engine, 30_000);
    assert_eq!(f.status(&rb), TaskStatus::RollBackVerified);
    assert_eq!(f.file("etc/ssh/sshd_config"), (SSHD.to_vec(), 0o644));
}

/// The host connector, dying (a panic, as a killed worker) before or after the real call, as
/// a deterministic random sequence decides.
struct Crashy {
    inner: HostConnector,
    rng: AtomicU64,
    /// Chance of a crash at each point, in percent.
    percent: u64,
}

impl Crashy {
    fn roll(&self) -> bool {
        // xorshift64*: deterministic for a seed, so a failing case replays.
        let mut x = self.rng.load(Ordering::SeqCst);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.store(x, Ordering::SeqCst);
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) % 100 < self.percent
    }

    fn around<T>(&self, f: impl FnOnce() -> T) -> T {
        if self.roll() {
            panic!("simulated crash before the step");
        }
        let r = f();
        if self.roll() {
            panic!("simulated crash after the step, before it was recorded");
        }
        r
    }
}

impl Connector for Crashy {
    fn kind(&self) -> &'static str {
        "host"
    }
    fn scope(&self, steps: &[Step]) -> String {
        self.inner.scope(steps)
    }
    fn fetch(&self, t: &Target) -> Result<Document, ConnectorError> {
        self.around(|| self.inner.fetch(t))
    }
    fn backup(&self, t: &Target, change: &Change) -> Result<Snapshot, ConnectorError> {
        self.around(|| self.inner.backup(t, change))
    }
    fn apply(&self, t: &Target, change: &Change, snap: &mut Snapshot) -> Result<(), ConnectorError> {
        self.around(|| self.inner.apply(t, change, snap))
    }
    fn restore(&self, t: &Target, change: &Change, snap: &Snapshot) -> Result<(), ConnectorError> {
        self.around(|| self.inner.restore(t, change, snap))
    }
    fn matches(&self, t: &Target, snap: &Snapshot) -> Result<bool, ConnectorError> {
        self.around(|| self.inner.matches(t, snap))
    }
}

/// Repairable items over two files: sshd_config (content and mode) and login.defs.
const ITEMS: [i64; 7] = [1001, 1003, 1004, 1005, 1006, 1009, 1010];

#[derive(Clone, Debug)]
enum Op {
    /// Submit a repair of `ITEMS[i]`.
    Repair(usize),
    /// Submit the rollback of the `k`-th (mod count) repair that is applied and not undone.
    Rollback(usize),
    /// Let the engine run until nothing is left.
    Drain,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..ITEMS.len()).prop_map(Op::Repair),
        3 => (0..16usize).prop_map(Op::Rollback),
        2 => Just(Op::Drain),
    ]
}

/// Applied repairs without a rollback that is done or under way, oldest first.
fn standing(f: &Fixture, repairs: &[(i64, String)]) -> Vec<(i64, String)> {
    repairs
        .iter()
        .filter(|(_, id)| f.status(id).repair_applied() && !f.store.has_rollback(id).unwrap())
        .cloned()
        .collect()
}

fn run_case(ops: &[Op], seed: u64, percent: u64) {
    quiet_simulated_crashes();
    let f = fixture();
    const LEASE: i64 = 20;
    let crashy = Arc::new(Crashy { inner: HostConnector::default(), rng: AtomicU64::new(seed | 1), percent });
    let engine = f.engine(crashy, LEASE);
    let mut repairs: Vec<(i64, String)> = Vec::new();
    for op in ops {
        match op {
            Op::Repair(i) => match f.submit(ITEMS[*i], TaskType::Repair, None) {
                Ok(id) => repairs.push((ITEMS[*i], id)),
                Err(StoreError::Conflict) => {} // the same item is already under way here
                Err(e) => panic!("repair refused: {e}"),
            },
            Op::Rollback(k) => {
                let candidates = standing(&f, &repairs);
                if candidates.is_empty() {
                    continue;
                }
                let (check, id) = &candidates[k % candidates.len()];
                match f.submit(*check, TaskType::Rollback, Some(id)) {
                    Ok(_) => {}
                    Err(StoreError::NotLatest { newer, .. }) => {
                        // The store named a later change that really is later and unfinished or standing.
                        let pos = |x: &str| repairs.iter().position(|(_, r)| r == x).unwrap();
                        assert!(pos(&newer) > pos(id), "{newer} is not later than {id}");
                        let s = f.status(&newer);
                        assert!(!s.is_terminal() || (s.repair_applied() && !f.store.has_rollback(&newer).unwrap()));
                    }
                    Err(StoreError::Conflict) => {}
                    Err(e) => panic!("rollback refused: {e}"),
                }
            }
            Op::Drain => drain(&f, &engine, LEASE),
        }
    }
    drain(&f, &engine, LEASE);
    // Now undo every change that stands, latest first: each must go through (a rollback that a
    // crash storm failed is simply submitted again), and the files must be their original bytes.
    for _ in 0..200 {
        let Some((check, id)) = standing(&f, &repairs).pop() else { break };
        match f.submit(check, TaskType::Rollback, Some(&id)) {
            Ok(_) => drain(&f, &engine, LEASE),
            Err(e) => panic!("the latest standing repair {id} ({check}) cannot be rolled back: {e}"),
        }
    }
    assert!(standing(&f, &repairs).is_empty(), "changes still stand");
    assert_eq!(f.file("etc/ssh/sshd_config"), (SSHD.to_vec(), 0o644), "sshd_config is not back");
    assert_eq!(f.file("etc/login.defs"), (LOGIN_DEFS.to_vec(), 0o644), "login.defs is not back");
    assert_eq!(f.leftovers(), Vec::<PathBuf>::new(), "temporary files left behind");
}

/// Simulated crashes are expected: keep their panic messages out of the test output (every
/// other panic is reported as usual).
fn quiet_simulated_crashes() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info.payload().downcast_ref::<&str>().copied().unwrap_or_default();
            if !msg.starts_with("simulated crash") {
                default(info);
            }
        }));
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_sequence_of_repairs_rollbacks_and_crashes_can_return_to_the_original_bytes(
        ops in prop::collection::vec(op(), 1..24),
        seed in any::<u64>(),
        percent in 0u64..20,
    ) {
        run_case(&ops, seed, percent);
    }
}
