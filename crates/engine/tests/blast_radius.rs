//! How far one root task's change spreads: `MaxConcurrency` never exceeded (observed through
//! the task events, with steps slow enough that more workers would overlap), and a canary that
//! holds the rest back, then releases them — or, not verified, cancels them with their files
//! untouched. The engine, the store and the host connector on real files.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use catalog::Catalog;
use connectors::host::HostConnector;
use connectors::{Connector, ConnectorError, Target};
use engine::{Config, Engine};
use model::{Change, DimensionType, Document, Snapshot, Step, TaskStatus, TaskType, Vendor};
use store::{Accounts, Instances, NewInstance, NewTask, RootLimits, Store, Submission, TaskQueue};

const SSHD: &[u8] = b"PermitRootLogin yes\nX11Forwarding yes\n";

/// The host connector, each change step made slow: tasks that may overlap do.
struct Slow(HostConnector);

impl Connector for Slow {
    fn kind(&self) -> &'static str {
        "host"
    }
    fn scope(&self, steps: &[Step]) -> String {
        self.0.scope(steps)
    }
    fn fetch(&self, t: &Target) -> Result<Document, ConnectorError> {
        self.0.fetch(t)
    }
    fn backup(&self, t: &Target, change: &Change) -> Result<Snapshot, ConnectorError> {
        std::thread::sleep(Duration::from_millis(40));
        self.0.backup(t, change)
    }
    fn apply(&self, t: &Target, change: &Change, snap: &mut Snapshot) -> Result<(), ConnectorError> {
        std::thread::sleep(Duration::from_millis(40));
        self.0.apply(t, change, snap)
    }
    fn restore(&self, t: &Target, change: &Change, snap: &Snapshot) -> Result<(), ConnectorError> {
        self.0.restore(t, change, snap)
    }
    fn matches(&self, t: &Target, snap: &Snapshot) -> Result<bool, ConnectorError> {
        self.0.matches(t, snap)
    }
}

struct Fleet {
    _dir: tempfile::TempDir,
    roots: Vec<PathBuf>,
    store: Arc<Store>,
    account: String,
    pks: Vec<i64>,
}

fn fleet(n: usize) -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("posture.db")).unwrap());
    let account = store.create_account("t").unwrap().id;
    let (mut roots, mut pks) = (Vec::new(), Vec::new());
    for i in 0..n {
        let root = dir.path().join(format!("fleet/i-{i}"));
        std::fs::create_dir_all(root.join("etc/ssh")).unwrap();
        std::fs::write(root.join("etc/ssh/sshd_config"), SSHD).unwrap();
        let new = NewInstance {
            vendor: Vendor::Aliyun,
            region_id: "cn-hangzhou".into(),
            instance_id: format!("i-{i}"),
            instance_name: format!("h{i}"),
            connector: "host".into(),
            locator: root.display().to_string(),
            os_type: "linux".into(),
            live: None,
        };
        pks.push(store.upsert_instance(&account, &new).unwrap().pk);
        roots.push(root);
    }
    Fleet { _dir: dir, roots, store, account, pks }
}

impl Fleet {
    /// Submits a repair of 1004 (X11Forwarding no) on every instance with `limits`; the task ids.
    fn repair_all(&self, limits: RootLimits) -> Vec<String> {
        let check = Catalog::builtin().unwrap().get(1004).unwrap().clone();
        let params = model::resolve_params(&check.repair.as_ref().unwrap().params, &[]).unwrap();
        let tasks: Vec<NewTask> = self
            .pks
            .iter()
            .map(|pk| NewTask { id: store::task_id(), instance_pk: *pk, repair_task_id: None, params: params.clone() })
            .collect();
        let ids = tasks.iter().map(|t| t.id.clone()).collect();
        let submission = Submission {
            root_id: store::new_id(16),
            check_id: 1004,
            kind: TaskType::Repair,
            dimension: DimensionType::Instance,
            tasks,
            selection: None,
            scope: HostConnector::default().scope(&check.render_steps(&params)),
            limits,
            submitted_by: "LTAItest".into(),
        };
        self.store.submit(&self.account, &submission).unwrap();
        ids
    }

    /// Runs `workers` workers until every task in `ids` has ended; their final statuses.
    fn run(&self, workers: usize, ids: &[String]) -> Vec<TaskStatus> {
        let engine = Engine::new(
            self.store.clone(),
            Arc::new(Catalog::builtin().unwrap()),
            vec![Arc::new(Slow(HostConnector::default()))],
            Vec::new(),
            Config { idle_poll: Duration::from_millis(5), ..Config::default() },
        );
        let running = engine.start(workers);
        let deadline = Instant::now() + Duration::from_secs(60);
        let statuses = loop {
            let s: Vec<TaskStatus> =
                ids.iter().map(|id| self.store.get_task(&self.account, id).unwrap().unwrap().status).collect();
            if s.iter().all(|s| s.is_terminal()) {
                break s;
            }
            assert!(Instant::now() < deadline, "{s:?}");
            std::thread::sleep(Duration::from_millis(10));
        };
        drop(running);
        statuses
    }

    /// Each task's time under way: from its first step (IN_BACKUP) to its end.
    fn spans(&self, ids: &[String]) -> Vec<(i64, i64)> {
        ids.iter()
            .filter_map(|id| {
                let events = self.store.task_events(id).unwrap();
                let start = events.iter().find(|e| e.status == "IN_BACKUP")?.at_ms;
                let end =
                    events.iter().rev().find(|e| TaskStatus::parse(&e.status).is_some_and(|s| s.is_terminal()))?.at_ms;
                Some((start, end))
            })
            .collect()
    }
}

/// The most spans under way at once.
fn most_at_once(spans: &[(i64, i64)]) -> usize {
    spans.iter().map(|(t, _)| spans.iter().filter(|(s, e)| s <= t && t < e).count()).max().unwrap_or(0)
}

#[test]
fn max_concurrency_is_never_exceeded() {
    let f = fleet(6);
    let ids = f.repair_all(RootLimits { max_concurrency: Some(2), ..Default::default() });
    let statuses = f.run(4, &ids);
    assert!(statuses.iter().all(|s| *s == TaskStatus::RepairSuccessVerified), "{statuses:?}");
    let spans = f.spans(&ids);
    assert_eq!(spans.len(), 6);
    assert!(most_at_once(&spans) <= 2, "{spans:?}");
    // Without it, the same four workers run more at once (the check above could fail).
    let g = fleet(6);
    let ids = g.repair_all(RootLimits::default());
    g.run(4, &ids);
    assert!(most_at_once(&g.spans(&ids)) > 2, "the steps are slow enough to overlap");
}

#[test]
fn a_canary_holds_the_rest_back_then_releases_or_cancels_them() {
    let f = fleet(4);
    let ids = f.repair_all(RootLimits { canary_count: Some(1), ..Default::default() });
    let statuses = f.run(4, &ids);
    assert!(statuses.iter().all(|s| *s == TaskStatus::RepairSuccessVerified), "{statuses:?}");
    let spans = f.spans(&ids);
    assert!(spans[1..].iter().all(|(start, _)| *start >= spans[0].1), "the rest start after the canary: {spans:?}");

    // The canary's file has a second name, so its repair fails: the rest are cancelled untouched.
    let g = fleet(4);
    std::fs::hard_link(g.roots[0].join("etc/ssh/sshd_config"), g.roots[0].join("etc/ssh/second-name")).unwrap();
    let ids = g.repair_all(RootLimits { canary_count: Some(1), ..Default::default() });
    let statuses = g.run(4, &ids);
    assert_ne!(statuses[0], TaskStatus::RepairSuccessVerified);
    assert_eq!(&statuses[1..], [TaskStatus::Cancelled; 3]);
    for root in &g.roots[1..] {
        assert_eq!(std::fs::read(root.join("etc/ssh/sshd_config")).unwrap(), SSHD, "untouched");
    }
}
