//! Micro-benchmark of rule evaluation: every check item of the catalog on a demo-like document.

use std::hint::black_box;

use catalog::{evaluate, Catalog};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use model::Document;

fn document() -> Document {
    [
        ("sshd.present", "true"),
        ("sshd.permitrootlogin", "yes"),
        ("sshd.maxauthtries", "6"),
        ("sshd.logingracetime", "2m"),
        ("sshd.x11forwarding", "yes"),
        ("file:/etc/ssh/sshd_config.mode", "0644"),
        ("file:/etc/shadow.mode", "0640"),
        ("file:/etc/passwd.mode", "0644"),
        ("login_defs.present", "true"),
        ("login_defs.PASS_MAX_DAYS", "99999"),
        ("login_defs.PASS_MIN_DAYS", "0"),
        ("login_defs.PASS_WARN_AGE", "7"),
        ("redis.present", "true"),
        ("redis.bind", "0.0.0.0"),
        ("redis.protected-mode", "no"),
        ("shadow.present", "true"),
        ("shadow.empty_password_accounts", ""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn bench(c: &mut Criterion) {
    let catalog = Catalog::builtin().unwrap();
    let checks: Vec<_> = catalog.all().collect();
    let doc = document();
    let mut g = c.benchmark_group("rule_evaluation");
    g.throughput(Throughput::Elements(checks.len() as u64));
    g.bench_function("whole_catalog_on_one_host", |b| {
        b.iter(|| {
            for check in &checks {
                black_box(evaluate(check, black_box(&doc)));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
