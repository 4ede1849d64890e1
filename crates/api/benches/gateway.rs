//! Micro-benchmarks of the gateway's per-request work: verifying a v1 and a v3 signature (the
//! canonicalisation, hashing and HMAC a request costs), and decoding a flat query.

use std::hint::black_box;

use api::encoding::form_decode;
use api::params::Params;
use api::signature::{
    sha256_hex, v1_sign, v1_string_to_sign, v3_canonical_request, v3_sign, v3_string_to_sign, EMPTY_SHA256,
};
use criterion::{criterion_group, criterion_main, Criterion};

/// The SubmitOperationTask of rpc-protocol.md §3.5 (V3-SAS), as it arrives.
const QUERY: &str = "CheckId=123&DimensionType=INSTANCE&OperationTaskInstances.1.InstanceId=i-abc001&OperationTaskInstances.1.RegionId=cn-hangzhou&OperationTaskInstances.1.Vendor=0&OperationTaskInstances.2.InstanceId=i-abc002&OperationTaskInstances.2.RegionId=cn-hangzhou&OperationTaskInstances.2.Vendor=0&RepairTempParam.1.Name=port&RepairTempParam.1.Value=22+2%2A2~%2Fx&Type=REPAIR";

fn headers() -> Vec<(String, String)> {
    [
        ("accept", "application/json"),
        ("host", "127.0.0.1:18081"),
        ("user-agent", "AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2"),
        ("x-acs-action", "SubmitOperationTask"),
        ("x-acs-content-sha256", EMPTY_SHA256),
        ("x-acs-credentials-provider", "static_ak"),
        ("x-acs-date", "2025-01-02T03:04:05Z"),
        ("x-acs-signature-nonce", "3f1f0b3c9d2e4a5b8c7d6e5f4a3b2c1d"),
        ("x-acs-version", "2018-12-03"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn bench(c: &mut Criterion) {
    let h = headers();
    let signed: Vec<String> = h.iter().map(|(k, _)| k.clone()).collect();
    c.bench_function("verify_v3_submit_operation_task", |b| {
        b.iter(|| {
            let query = form_decode(black_box(QUERY));
            let canonical = v3_canonical_request("POST", "/", &query, &h, &signed, &sha256_hex(b""));
            let sig = v3_sign("testAccessKeySecret", &v3_string_to_sign(&canonical));
            assert_eq!(sig, "659962a166837c65f168d0929c98ff8782d1ad7edaf2f6e870ae01e582eb1b78");
        })
    });
    let v1_wire = format!("{QUERY}&Action=SubmitOperationTask&Format=json&Version=2018-12-03&Timestamp=2025-01-02T03%3A04%3A05Z&SignatureNonce=3f1f0b3c9d2e4a5b8c7d6e5f4a3b2c1d&SignatureMethod=HMAC-SHA1&SignatureVersion=1.0&AccessKeyId=testAccessKeyId");
    c.bench_function("verify_v1_submit_operation_task", |b| {
        b.iter(|| {
            let params = form_decode(black_box(&v1_wire));
            black_box(v1_sign("testAccessKeySecret", &v1_string_to_sign("POST", &params)))
        })
    });
    c.bench_function("decode_flat_query_submit_operation_task", |b| {
        b.iter(|| {
            let p = Params::new(form_decode(black_box(QUERY))).unwrap();
            let instances = p.objects("OperationTaskInstances").unwrap();
            let params = p.objects("RepairTempParam").unwrap();
            black_box((p.int("CheckId").unwrap(), instances.len(), params.len()))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
