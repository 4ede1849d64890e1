//! Bench fleets: instances registered straight into the store (set-up, not measured), either
//! without files (fan-out, api) or as host roots with demo-like configuration (repair, assess).

use std::path::Path;
use store::{Instances, NewInstance, Store};

use model::Vendor;

/// Registers `n` instances `<prefix>000001…` in batches (so set-up never holds a million rows).
pub fn register(
    store: &Store,
    account: &str,
    n: usize,
    prefix: &str,
    root: impl Fn(usize) -> String,
) -> Result<(), String> {
    const BATCH: usize = 50_000;
    for start in (0..n).step_by(BATCH) {
        let batch: Vec<NewInstance> = (start..(start + BATCH).min(n))
            .map(|i| NewInstance {
                vendor: Vendor::Aliyun,
                region_id: "cn-bench".into(),
                instance_id: format!("{prefix}{i:07}"),
                instance_name: format!("bench-{i}"),
                connector: "host".into(),
                locator: root(i),
                os_type: "linux".into(),
                live: None,
            })
            .collect();
        store.upsert_instances(account, &batch).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Writes `n` host roots under `dir` with the demo fleet's files (cycling through its servers).
pub fn write_hosts(dir: &Path, n: usize) -> Result<(), String> {
    let template = dir.join("template");
    let demo = crate::demo::build(&template).map_err(|e| e.to_string())?;
    for i in 0..n {
        let from = Path::new(&demo[i % demo.len()].locator);
        copy_tree(from, &dir.join(format!("h{i:07}"))).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A copy of a host's tree: files with their modes, directories with theirs, links as links
/// (a unit's link into /lib need not exist in the copy).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        let kind = e.file_type()?;
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(e.path())?, &target)?;
        } else if kind.is_dir() {
            copy_tree(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), &target)?;
        }
    }
    std::fs::set_permissions(to, std::fs::metadata(from)?.permissions())
}

/// Every regular file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => out.push(e.path()),
                _ => {}
            }
        }
    }
    out
}
