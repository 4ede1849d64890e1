//! Moving an installation: a SQLite data directory copied to PostgreSQL keeps its keys, its
//! sealed secrets and a repair that still rolls back byte for byte; a node whose master key is
//! not the database's is refused at start.

mod common;

use common::{posture, read, Server};
use store::testing::TestDatabase;

const WEB01: &str = "i-bp1a2c3d4e5f6g7h8i9j";

#[test]
fn a_sqlite_installation_copied_to_postgres_rolls_back_what_it_repaired_there() {
    let Some(db) = TestDatabase::create() else { return };
    let mut s = Server::start(&[]);
    let conf = s.fleet(WEB01, "etc/redis/redis.conf");
    let original = read(&conf);
    let root = s.ok(
        "SubmitOperationTask",
        &[
            ("CheckId", "1016"),
            ("Type", "REPAIR"),
            ("OperationTaskInstances.1.InstanceId", WEB01),
            ("RepairTempParam.1.Name", "IPPort"),
            ("RepairTempParam.1.Value", "127.0.0.1:6379"),
        ],
    )["RootTaskId"]
        .as_str()
        .unwrap()
        .to_string();
    let repair = s.wait_root(1016, &root)[0].clone();
    assert_eq!(repair["Status"], "REPAIR_SUCCESS_VERIFIED");
    let before = s.ok("ListCheckResult", &[("PageSize", "100")]);
    s.stop();

    let data = s.data();
    let (code, report, err) = posture(&["store", "copy", "--from", data.to_str().unwrap(), "--to", &db.url]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["Copied"]["tasks"], 1, "{report}");
    // A second copy into the same database is refused, and changes nothing.
    let (code, _, err) = posture(&["store", "copy", "--from", data.to_str().unwrap(), "--to", &db.url]);
    assert_eq!(code, 1);
    assert!(err.contains("already holds posture data"), "{err}");

    // Served from PostgreSQL now: the same key signs, the same results, and the rollback.
    std::fs::rename(data.join("posture.db"), data.join("posture.db.moved")).unwrap();
    s.spawn(&["--database", &db.url]);
    assert!(s.log().contains("backend=\"postgres\"") || s.log().contains("postgres"), "{}", s.log());
    let after = s.ok("ListCheckResult", &[("PageSize", "100")]);
    assert_eq!(after["Checks"], before["Checks"]);
    let root = s.ok(
        "SubmitOperationTask",
        &[
            ("CheckId", "1016"),
            ("Type", "ROLLBACK"),
            ("OperationTaskInstances.1.InstanceId", WEB01),
            ("OperationTaskInstances.1.TaskId", repair["TaskId"].as_str().unwrap()),
        ],
    )["RootTaskId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s.wait_root(1016, &root)[0]["Status"], "ROLL_BACK_VERIFIED");
    assert_eq!(read(&conf), original, "the rollback is byte-identical");
    s.stop();

    // Another master key: refused at start, with the reason.
    let other = s.dir.path().join("other.key");
    std::fs::write(&other, format!("{}\n", "ab".repeat(32))).unwrap();
    let (code, _, err) = posture(&[
        "accounts",
        "list",
        "--data",
        data.to_str().unwrap(),
        "--database",
        &db.url,
        "--master-key",
        other.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("master key does not match"), "{err}");
}
