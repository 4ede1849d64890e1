//! Repair parameters: their types (`TypeDefine`), how they are supplied (`UsageType`) and how a
//! supplied value is validated. Values end up inside configuration files, so validation is
//! strict: no control characters ever, and every type has a closed format.

use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

use crate::Text;

/// The type of a repair parameter, rendered as the `TypeDefine` JSON of GetCheckDetail.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type")]
pub enum ParamType {
    /// An IPv4 or IPv6 address.
    #[serde(rename = "IP")]
    Ip,
    /// A TCP/UDP port, 1–65535.
    #[serde(rename = "PORT")]
    Port,
    /// `ip:port`; IPv6 in brackets (`[::1]:6379`).
    #[serde(rename = "IP:PORT")]
    IpPort,
    /// `address/prefix`.
    #[serde(rename = "CIDR")]
    Cidr,
    /// A decimal integer within `range` (inclusive).
    #[serde(rename = "NUMBER")]
    Number {
        /// `[min, max]`
        range: [i64; 2],
    },
    /// One of `values`.
    #[serde(rename = "ENUM")]
    Enum {
        /// The allowed values.
        values: Vec<String>,
    },
    /// `true` or `false` (any case; canonically lower case).
    #[serde(rename = "BOOL")]
    Bool,
    /// A string matching `pattern` as a whole (regular expression).
    #[serde(rename = "STRING")]
    String {
        /// The pattern, implicitly anchored at both ends.
        pattern: String,
    },
}

/// How a parameter's value is obtained (`RepairConfigs[].UsageType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u8")]
pub enum UsageType {
    /// 1 — derived from the asset; never supplied by the caller.
    Asset = 1,
    /// 2 — configured by the user; has a default, may be overridden per submission.
    User = 2,
    /// 3 — supplied at submit time in `RepairTempParam`.
    Temp = 3,
}

impl TryFrom<u8> for UsageType {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, String> {
        match v {
            1 => Ok(UsageType::Asset),
            2 => Ok(UsageType::User),
            3 => Ok(UsageType::Temp),
            _ => Err(format!("usage type {v} is not 1, 2 or 3")),
        }
    }
}

/// One repair parameter of a check item.
#[derive(Clone, Debug, Deserialize)]
pub struct ParamSpec {
    /// Unique within the check item; the `RepairTempParam.N.Name` that sets it.
    pub name: String,
    /// Display name.
    pub show_name: Text,
    /// How the value is obtained.
    pub usage: UsageType,
    /// The value's type.
    #[serde(rename = "type_define")]
    pub kind: ParamType,
    /// Used when the caller gives no value.
    #[serde(default)]
    pub default: Option<String>,
    /// The caller must give a value (`EmptyParamSwitch` 1).
    #[serde(default)]
    pub required: bool,
}

/// Why a parameter value was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum ParamError {
    /// A required parameter has no value.
    Missing(String),
    /// The value does not match the type, or the name is not a parameter the caller may set.
    Format(String),
    /// The value has the right form but would defeat the repair (name, why).
    Meaning(String, String),
}

/// Why a value was refused by its type.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not of the type's form.
    Form,
    /// Of the right form, but it would leave the asset exposed; says why.
    Meaning(String),
}

/// Addresses a service must not be bound to by a repair meant to stop exposing it: every
/// address (`0.0.0.0`, `::`, and `::ffff:0.0.0.0`, which Linux treats as the IPv4 any
/// address), broadcast, and multicast (a TCP service cannot listen there: the repair would
/// verify and the service fail to start).
fn exposing_address(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    if ip.is_unspecified() {
        Some("is the unspecified address: the service would listen on every interface")
    } else if ip.is_multicast() {
        Some("is a multicast address: a TCP service cannot listen on it")
    } else if matches!(ip, IpAddr::V4(v4) if v4.is_broadcast()) {
        Some("is the broadcast address")
    } else {
        None
    }
}

/// Shortest prefix accepted for a CIDR that lets sources in: anything wider is a sizable share
/// of the Internet, which is what the repairs that take a CIDR exist to close.
const MIN_PREFIX_V4: u8 = 8;
const MIN_PREFIX_V6: u8 = 32;

/// IPv6 ranges that carry the IPv4 Internet inside them (IPv4-compatible, IPv4-mapped, NAT64):
/// a CIDR overlapping them could open to every IPv4 source under an IPv6 spelling.
const IPV4_IN_IPV6: [(std::net::Ipv6Addr, u8); 3] = [
    (std::net::Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96),
    (std::net::Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96),
    (std::net::Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96),
];

impl ParamType {
    /// The `TypeDefine` JSON string.
    pub fn type_define(&self) -> String {
        let v = match self {
            ParamType::Ip => serde_json::json!({"type": "IP"}),
            ParamType::Port => serde_json::json!({"type": "PORT"}),
            ParamType::IpPort => serde_json::json!({"type": "IP:PORT"}),
            ParamType::Cidr => serde_json::json!({"type": "CIDR"}),
            ParamType::Number { range } => serde_json::json!({"type": "NUMBER", "range": range}),
            ParamType::Enum { values } => serde_json::json!({"type": "ENUM", "values": values}),
            ParamType::Bool => serde_json::json!({"type": "BOOL"}),
            ParamType::String { pattern } => {
                serde_json::json!({"type": "STRING", "pattern": pattern})
            }
        };
        v.to_string()
    }

    /// Whether the type itself is well formed (a valid range, values, pattern).
    pub fn validate_definition(&self) -> Result<(), String> {
        match self {
            ParamType::Number { range } if range[0] > range[1] => Err("range is empty".into()),
            ParamType::Enum { values } if values.is_empty() => Err("no enum values".into()),
            ParamType::String { pattern } => {
                regex_lite::Regex::new(pattern).map(|_| ()).map_err(|e| format!("pattern: {e}"))
            }
            _ => Ok(()),
        }
    }

    /// Whether `value` is a valid value of this type. Returns the canonical spelling
    /// (e.g. a number without leading zeros).
    pub fn check(&self, value: &str) -> Option<String> {
        self.check_meaning(value).ok()
    }

    /// Checks `value` for form and for meaning: the addresses and ranges these types carry are
    /// where a repair binds a service or lets sources in, so a value that would leave the
    /// asset as exposed as before (or more) is refused with the reason, even though it parses.
    /// A CIDR with host bits set (`10.0.0.1/8`) is refused, naming the network it may have
    /// meant, rather than silently widened.
    pub fn check_meaning(&self, value: &str) -> Result<String, Refused> {
        if value.is_empty() || value.len() > 1024 || value.chars().any(char::is_control) {
            return Err(Refused::Form);
        }
        let meaning = |value: &str, why: &str| Refused::Meaning(format!("{value} {why}"));
        match self {
            ParamType::Ip => {
                let ip = value.parse::<IpAddr>().map_err(|_| Refused::Form)?;
                match exposing_address(ip) {
                    Some(why) => Err(meaning(value, why)),
                    None => Ok(ip.to_string()),
                }
            }
            ParamType::IpPort => {
                let a = value.parse::<SocketAddr>().ok().filter(|a| a.port() != 0).ok_or(Refused::Form)?;
                match exposing_address(a.ip()) {
                    Some(why) => Err(meaning(value, why)),
                    None => Ok(a.to_string()),
                }
            }
            ParamType::Cidr => {
                let (ip, prefix) = value.split_once('/').ok_or(Refused::Form)?;
                let ip: IpAddr = ip.parse().map_err(|_| Refused::Form)?;
                if !prefix.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Refused::Form);
                }
                let prefix: u8 = prefix.parse().map_err(|_| Refused::Form)?;
                let (max, min) = if ip.is_ipv4() { (32, MIN_PREFIX_V4) } else { (128, MIN_PREFIX_V6) };
                if prefix > max {
                    return Err(Refused::Form);
                }
                if prefix < min {
                    return Err(meaning(
                        value,
                        &format!("opens to too much of the Internet (a prefix of at least /{min} is required)"),
                    ));
                }
                let network = network_of(ip, prefix);
                if network != ip {
                    return Err(meaning(value, &format!("has host bits set; the network is {network}/{prefix}")));
                }
                if ip.is_multicast() {
                    return Err(meaning(value, "is a multicast range, not a range of sources"));
                }
                let embeds_ipv4 = IPV4_IN_IPV6.iter().any(|(net, len)| {
                    let common = prefix.min(*len);
                    network_of(ip, common) == network_of(IpAddr::V6(*net), common)
                });
                if embeds_ipv4 {
                    return Err(meaning(
                        value,
                        "overlaps the IPv4 addresses embedded in IPv6; give IPv4 sources as IPv4",
                    ));
                }
                Ok(format!("{ip}/{prefix}"))
            }
            ParamType::Port => parse_port(value).map(|p| p.to_string()).ok_or(Refused::Form),
            other => other.check_plain(value).ok_or(Refused::Form),
        }
    }

    fn check_plain(&self, value: &str) -> Option<String> {
        match self {
            ParamType::Ip | ParamType::IpPort | ParamType::Cidr | ParamType::Port => None,
            ParamType::Number { range } => {
                if !value.bytes().enumerate().all(|(i, b)| b.is_ascii_digit() || (i == 0 && b == b'-')) {
                    return None;
                }
                let n: i64 = value.parse().ok()?;
                (range[0] <= n && n <= range[1]).then(|| n.to_string())
            }
            ParamType::Enum { values } => values.iter().find(|v| *v == value).cloned(),
            ParamType::Bool => match value.to_ascii_lowercase().as_str() {
                b @ ("true" | "false") => Some(b.to_string()),
                _ => None,
            },
            ParamType::String { pattern } => {
                let re = regex_lite::Regex::new(&format!("^(?:{pattern})$")).ok()?;
                re.is_match(value).then(|| value.to_string())
            }
        }
    }
}

/// The network address of `ip` with `prefix` bits.
fn network_of(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix)) };
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

fn parse_port(s: &str) -> Option<u16> {
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|p| *p != 0)
}

impl ParamSpec {
    /// `EmptyParamSwitch`: "1" required, "0" a default is used, "2" may be empty.
    pub fn empty_param_switch(&self) -> &'static str {
        if self.required {
            "1"
        } else if self.default.is_some() {
            "0"
        } else {
            "2"
        }
    }

    /// Whether a caller may give this parameter in `RepairTempParam`.
    pub fn caller_may_set(&self) -> bool {
        self.usage != UsageType::Asset
    }
}

/// The values a repair runs with, name → value, in the order of its parameters' specs: what a
/// task stores and its steps are rendered from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairValues(pub Vec<(String, String)>);

impl RepairValues {
    /// The stored form (a JSON array of `[name, value]` pairs).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).expect("pairs of strings always serialise")
    }

    /// Decodes the stored form strictly: a corrupt one is an error, never "no values".
    pub fn from_json(text: &str) -> Result<RepairValues, String> {
        serde_json::from_str(text).map(RepairValues).map_err(|e| e.to_string())
    }

    /// The value of a parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

impl std::ops::Deref for RepairValues {
    type Target = [(String, String)];
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// Resolves the values a repair runs with: every parameter of `specs`, from `given`
/// (`RepairTempParam` name/value pairs) or its default. Errors name the parameter.
pub fn resolve(specs: &[ParamSpec], given: &[(String, String)]) -> Result<RepairValues, ParamError> {
    for (name, _) in given {
        match specs.iter().find(|s| &s.name == name) {
            Some(s) if s.caller_may_set() => {}
            _ => return Err(ParamError::Format(name.clone())),
        }
    }
    let mut out = Vec::new();
    for spec in specs {
        let value = given.iter().rev().find(|(n, _)| n == &spec.name).map(|(_, v)| v);
        match value {
            Some(v) if !v.is_empty() => {
                let canon = spec.kind.check_meaning(v).map_err(|e| match e {
                    Refused::Form => ParamError::Format(spec.name.clone()),
                    Refused::Meaning(why) => ParamError::Meaning(spec.name.clone(), why),
                })?;
                out.push((spec.name.clone(), canon));
            }
            _ if spec.required => return Err(ParamError::Missing(spec.name.clone())),
            _ => {
                if let Some(d) = &spec.default {
                    out.push((spec.name.clone(), d.clone()));
                }
            }
        }
    }
    Ok(RepairValues(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, usage: UsageType, kind: ParamType, default: Option<&str>, required: bool) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            show_name: Text::default(),
            usage,
            kind,
            default: default.map(String::from),
            required,
        }
    }

    #[test]
    fn each_type_accepts_its_format_and_nothing_else() {
        let cases: Vec<(ParamType, &[&str], &[&str])> = vec![
            (ParamType::Ip, &["10.0.0.1", "::1"], &["10.0.0.256", "host", "1.2.3.4:5", " 1.2.3.4", "0.0.0.0", "::"]),
            (ParamType::Port, &["1", "6379", "65535"], &["0", "65536", "-1", "+22", "22a"]),
            (
                ParamType::IpPort,
                &["127.0.0.1:6379", "[::1]:22"],
                &["127.0.0.1", "1.2.3.4:0", "1.2.3.4:70000", "::1:22"],
            ),
            (
                ParamType::Cidr,
                &["10.0.0.0/8", "2001:db8::/32", "203.0.113.7/32"],
                &["10.0.0.0/33", "10.0.0.0", "x/8", "10.0.0.0/+8"],
            ),
            (ParamType::Number { range: [1, 10] }, &["1", "10"], &["0", "11", "1.5", "", "1e1"]),
            (ParamType::Enum { values: vec!["no".into(), "yes".into()] }, &["no"], &["No", "maybe"]),
            (ParamType::Bool, &["true", "false", "TRUE"], &["1", "yes", "", "true "]),
            (
                ParamType::String { pattern: "[a-z]{2,4}".into() },
                &["ab", "abcd"],
                &["a", "abcde", "ab\nPermitRootLogin yes"],
            ),
        ];
        for (kind, good, bad) in cases {
            for v in good {
                assert!(kind.check(v).is_some(), "{kind:?} should accept {v:?}");
            }
            for v in bad {
                assert!(kind.check(v).is_none(), "{kind:?} should refuse {v:?}");
            }
        }
    }

    #[test]
    fn values_that_would_leave_the_service_exposed_are_refused_with_the_reason() {
        let meaning = |kind: ParamType, v: &str| match kind.check_meaning(v) {
            Err(Refused::Meaning(why)) => why,
            other => panic!("{v}: {other:?}"),
        };
        for v in [
            "0.0.0.0:6379",
            "[::]:6379",
            "[::ffff:0.0.0.0]:6379",
            "224.0.0.1:6379",
            "[ff02::1]:6379",
            "255.255.255.255:6379",
        ] {
            assert!(!meaning(ParamType::IpPort, v).is_empty(), "{v}");
        }
        assert!(meaning(ParamType::IpPort, "0.0.0.0:6379").contains("every interface"));
        assert!(meaning(ParamType::Cidr, "0.0.0.0/0").contains("too much of the Internet"));
        assert!(meaning(ParamType::Cidr, "::/0").contains("too much"));
        assert!(meaning(ParamType::Cidr, "0.0.0.0/1").contains("too much"));
        assert!(meaning(ParamType::Cidr, "10.0.0.1/8").contains("the network is 10.0.0.0/8"));
        assert!(meaning(ParamType::Cidr, "2001:db8::1/32").contains("2001:db8::/32"));
        assert!(meaning(ParamType::Cidr, "2001:db8::/16").contains("too much"));
        for v in ["::ffff:0.0.0.0/96", "64:ff9b::/96", "::/96", "::/32", "64:ff9b::1.2.3.0/120"] {
            assert!(meaning(ParamType::Cidr, v).contains("embedded"), "{v}");
        }
        assert!(meaning(ParamType::Cidr, "2002::/16").contains("too much"));
        assert!(meaning(ParamType::Cidr, "ff00::/32").contains("multicast"));
        assert_eq!(ParamType::IpPort.check_meaning("127.0.0.1:6379"), Ok("127.0.0.1:6379".into()));
        assert_eq!(ParamType::IpPort.check_meaning("nonsense"), Err(Refused::Form));
    }

    #[test]
    fn control_characters_are_refused_by_every_type() {
        let s = ParamType::String { pattern: ".*".into() };
        assert!(s.check("a\nb").is_none());
        assert!(s.check("a\rb").is_none());
        assert!(s.check("a\0b").is_none());
    }

    #[test]
    fn type_define_is_the_documented_json() {
        assert_eq!(ParamType::Number { range: [1, 24] }.type_define(), r#"{"range":[1,24],"type":"NUMBER"}"#);
        assert_eq!(ParamType::IpPort.type_define(), r#"{"type":"IP:PORT"}"#);
    }

    #[test]
    fn resolve_reports_missing_malformed_and_unknown_by_name() {
        let specs = vec![
            spec("IPPort", UsageType::Temp, ParamType::IpPort, None, true),
            spec("Max", UsageType::User, ParamType::Number { range: [1, 10] }, Some("4"), false),
            spec("Derived", UsageType::Asset, ParamType::Port, None, false),
        ];
        assert_eq!(resolve(&specs, &[]), Err(ParamError::Missing("IPPort".into())));
        assert_eq!(resolve(&specs, &[("IPPort".into(), "".into())]), Err(ParamError::Missing("IPPort".into())));
        assert_eq!(resolve(&specs, &[("IPPort".into(), "1.2.3.4".into())]), Err(ParamError::Format("IPPort".into())));
        assert_eq!(resolve(&specs, &[("Nope".into(), "1".into())]), Err(ParamError::Format("Nope".into())));
        assert_eq!(resolve(&specs, &[("Derived".into(), "22".into())]), Err(ParamError::Format("Derived".into())));
        assert_eq!(
            resolve(&specs, &[("IPPort".into(), "10.0.0.5:6380".into())]).unwrap(),
            RepairValues(vec![("IPPort".into(), "10.0.0.5:6380".into()), ("Max".into(), "4".into())])
        );
    }

    #[test]
    fn repair_values_round_trip_and_a_corrupt_text_is_an_error() {
        let v = RepairValues(vec![("IPPort".into(), "127.0.0.1:6379".into()), ("Quote".into(), "a\"b".into())]);
        assert_eq!(RepairValues::from_json(&v.to_json()), Ok(v.clone()));
        assert_eq!(v.get("IPPort"), Some("127.0.0.1:6379"));
        for corrupt in ["", "[[\"IPPort\"", "{}", "[[1, 2]]", "null"] {
            assert!(RepairValues::from_json(corrupt).is_err(), "{corrupt:?}");
        }
        assert_eq!(RepairValues::from_json("[]"), Ok(RepairValues::default()));
    }

    #[test]
    fn type_define_deserializes_from_catalog_data() {
        let t: ParamType = serde_json::from_str(r#"{"type":"NUMBER","range":[1,365]}"#).unwrap();
        assert_eq!(t, ParamType::Number { range: [1, 365] });
        let t: ParamType = serde_json::from_str(r#"{"type":"IP:PORT"}"#).unwrap();
        assert_eq!(t, ParamType::IpPort);
    }
}
