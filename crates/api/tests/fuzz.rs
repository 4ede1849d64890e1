//! Property tests over hostile input (stable toolchain, bounded time): every action with
//! random parameters, and the decoders in front of them. None may panic, and no input may get
//! a server error (5xx): bad input is a 4xx with a code.

use std::sync::{Arc, Mutex};
use store::{Accounts, CheckRuns, Instances, NewInstance, Store};

use api::ops::{run, Ctx, Settings, OPERATIONS};
use api::params::Params;
use catalog::Catalog;
use connectors::host::HostConnector;
use engine::Engine;
use model::Vendor;
use proptest::prelude::*;

struct World {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    engine: Arc<Engine>,
    account: String,
    settings: Settings,
    idempotency: Mutex<()>,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("posture.db")).unwrap());
    let account = store.create_account("fuzz").unwrap().id;
    for (n, id) in ["i-1", "i-2", "i-3"].iter().enumerate() {
        let root = dir.path().join(id);
        std::fs::create_dir_all(root.join("etc/ssh")).unwrap();
        std::fs::write(root.join("etc/ssh/sshd_config"), "PermitRootLogin yes\n").unwrap();
        store
            .upsert_instance(
                &account,
                &NewInstance {
                    vendor: if n == 0 { Vendor::Aliyun } else { Vendor::Idc },
                    region_id: "cn-hangzhou".into(),
                    instance_id: id.to_string(),
                    instance_name: format!("host {n}"),
                    connector: "host".into(),
                    locator: root.display().to_string(),
                    os_type: "linux".into(),
                    live: None,
                },
            )
            .unwrap();
    }
    let engine = Engine::new(
        store.clone(),
        Arc::new(Catalog::builtin().unwrap()),
        vec![Arc::new(HostConnector::default())],
        Vec::new(),
        engine::Config::default(),
    );
    // Something to list and roll back: run a check and a repair to the end.
    store.create_run(&account, "CHECK_ALL", "", &[], &[]).unwrap();
    engine.drain();
    World { _dir: dir, store, engine, account, settings: Settings::default(), idempotency: Mutex::new(()) }
}

/// Parameter names the actions read, and a few they do not.
const NAMES: &[&str] = &[
    "CheckId",
    "CheckIds",
    "Type",
    "DimensionType",
    "OperationTaskInstances",
    "RepairTempParam",
    "Statuses",
    "PageSize",
    "CurrentPage",
    "Lang",
    "InstanceIds",
    "InstanceIdKey",
    "InstanceNameKey",
    "RegionIdKey",
    "RelationKey",
    "TaskId",
    "TaskIds",
    "TaskTypes",
    "TaskSources",
    "StatusCodes",
    "BusinessType",
    "TargetType",
    "Platform",
    "SelectionKey",
    "TargetOperationList",
    "TargetList",
    "Reason",
    "Remark",
    "RuleType",
    "Vendor",
    "Vendors",
    "SecretId",
    "SecretKey",
    "Regions",
    "AuthModules",
    "AuthIds",
    "AkType",
    "ClientToken",
    "DryRun",
    "Force",
    "StartTime",
    "EndTime",
    "RiskLevels",
    "SortTypes",
    "OperationTypes",
    "StandardIds",
    "RuleId",
    "ExpireTime",
    "Types",
    "InstanceTypes",
    "RequirementIds",
    "CheckTypes",
    "Criteria",
    "VulNames",
    "Uuids",
    "Unknown",
];

const FIELDS: &[&str] =
    &["InstanceId", "RegionId", "Vendor", "TaskId", "Name", "Value", "Target", "Operation", "Type", "X"];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("1001".to_string()),
        Just("1016".to_string()),
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("9223372036854775807".to_string()),
        Just("99999999999999999999999".to_string()),
        Just("REPAIR".to_string()),
        Just("ROLLBACK".to_string()),
        Just("CHECK_ID".to_string()),
        Just("INSTANCE".to_string()),
        Just("NOT_PASS".to_string()),
        Just("i-1".to_string()),
        Just("i-2".to_string()),
        Just("cn-hangzhou".to_string()),
        Just("true".to_string()),
        Just("True".to_string()),
        Just("IPPort".to_string()),
        Just("127.0.0.1:6379".to_string()),
        Just("0.0.0.0/0".to_string()),
        Just("AWS".to_string()),
        Just("%_\\*[".to_string()),
        Just("中文 ☃".to_string()),
        Just("a\u{0}b\nc".to_string()),
        Just("x".repeat(4096)),
        Just("x".repeat(4097)),
        "[ -~]{0,40}",
        any::<String>(),
    ]
}

fn index() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (1u32..4).prop_map(|n| n.to_string()),
        1 => Just("0".to_string()),
        1 => Just("4294967296".to_string()),
        1 => Just("-1".to_string()),
        1 => Just("x".to_string()),
        1 => (1u32..3000).prop_map(|n| n.to_string()),
    ]
}

fn name() -> impl Strategy<Value = String> {
    let base = || prop::sample::select(NAMES);
    prop_oneof![
        3 => base().prop_map(String::from),
        2 => (base(), index()).prop_map(|(b, i)| format!("{b}.{i}")),
        2 => (base(), index(), prop::sample::select(FIELDS)).prop_map(|(b, i, f)| format!("{b}.{i}.{f}")),
        1 => "[A-Za-z.0-9]{0,20}",
    ]
}

/// Random pairs, half the time after a plausible core (so that the deeper paths of each action,
/// past its required parameters, are reached too).
fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    let core = [
        ("CheckId", "1001"),
        ("Type", "REPAIR"),
        ("OperationTaskInstances.1.InstanceId", "i-1"),
        ("InstanceIds.1", "i-2"),
        ("TaskId", "x"),
    ];
    (any::<bool>(), prop::collection::vec((name(), value()), 0..12)).prop_map(move |(with_core, random)| {
        let mut out: Vec<(String, String)> = Vec::new();
        if with_core {
            out.extend(core.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        }
        out.extend(random);
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_action_panics_or_answers_a_server_error(action in 0..OPERATIONS.len(), pairs in pairs()) {
        thread_local! {
            static WORLD: World = world();
        }
        let (name, op) = OPERATIONS[action];
        WORLD.with(|w| {
            let ctx = Ctx {
                store: &*w.store,
                engine: &w.engine,
                account_id: &w.account,
                settings: &w.settings,
                idempotency: &w.idempotency,
                origin: "http://127.0.0.1",
                key_id: "LTAIfuzz",
            };
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Params::new(pairs.clone()).and_then(|p| run(&ctx, name, op, &p))
            }));
            match outcome {
                Err(_) => panic!("{name} panicked on {pairs:?}"),
                Ok(Err(e)) => assert!(e.status < 500, "{name} answered {} {} on {pairs:?}", e.status, e.code),
                Ok(Ok(_)) => {}
            }
        });
    }

    #[test]
    fn decoders_take_anything(text in any::<String>(), bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let decoded = api::encoding::form_decode(&text);
        let _ = Params::new(decoded);
        let _ = api::signature::parse_v3_authorization(&text);
        let _ = api::time::parse_utc(&text);
        let _ = api::encoding::form_decode(&String::from_utf8_lossy(&bytes));
    }
}
