use std::fmt;

/// The provider an instance lives on. The numeric codes are the ones SubmitOperationTask sends
/// (`OperationTaskInstances.N.Vendor`); 3/4/5/7 follow the majority mapping of the SDK texts
/// (3 Tencent, 4 Huawei, 5 Azure, 7 AWS), see docs/api.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Vendor {
    /// 0 — Alibaba Cloud (`ALIYUN`)
    Aliyun,
    /// 1 — outside any cloud / unrecognised provider
    Outside,
    /// 2 — IDC (own data centre)
    Idc,
    /// 3 — Tencent Cloud (`TENCENT`)
    Tencent,
    /// 4 — Huawei Cloud (`HUAWEICLOUD`)
    Huawei,
    /// 5 — Microsoft Azure (`MICROSOFT`)
    Azure,
    /// 7 — Amazon Web Services (`AWS`)
    Aws,
    /// 8 — Alibaba Cloud lightweight asset (Simple Application Server)
    Lightweight,
}

impl Vendor {
    /// Every vendor, in code order.
    pub const ALL: [Vendor; 8] = [
        Vendor::Aliyun,
        Vendor::Outside,
        Vendor::Idc,
        Vendor::Tencent,
        Vendor::Huawei,
        Vendor::Azure,
        Vendor::Aws,
        Vendor::Lightweight,
    ];

    /// The numeric code.
    pub fn code(self) -> i64 {
        match self {
            Vendor::Aliyun => 0,
            Vendor::Outside => 1,
            Vendor::Idc => 2,
            Vendor::Tencent => 3,
            Vendor::Huawei => 4,
            Vendor::Azure => 5,
            Vendor::Aws => 7,
            Vendor::Lightweight => 8,
        }
    }

    /// From the numeric code.
    pub fn from_code(code: i64) -> Option<Vendor> {
        Vendor::ALL.into_iter().find(|v| v.code() == code)
    }

    /// The string code. The reference defines one only for the clouds; posture names the others
    /// `OUTSIDE`, `IDC` and `LIGHTWEIGHT` (documented in docs/api.md). Lightweight servers are
    /// Alibaba Cloud's, so filters by `ALIYUN` include them (see [`Vendor::matches_name`]).
    pub fn name(self) -> &'static str {
        match self {
            Vendor::Aliyun => "ALIYUN",
            Vendor::Outside => "OUTSIDE",
            Vendor::Idc => "IDC",
            Vendor::Tencent => "TENCENT",
            Vendor::Huawei => "HUAWEICLOUD",
            Vendor::Azure => "MICROSOFT",
            Vendor::Aws => "AWS",
            Vendor::Lightweight => "LIGHTWEIGHT",
        }
    }

    /// The display name.
    pub fn show_name(self) -> &'static str {
        match self {
            Vendor::Aliyun => "Aliyun",
            Vendor::Outside => "Outside Cloud",
            Vendor::Idc => "IDC",
            Vendor::Tencent => "Tencent Cloud",
            Vendor::Huawei => "Huawei Cloud",
            Vendor::Azure => "Microsoft Azure",
            Vendor::Aws => "AWS",
            Vendor::Lightweight => "Simple Application Server",
        }
    }

    /// Parses either form: a numeric code (`"0"`, `"7"`) or a string code (`ALIYUN`, `aws`),
    /// case-insensitively. The reference sends the numeric form in SubmitOperationTask and
    /// documents the string form in ListOperationTask; posture accepts both everywhere.
    pub fn parse(s: &str) -> Option<Vendor> {
        let s = s.trim();
        if let Ok(n) = s.parse::<i64>() {
            return Vendor::from_code(n);
        }
        Vendor::ALL.into_iter().find(|v| v.name().eq_ignore_ascii_case(s))
    }

    /// Whether a `Vendors` filter entry names this vendor. `ALIYUN` covers lightweight servers.
    pub fn matches_name(self, filter: &str) -> bool {
        match Vendor::parse(filter) {
            Some(Vendor::Aliyun) => matches!(self, Vendor::Aliyun | Vendor::Lightweight),
            Some(v) => v == self,
            None => false,
        }
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_parse_to_the_same_vendor() {
        for v in Vendor::ALL {
            assert_eq!(Vendor::parse(&v.code().to_string()), Some(v));
            assert_eq!(Vendor::parse(v.name()), Some(v));
            assert_eq!(Vendor::parse(&v.name().to_lowercase()), Some(v));
        }
        assert_eq!(Vendor::parse("6"), None);
        assert_eq!(Vendor::parse("GCP"), None);
        assert_eq!(Vendor::parse(""), None);
    }

    #[test]
    fn aliyun_filter_includes_lightweight() {
        assert!(Vendor::Lightweight.matches_name("ALIYUN"));
        assert!(!Vendor::Idc.matches_name("ALIYUN"));
        assert!(Vendor::Aws.matches_name("7"));
    }
}

/// One resource a cloud account's discovery found; it becomes (or stays) an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudAsset {
    /// The region (`global` for account-wide settings that have none).
    pub region_id: String,
    /// The resource id (`sg-…`, a bucket name, the account id for account-level settings).
    pub instance_id: String,
    /// A readable name.
    pub instance_name: String,
    /// The connector kind that reads and repairs it (matches check items' `asset`).
    pub connector: String,
    /// What the connector needs besides id and region.
    pub locator: String,
}
