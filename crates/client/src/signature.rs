//! Signatures v1 (HMAC-SHA1, parameters) and v3 (ACS3-HMAC-SHA256, headers), as the official
//! SDKs compute them (rpc-protocol.md §2 and §3). The same functions sign (the `posture call`
//! client) and verify (the gateway), so the two cannot drift apart.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::encoding::pop_encode;

/// SHA-256 of an empty body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The v3 algorithm name.
pub const V3_ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Compares without leaking where the first difference is.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn sorted_encoded<'a>(params: impl Iterator<Item = &'a (String, String)>) -> String {
    let mut pairs: Vec<(String, String)> = params.map(|(k, v)| (pop_encode(k), pop_encode(v))).collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

// ---------------------------------------------------------------- v1

/// The v1 string to sign: `METHOD&%2F&` + pop(canonicalized query of every parameter but
/// `Signature`, empty values kept).
pub fn v1_string_to_sign(method: &str, params: &[(String, String)]) -> String {
    let canonical = sorted_encoded(params.iter().filter(|(k, _)| k != "Signature"));
    format!("{}&%2F&{}", method.to_ascii_uppercase(), pop_encode(&canonical))
}

/// Base64 HMAC-SHA1 with the key `secret&`.
pub fn v1_sign(secret: &str, string_to_sign: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(format!("{secret}&").as_bytes()).expect("HMAC takes any key");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

// ---------------------------------------------------------------- v3

/// The parts of a v3 `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub struct V3Authorization {
    /// The algorithm (`ACS3-HMAC-SHA256`).
    pub algorithm: String,
    /// `Credential` (the AccessKeyId).
    pub key_id: String,
    /// `SignedHeaders`, lower case.
    pub signed_headers: Vec<String>,
    /// `Signature`.
    pub signature: String,
}

/// Parses `ACS3-HMAC-SHA256 Credential=…,SignedHeaders=…,Signature=…` (spaces after commas
/// tolerated). None if a part is missing.
pub fn parse_v3_authorization(h: &str) -> Option<V3Authorization> {
    let (algorithm, rest) = h.trim().split_once(' ')?;
    let (mut key_id, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k.trim() {
            "Credential" => key_id = Some(v.trim().to_string()),
            "SignedHeaders" => signed = Some(v.trim().split(';').map(|s| s.trim().to_ascii_lowercase()).collect()),
            "Signature" => signature = Some(v.trim().to_string()),
            _ => {}
        }
    }
    Some(V3Authorization {
        algorithm: algorithm.to_string(),
        key_id: key_id.filter(|k: &String| !k.is_empty())?,
        signed_headers: signed?,
        signature: signature?,
    })
}

/// The v3 canonical request. `headers` are (lower-case name, value) as received, repeats
/// allowed; `query` is the decoded query string parameters (not the body).
pub fn v3_canonical_request(
    method: &str,
    path: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    signed_headers: &[String],
    payload_hash: &str,
) -> String {
    let mut names: Vec<&str> = signed_headers.iter().map(String::as_str).collect();
    names.sort_unstable();
    names.dedup();
    let mut canonical_headers = String::new();
    for name in &names {
        let mut values: Vec<&str> = headers.iter().filter(|(k, _)| k == name).map(|(_, v)| v.trim()).collect();
        values.sort_unstable();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        method.to_ascii_uppercase(),
        path,
        sorted_encoded(query.iter()),
        canonical_headers,
        names.join(";"),
        payload_hash
    )
}

/// `ACS3-HMAC-SHA256\n` + hex SHA-256 of the canonical request.
pub fn v3_string_to_sign(canonical_request: &str) -> String {
    format!("{V3_ALGORITHM}\n{}", sha256_hex(canonical_request.as_bytes()))
}

/// Hex HMAC-SHA256 with the raw secret.
pub fn v3_sign(secret: &str, string_to_sign: &str) -> String {
    hmac_sha256_hex(secret, string_to_sign.as_bytes())
}

/// Hex HMAC-SHA256 of `data` keyed by `secret` (also how webhook deliveries are signed).
pub fn hmac_sha256_hex(secret: &str, data: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(data);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    //! Every vector of rpc-protocol.md §2.6 (V1-A … V1-F) and §3.5 (V3-A, V3-SAS-MIN, V3-SAS,
    //! V3-BODY), computed by the official SDKs.
    use super::*;
    use crate::encoding::form_decode;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn v1(method: &str, params: &[(String, String)], secret: &str) -> String {
        v1_sign(secret, &v1_string_to_sign(method, params))
    }

    #[test]
    fn v1_a_published_ecs_example() {
        let params = p(&[
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2014-05-26"),
        ]);
        assert_eq!(
            v1_string_to_sign("GET", &params),
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
        );
        assert_eq!(v1("GET", &params, "testsecret"), "OLeaidS1JvxuMvnyHOwuJ+uX5qY=");
    }

    #[test]
    fn v1_b_published_v2_page_example() {
        let params = p(&[
            ("AccessKeyId", "testid"),
            ("Action", "DescribeDedicatedHosts"),
            ("Format", "JSON"),
            ("RegionId", "cn-beijing"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "edb2b34af0af9a6d14deaf7c1a5315eb"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2023-03-13T08:34:30Z"),
            ("Version", "2014-05-26"),
        ]);
        assert_eq!(v1("GET", &params, "testsecret"), "9NaGiOspFP5UPcwX8Iwt2YJXXuk=");
    }

    const V1_SAS_WIRE: &str = "Action=SubmitOperationTask&Format=json&Version=2018-12-03&Timestamp=2025-01-02T03%3A04%3A05Z&SignatureNonce=3f1f0b3c9d2e4a5b8c7d6e5f4a3b2c1d&CheckId=123&DimensionType=INSTANCE&OperationTaskInstances.1.InstanceId=i-abc001&OperationTaskInstances.1.RegionId=cn-hangzhou&OperationTaskInstances.1.Vendor=0&OperationTaskInstances.2.InstanceId=i-abc002&OperationTaskInstances.2.RegionId=cn-hangzhou&OperationTaskInstances.2.Vendor=0&RepairTempParam.1.Name=port&RepairTempParam.1.Value=22+2%2A2~%2Fx&Type=REPAIR&SignatureMethod=HMAC-SHA1&SignatureVersion=1.0&AccessKeyId=testAccessKeyId&Signature=9xQx7kjoO1qp9LXxIMgvGDgoY4w%3D";

    #[test]
    fn v1_c_sas_vector_from_the_raw_wire_request() {
        let params = form_decode(V1_SAS_WIRE);
        assert_eq!(params.len(), 20);
        assert_eq!(
            v1_string_to_sign("POST", &params),
            "POST&%2F&AccessKeyId%3DtestAccessKeyId%26Action%3DSubmitOperationTask%26CheckId%3D123%26DimensionType%3DINSTANCE%26Format%3Djson%26OperationTaskInstances.1.InstanceId%3Di-abc001%26OperationTaskInstances.1.RegionId%3Dcn-hangzhou%26OperationTaskInstances.1.Vendor%3D0%26OperationTaskInstances.2.InstanceId%3Di-abc002%26OperationTaskInstances.2.RegionId%3Dcn-hangzhou%26OperationTaskInstances.2.Vendor%3D0%26RepairTempParam.1.Name%3Dport%26RepairTempParam.1.Value%3D22%25202%252A2~%252Fx%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3f1f0b3c9d2e4a5b8c7d6e5f4a3b2c1d%26SignatureVersion%3D1.0%26Timestamp%3D2025-01-02T03%253A04%253A05Z%26Type%3DREPAIR%26Version%3D2018-12-03"
        );
        let sig = params.iter().find(|(k, _)| k == "Signature").unwrap().1.clone();
        assert_eq!(sig, "9xQx7kjoO1qp9LXxIMgvGDgoY4w=");
        assert_eq!(v1("POST", &params, "testAccessKeySecret"), sig);
    }

    #[test]
    fn v1_d_utf8_and_reserved_characters() {
        let params = p(&[
            ("AccessKeyId", "testAccessKeyId"),
            ("Action", "SubmitOperationTask"),
            ("CheckId", "123"),
            ("Format", "JSON"),
            ("RepairTempParam.1.Value", "a b*c~/中!'()"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3f1f0b3c9d2e4a5b8c7d6e5f4a3b2c1d"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2025-01-02T03:04:05Z"),
            ("Type", "REPAIR"),
            ("Version", "2018-12-03"),
        ]);
        assert_eq!(
            v1_string_to_sign("POST", &params),
            "POST&%2F&AccessKeyId%3DtestAccessKeyId%26Action%3DSubmitOperationTask%26CheckId%3D123%26Format%3DJSON%26RepairTempParam.1.Value%3Da%2520b%252Ac~%252F%25E4%25B8%25AD%2521%2527%2528%2529%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3f1f0b3c9d2e4a5b8c7d6e5f4a3b2c1d%26SignatureVersion%3D1.0%26Timestamp%3D2025-01-02T03%253A04%253A05Z%26Type%3DREPAIR%26Version%3D2018-12-03"
        );
        assert_eq!(v1("POST", &params, "testAccessKeySecret"), "l9LAh3/132Y0tdg0KI9PEy8Rslw=");
    }

    #[test]
    fn v1_e_pop_core_everything_in_the_body() {
        let body = "AccessKeyId=testAccessKeyId&Action=SubmitOperationTask&CheckId=123&DimensionType=INSTANCE&Format=JSON&OperationTaskInstances.1.InstanceId=i-abc001&OperationTaskInstances.1.RegionId=cn-hangzhou&OperationTaskInstances.1.Vendor=0&OperationTaskInstances.2.InstanceId=i-abc002&OperationTaskInstances.2.RegionId=cn-hangzhou&OperationTaskInstances.2.Vendor=0&RepairTempParam.1.Name=port&RepairTempParam.1.Value=22%202%2A2~%2Fx&SignatureMethod=HMAC-SHA1&SignatureNonce=3f1f0b3c9d2e4a5b8c7d6e5f4a3b2c1d&SignatureVersion=1.0&Timestamp=2025-01-02T03%3A04%3A05Z&Type=REPAIR&Version=2018-12-03&Signature=O6jziWZ%2FFvp%2FukzxkIZp5g2iq%2FE%3D";
        let params = form_decode(body);
        assert_eq!(v1("POST", &params, "testAccessKeySecret"), "O6jziWZ/Fvp/ukzxkIZp5g2iq/E=");
        assert_eq!(v1("GET", &params, "testAccessKeySecret"), "w3AgUJ7fm8iHSHFVHq7kJi3C7l0=");
    }

    #[test]
    fn v1_f_aliyunsdkcore_with_region_and_empty_signature_type() {
        let query = "CheckId=123&Type=REPAIR&DimensionType=INSTANCE&OperationTaskInstances.1.InstanceId=i-abc001&OperationTaskInstances.1.RegionId=cn-hangzhou&OperationTaskInstances.1.Vendor=0&OperationTaskInstances.2.InstanceId=i-abc002&OperationTaskInstances.2.RegionId=cn-hangzhou&OperationTaskInstances.2.Vendor=0&RepairTempParam.1.Name=port&RepairTempParam.1.Value=22%202%2A2~%2Fx&Version=2018-12-03&Action=SubmitOperationTask&Format=JSON&RegionId=cn-shanghai&Timestamp=2025-01-02T03%3A04%3A05Z&SignatureMethod=HMAC-SHA1&SignatureType=&SignatureVersion=1.0&SignatureNonce=3f1f0b3c9d2e4a5b8c7d6e5f4a3b2c1d&AccessKeyId=testAccessKeyId&Signature=fsskZg9HGylfD7gnlYp7mHcWsEE%3D";
        let params = form_decode(query);
        assert!(v1_string_to_sign("POST", &params).contains("%26SignatureType%3D%26"));
        assert_eq!(v1("POST", &params, "testAccessKeySecret"), "fsskZg9HGylfD7gnlYp7mHcWsEE=");
    }

    fn v3_check(
        method: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        auth: &str,
        secret: &str,
        canonical_sha: Option<&str>,
    ) {
        let a = parse_v3_authorization(auth).unwrap();
        assert_eq!(a.algorithm, V3_ALGORITHM);
        let headers: Vec<(String, String)> =
            headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())).collect();
        let hash = sha256_hex(body);
        let canonical = v3_canonical_request(method, "/", &form_decode(query), &headers, &a.signed_headers, &hash);
        if let Some(h) = canonical_sha {
            assert_eq!(sha256_hex(canonical.as_bytes()), h, "{canonical}");
        }
        assert_eq!(v3_sign(secret, &v3_string_to_sign(&canonical)), a.signature);
    }

    #[test]
    fn v3_a_published_run_instances_example() {
        v3_check(
            "POST",
            "ImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai",
            &[
                ("host", "ecs.cn-shanghai.aliyuncs.com"),
                ("x-acs-action", "RunInstances"),
                ("x-acs-version", "2014-05-26"),
                ("x-acs-date", "2023-10-26T10:22:32Z"),
                ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
                ("x-acs-content-sha256", EMPTY_SHA256),
            ],
            b"",
            "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0",
            "YourAccessKeySecret",
            Some("7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"),
        );
    }

    #[test]
    fn v3_sas_min_awkward_characters() {
        let headers = [
            ("host", "tds.cn-shanghai.aliyuncs.com"),
            ("x-acs-action", "SubmitOperationTask"),
            ("x-acs-version", "2018-12-03"),
            ("x-acs-date", "2025-01-02T03:04:05Z"),
            ("x-acs-signature-nonce", "3f1f0b3c9d2e4a5b8c7d6e5f4a3b2c1d"),
            ("x-acs-content-sha256", EMPTY_SHA256),
        ];
        let signed: Vec<String> = headers.iter().map(|h| h.0.to_string()).collect();
        let owned: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let query = p(&[("CheckId", "123"), ("Type", "REPAIR"), ("RepairTempParam.1.Value", "a b*c~/中")]);
        let canonical = v3_canonical_request("POST", "/", &query, &owned, &signed, EMPTY_SHA256);
        assert_eq!(canonical, "POST\n/\nCheckId=123&RepairTempParam.1.Value=a%20b%2Ac~%2F%E4%B8%AD&Type=REPAIR\nhost:tds.cn-shanghai.aliyuncs.com\nx-acs-action:SubmitOperationTask\nx-acs-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\nx-acs-date:2025-01-02T03:04:05Z\nx-acs-signature-nonce:3f1f0b3c9d2e4a5b8c7d6e5f4a3b2c1d\nx-acs-version:2018-12-03\n\nhost;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "21590e2cfd546cd07ac7625a351f222288d840ad51b031c19922474293c6da39"
        );
        assert_eq!(
            v3_sign("testAccessKeySecret", &v3_string_to_sign(&canonical)),
            "54eec8f5355bb63489f365a3d306926ba39157d042fb26871ac0d7f13ea15f8a"
        );
    }

    const SDK_HEADERS: [(&str, &str); 7] = [
        ("x-acs-version", "2018-12-03"),
        ("user-agent", "AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2"),
        ("x-acs-date", "2025-01-02T03:04:05Z"),
        ("x-acs-signature-nonce", "3f1f0b3c9d2e4a5b8c7d6e5f4a3b2c1d"),
        ("accept", "application/json"),
        ("x-acs-credentials-provider", "static_ak"),
        ("Accept-Encoding", "identity"),
    ];

    #[test]
    fn v3_sas_main_vector_from_the_raw_request() {
        let mut headers = SDK_HEADERS.to_vec();
        headers.extend([
            ("host", "127.0.0.1:18081"),
            ("x-acs-action", "SubmitOperationTask"),
            ("x-acs-content-sha256", EMPTY_SHA256),
            ("Content-Length", "0"),
        ]);
        v3_check(
            "POST",
            "CheckId=123&DimensionType=INSTANCE&OperationTaskInstances.1.InstanceId=i-abc001&OperationTaskInstances.1.RegionId=cn-hangzhou&OperationTaskInstances.1.Vendor=0&OperationTaskInstances.2.InstanceId=i-abc002&OperationTaskInstances.2.RegionId=cn-hangzhou&OperationTaskInstances.2.Vendor=0&RepairTempParam.1.Name=port&RepairTempParam.1.Value=22+2%2A2~%2Fx&Type=REPAIR",
            &headers,
            b"",
            "ACS3-HMAC-SHA256 Credential=testAccessKeyId,SignedHeaders=accept;host;user-agent;x-acs-action;x-acs-content-sha256;x-acs-credentials-provider;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=659962a166837c65f168d0929c98ff8782d1ad7edaf2f6e870ae01e582eb1b78",
            "testAccessKeySecret",
            Some("0b798d5998703fffff1d356cba25a4da30e16cdbc451b1224e9a636e9b743316"),
        );
    }

    #[test]
    fn v3_body_form_parameters_are_covered_by_the_payload_hash() {
        let body = b"From=sas&InsertMarkMissParam=%5B%7B%22field%22%3A%22file+path%22%2C%22operate%22%3A%22contains%22%2C%22fieldValue%22%3A%22a+b%22%7D%5D&Lang=zh";
        assert_eq!(body.len(), 142);
        assert_eq!(sha256_hex(body), "36ab5fd50dd7d0ac2bc4fb9d19e4ac6d2088d8adfd593bb1ed16f0aaa5c8f33a");
        let mut headers = SDK_HEADERS.to_vec();
        headers.extend([
            ("host", "127.0.0.1:18085"),
            ("x-acs-action", "ModifySecurityEventMarkMissIndividually"),
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-acs-content-sha256", "36ab5fd50dd7d0ac2bc4fb9d19e4ac6d2088d8adfd593bb1ed16f0aaa5c8f33a"),
        ]);
        v3_check(
            "POST",
            "SourceIp=1.2.3.4",
            &headers,
            body,
            "ACS3-HMAC-SHA256 Credential=testAccessKeyId,SignedHeaders=accept;content-type;host;user-agent;x-acs-action;x-acs-content-sha256;x-acs-credentials-provider;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=11a285367402fb1491ff53a61095ac4ed10959a8cd9ae6f75291f4a737e7511a",
            "testAccessKeySecret",
            Some("b0a82e134bf404abc64875e649f35e4778220944f03928b1de2645ff843cf8de"),
        );
    }

    #[test]
    fn authorization_parsing_tolerates_spaces_and_refuses_missing_parts() {
        let a = parse_v3_authorization("ACS3-HMAC-SHA256 Credential=k, SignedHeaders=host;x-acs-date, Signature=ab")
            .unwrap();
        assert_eq!(a.key_id, "k");
        assert_eq!(a.signed_headers, vec!["host", "x-acs-date"]);
        assert!(parse_v3_authorization("ACS3-HMAC-SHA256 Credential=k,Signature=ab").is_none());
        assert!(parse_v3_authorization("ACS3-HMAC-SHA256").is_none());
        assert!(parse_v3_authorization("").is_none());
    }
}
