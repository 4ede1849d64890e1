use model::{CheckStatus, Document, LIVE};

use crate::{CheckDef, Condition, Op};

/// The evaluation of one check item on one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The item does not apply to this instance (its `applies_if` key is absent).
    NotApplicable,
    /// Every condition holds.
    Pass,
    /// These keys fail their condition.
    NotPass(Vec<String>),
}

impl Outcome {
    /// The check result status this outcome is stored as (None: no result row).
    pub fn status(&self) -> Option<CheckStatus> {
        match self {
            Outcome::NotApplicable => None,
            Outcome::Pass => Some(CheckStatus::Pass),
            Outcome::NotPass(_) => Some(CheckStatus::NotPass),
        }
    }
}

/// Evaluates a check item's rule on a document. Where the document also holds the value in
/// effect of a key (`live:<key>`, read from a live system), that value must hold too: a file
/// that says one thing while the service runs another does not pass (the failing key is then
/// `live:<key>`).
pub fn evaluate(check: &CheckDef, doc: &Document) -> Outcome {
    if let Some(k) = &check.applies_if {
        if !doc.contains_key(k) {
            return Outcome::NotApplicable;
        }
    }
    let mut failed = Vec::new();
    for c in &check.rule {
        if !holds(c, doc.get(&c.key)) {
            failed.push(c.key.clone());
        }
        if get_prefixed(doc, LIVE, &c.key).is_some_and(|v| !holds(c, Some(v))) {
            failed.push(format!("{LIVE}{}", c.key));
        }
    }
    if failed.is_empty() {
        Outcome::Pass
    } else {
        Outcome::NotPass(failed)
    }
}

/// The keys of the rule whose value in effect does not hold while the file's does, each said
/// as `key: the file has X, in effect Y` (evidence of both).
pub fn live_differences(check: &CheckDef, doc: &Document) -> Vec<String> {
    if !has_live_values(doc) {
        return Vec::new();
    }
    check
        .rule
        .iter()
        .filter_map(|c| {
            let live = get_prefixed(doc, LIVE, &c.key)?;
            let file = doc.get(&c.key).or(c.default.as_ref());
            (holds(c, file) && !holds(c, Some(live)))
                .then(|| format!("{}: the file has {:?}, in effect {:?}", c.key, file.map_or("", |v| v.as_str()), live))
        })
        .collect()
}

/// Whether the document holds any value in effect (`live:…`): most are files only, and then no
/// item needs to look for one.
pub fn has_live_values(doc: &Document) -> bool {
    use std::ops::Bound;
    doc.range::<str, _>((Bound::Included(LIVE), Bound::Unbounded)).next().is_some_and(|(k, _)| k.starts_with(LIVE))
}

/// `doc[prefix + key]`, without a new string for each look (evidence is written for every
/// result of a check).
pub(crate) fn get_prefixed<'a>(doc: &'a Document, prefix: &str, key: &str) -> Option<&'a String> {
    thread_local!(static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) });
    KEY.with(|k| {
        let mut k = k.borrow_mut();
        k.clear();
        k.push_str(prefix);
        k.push_str(key);
        doc.get(k.as_str())
    })
}

pub(crate) fn holds(c: &Condition, value: Option<&String>) -> bool {
    if c.op == Op::Absent {
        return value.is_none();
    }
    let Some(v) = value.or(c.default.as_ref()) else {
        return false;
    };
    let v = v.trim();
    let operand = c.value.as_deref().unwrap_or("");
    match c.op {
        Op::Eq => v == operand,
        Op::In => c.values.iter().any(|x| x.eq_ignore_ascii_case(v)),
        Op::Le => matches!((int(v), int(operand)), (Some(a), Some(b)) if a <= b),
        Op::Ge => matches!((int(v), int(operand)), (Some(a), Some(b)) if a >= b),
        Op::LeDuration => matches!((duration_secs(v), int(operand)), (Some(a), Some(b)) if a <= b),
        Op::ModeAtMost => matches!(
            (u32::from_str_radix(v, 8), u32::from_str_radix(operand, 8)),
            (Ok(mode), Ok(max)) if mode & 0o7777 & !max == 0
        ),
        Op::MaskAtLeast => matches!(
            (u32::from_str_radix(v, 8), u32::from_str_radix(operand, 8)),
            (Ok(mask), Ok(least)) if mask & least == least
        ),
        Op::NoWildcardAddr => {
            let addrs: Vec<&str> = v.split_whitespace().collect();
            !addrs.is_empty() && addrs.iter().all(|a| !is_wildcard(a))
        }
        Op::Present => !v.is_empty(),
        Op::Absent => false,
        Op::NoneOf => !v.is_empty() && !list(v).any(|x| c.values.iter().any(|bad| bad.eq_ignore_ascii_case(x))),
        Op::AllOf => c.values.iter().all(|want| list(v).any(|x| want.eq_ignore_ascii_case(x))),
        Op::AuditRules => crate::audit::covers(v, &c.values),
        Op::FieldsLe => {
            let fields = |s: &str| s.split(':').map(int).collect::<Option<Vec<i64>>>();
            match (fields(v), fields(operand)) {
                (Some(have), Some(max)) if !have.is_empty() && have.len() <= max.len() => {
                    // sshd: `MaxStartups 10` is `10:100:10`, i.e. refuse only at the start value.
                    let full: Vec<i64> = (0..max.len()).map(|i| have.get(i).copied().unwrap_or(have[0])).collect();
                    full.iter().zip(&max).all(|(a, b)| a <= b)
                }
                _ => false,
            }
        }
    }
}

/// The items of a list separated by commas, spaces or tabs.
fn list(v: &str) -> impl Iterator<Item = &str> {
    v.split([',', ' ', '\t']).filter(|x| !x.is_empty())
}

fn int(s: &str) -> Option<i64> {
    s.trim().parse().ok()
}

/// Redis marks optional addresses with a leading `-`; `*`, `0.0.0.0` and `::` listen everywhere.
fn is_wildcard(addr: &str) -> bool {
    let a = addr.trim_start_matches('-');
    matches!(a, "*" | "0.0.0.0" | "::" | "[::]" | "::0" | "0:0:0:0:0:0:0:0")
}

/// sshd's time format: `90`, `90s`, `2m`, `1h30m`, `1w` (case-insensitive units).
fn duration_secs(s: &str) -> Option<i64> {
    let mut total = 0i64;
    let mut num = String::new();
    for ch in s.chars() {
        if ch.is_ascii_digit() {
            num.push(ch);
            continue;
        }
        let unit = match ch.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return None,
        };
        total = total.checked_add(num.parse::<i64>().ok()?.checked_mul(unit)?)?;
        num.clear();
    }
    if !num.is_empty() {
        total = total.checked_add(num.parse().ok()?)?;
    }
    (!s.is_empty()).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Catalog;

    fn doc(pairs: &[(&str, &str)]) -> Document {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn absent_keys_take_the_software_default() {
        let c = Catalog::builtin().unwrap();
        let root_login = c.get(1001).unwrap();
        // OpenSSH's default is prohibit-password: not "no", so it fails.
        assert_eq!(
            evaluate(root_login, &doc(&[("sshd.present", "true")])),
            Outcome::NotPass(vec!["sshd.permitrootlogin".into()])
        );
        assert_eq!(
            evaluate(root_login, &doc(&[("sshd.present", "true"), ("sshd.permitrootlogin", "No")])),
            Outcome::Pass
        );
        assert_eq!(evaluate(root_login, &doc(&[])), Outcome::NotApplicable);
    }

    #[test]
    fn numbers_modes_durations_and_addresses() {
        let c = Catalog::builtin().unwrap();
        let d = |pairs: &[(&str, &str)]| {
            let mut d = doc(pairs);
            d.insert("sshd.present".into(), "true".into());
            d.insert("redis.present".into(), "true".into());
            d.insert("login_defs.present".into(), "true".into());
            d
        };
        assert_eq!(evaluate(c.get(1003).unwrap(), &d(&[("sshd.maxauthtries", "4")])), Outcome::Pass);
        assert!(matches!(evaluate(c.get(1003).unwrap(), &d(&[])), Outcome::NotPass(_)));
        assert_eq!(evaluate(c.get(1005).unwrap(), &d(&[("sshd.logingracetime", "1m")])), Outcome::Pass);
        assert!(matches!(evaluate(c.get(1005).unwrap(), &d(&[("sshd.logingracetime", "2m")])), Outcome::NotPass(_)));
        assert!(matches!(evaluate(c.get(1005).unwrap(), &d(&[("sshd.logingracetime", "soon")])), Outcome::NotPass(_)));
        assert_eq!(evaluate(c.get(1006).unwrap(), &d(&[("file:/etc/ssh/sshd_config.mode", "0600")])), Outcome::Pass);
        assert_eq!(evaluate(c.get(1006).unwrap(), &d(&[("file:/etc/ssh/sshd_config.mode", "0400")])), Outcome::Pass);
        assert!(matches!(
            evaluate(c.get(1006).unwrap(), &d(&[("file:/etc/ssh/sshd_config.mode", "0644")])),
            Outcome::NotPass(_)
        ));
        assert!(matches!(
            evaluate(c.get(1006).unwrap(), &d(&[("file:/etc/ssh/sshd_config.mode", "4600")])),
            Outcome::NotPass(_)
        ));
        let redis = c.get(1016).unwrap();
        assert_eq!(evaluate(redis, &d(&[("redis.bind", "127.0.0.1 -::1")])), Outcome::Pass);
        assert!(matches!(evaluate(redis, &d(&[("redis.bind", "127.0.0.1 0.0.0.0")])), Outcome::NotPass(_)));
        assert!(matches!(evaluate(redis, &d(&[("redis.bind", "* -::*")])), Outcome::NotPass(_)));
        assert!(matches!(evaluate(redis, &d(&[])), Outcome::NotPass(_)));
        assert_eq!(evaluate(c.get(1009).unwrap(), &d(&[("login_defs.PASS_MAX_DAYS", "365")])), Outcome::Pass);
        assert!(matches!(
            evaluate(c.get(1009).unwrap(), &d(&[("login_defs.PASS_MAX_DAYS", "99999")])),
            Outcome::NotPass(_)
        ));
    }

    #[test]
    fn a_value_in_effect_must_hold_too() {
        let c = Catalog::builtin().unwrap();
        let root_login = c.get(1001).unwrap();
        let file_no = [("sshd.present", "true"), ("sshd.permitrootlogin", "no")];
        let live = |v: &str| {
            let mut d = doc(&file_no);
            d.insert("live:sshd.permitrootlogin".into(), v.into());
            d
        };
        assert_eq!(evaluate(root_login, &live("no")), Outcome::Pass);
        assert_eq!(evaluate(root_login, &live("yes")), Outcome::NotPass(vec!["live:sshd.permitrootlogin".into()]));
        assert_eq!(
            live_differences(root_login, &live("yes")),
            vec![r#"sshd.permitrootlogin: the file has "no", in effect "yes""#.to_string()]
        );
        assert!(live_differences(root_login, &live("no")).is_empty());
        // The file fails too: both keys are named, and there is no difference to explain.
        let mut both = live("yes");
        both.insert("sshd.permitrootlogin".into(), "yes".into());
        assert_eq!(
            evaluate(root_login, &both),
            Outcome::NotPass(vec!["sshd.permitrootlogin".into(), "live:sshd.permitrootlogin".into()])
        );
        assert!(live_differences(root_login, &both).is_empty());
        let shown = root_login.shown_values(&live("yes"));
        assert_eq!((shown["PermitRootLogin"].as_str(), shown["PermitRootLogin (live)"].as_str()), ("no", "yes"));
    }

    #[test]
    fn lists_and_colon_fields() {
        let c = Catalog::builtin().unwrap();
        let d = |k: &str, v: &str| doc(&[("sshd.present", "true"), (k, v)]);
        let ciphers = c.all().find(|c| c.key == "sshd-strong-ciphers").unwrap();
        assert_eq!(evaluate(ciphers, &d("sshd.ciphers", "aes256-gcm@openssh.com,aes128-ctr")), Outcome::Pass);
        assert!(matches!(evaluate(ciphers, &d("sshd.ciphers", "aes128-ctr,AES128-CBC")), Outcome::NotPass(_)));
        let startups = c.all().find(|c| c.key == "sshd-max-startups").unwrap();
        assert_eq!(evaluate(startups, &d("sshd.maxstartups", "10:30:60")), Outcome::Pass);
        assert_eq!(
            evaluate(startups, &d("sshd.maxstartups", "5:50:20")),
            Outcome::NotPass(vec!["sshd.maxstartups".into()])
        );
        assert!(matches!(evaluate(startups, &d("sshd.maxstartups", "10:30:100")), Outcome::NotPass(_)));
        assert_eq!(evaluate(startups, &d("sshd.maxstartups", "8")), Outcome::Pass, "one field: 8:8:8");
        assert!(matches!(evaluate(startups, &d("sshd.maxstartups", "x:1")), Outcome::NotPass(_)));
        assert!(
            matches!(evaluate(startups, &doc(&[("sshd.present", "true")])), Outcome::NotPass(_)),
            "default 10:30:100"
        );
        let umask = c.get(1060).unwrap();
        let u = |v: &str| doc(&[("login_defs.present", "true"), ("login_defs.UMASK", v)]);
        assert_eq!(evaluate(umask, &u("027")), Outcome::Pass);
        assert_eq!(evaluate(umask, &u("077")), Outcome::Pass);
        assert!(matches!(evaluate(umask, &u("022")), Outcome::NotPass(_)));
        assert!(matches!(evaluate(umask, &u("007")), Outcome::NotPass(_)));
        assert!(matches!(evaluate(umask, &u("0x1")), Outcome::NotPass(_)));
        let banner = c.all().find(|c| c.key == "sshd-banner").unwrap();
        assert!(matches!(evaluate(banner, &d("sshd.banner", "none")), Outcome::NotPass(_)));
        assert_eq!(evaluate(banner, &d("sshd.banner", "/etc/issue.net")), Outcome::Pass);
    }

    #[test]
    fn durations_parse_like_sshd() {
        assert_eq!(duration_secs("90"), Some(90));
        assert_eq!(duration_secs("1h30m"), Some(5400));
        assert_eq!(duration_secs("2M"), Some(120));
        assert_eq!(duration_secs("x"), None);
        assert_eq!(duration_secs(""), None);
    }
}
