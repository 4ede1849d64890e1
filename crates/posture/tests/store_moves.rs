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

/// `tests/fixtures/v5-data` (see its README): written by the last release of schema 5, with
/// the admin's sealed key, a cloud account and a repair of web-01's redis.conf awaiting its
/// rollback.
#[test]
fn a_data_directory_of_the_schema_5_release_opens_and_its_repair_rolls_back_byte_for_byte() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) != 0 {
        // The snapshot recorded the file as root's; only root can give it back that owner.
        eprintln!("skipped: the v5 fixture's rollback needs root (the file's recorded owner)");
        return;
    }
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v5-data");
    let mut s = Server::unstarted(None);
    let data = s.data();
    common::copy_tree(&fixture, &data);
    // Git keeps neither owners nor modes: put back what the old release left.
    let conf = data.join("fleet").join(WEB01).join("etc/redis/redis.conf");
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(&conf, Some(0), Some(0)).unwrap();
    // The fixture was written in /tmp/v5fix: its instances' roots move with it.
    let db = rusqlite::Connection::open(data.join("posture.db")).unwrap();
    let version: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 5);
    let fleet = format!("{}/", data.join("fleet").display());
    db.execute("UPDATE instances SET locator = replace(locator, '/tmp/v5fix/data/fleet/', ?)", [&fleet]).unwrap();
    drop(db);

    s.spawn(&[]);
    // The sealed key signs; the cloud account is there; the repair still stands.
    let clouds = s.ok("DescribeCloudVendorAccountAKList", &[]);
    assert_eq!(clouds["CloudVendorAccountAKs"][0]["AuthId"], 1, "{clouds}");
    let store = store::Store::connect(&store::Location { data: data.clone(), ..Default::default() }).unwrap();
    let (_, secret) = store::CloudAccounts::cloud_keys(&store, &s.account_id, 1).unwrap().unwrap();
    assert_eq!(secret, "rx5jAKOQVjnmh8G65uk6iV9WyKIpcBD1cdTfKc5P", "the sealed secret opens");
    drop(store);
    let task = "01a2344851b8720fbba8df76acda8ae8";
    let root = s.ok(
        "SubmitOperationTask",
        &[
            ("CheckId", "1016"),
            ("Type", "ROLLBACK"),
            ("OperationTaskInstances.1.InstanceId", WEB01),
            ("OperationTaskInstances.1.TaskId", task),
        ],
    )["RootTaskId"]
        .as_str()
        .unwrap()
        .to_string();
    let done = s.wait_root(1016, &root)[0].clone();
    assert_eq!(done["Status"], "ROLL_BACK_VERIFIED", "{done}\n{}", s.log());
    assert_eq!(read(&conf), read(&fixture.join("original-redis.conf")), "byte for byte");
    // The item's task count, filled by the upgrade from the tasks it found (schema 21), and kept
    // by the rollback: the repair and its rollback.
    let listed = s.ok("ListOperationTask", &[("CheckId", "1016")]);
    assert_eq!(listed["PageInfo"]["TotalCount"], 2, "{listed}");
}
