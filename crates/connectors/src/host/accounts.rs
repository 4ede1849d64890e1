//! Facts about the local accounts, from /etc/passwd, /etc/group and /etc/shadow: each a list of
//! the accounts or groups at fault (empty when none), so that a rule is "the list is empty" and
//! the result names who.

use std::collections::{BTreeMap, BTreeSet};

use model::Document;

/// The colon-separated records of a file (comments and blank lines skipped).
fn records(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines().map(str::trim_end).filter(|l| !l.is_empty() && !l.starts_with('#')).map(|l| l.split(':').collect())
}

/// Values that appear more than once, each as `value(names…)`, in order.
fn duplicates<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut by: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (value, name) in pairs {
        by.entry(value).or_default().push(name);
    }
    by.into_iter()
        .filter(|(_, n)| n.len() > 1)
        .map(|(v, n)| format!("{v}({})", n.join(" ")))
        .collect::<Vec<_>>()
        .join(",")
}

/// /etc/passwd's facts (`passwd.…`), and with /etc/group those that need both.
pub fn passwd_facts(passwd: &str, group: Option<&str>, doc: &mut Document) {
    let users: Vec<Vec<&str>> = records(passwd).filter(|f| f.len() >= 4).collect();
    let mut put = |k: &str, v: String| {
        doc.insert(k.to_string(), v);
    };
    put("passwd.present", "true".into());
    let uid0: Vec<&str> = users.iter().filter(|f| f[2] == "0" && f[0] != "root").map(|f| f[0]).collect();
    put("passwd.uid0_others", uid0.join(","));
    put("passwd.duplicate_uids", duplicates(users.iter().map(|f| (f[2], f[0]))));
    put("passwd.duplicate_names", duplicates(users.iter().map(|f| (f[0], f[2]))));
    let unshadowed: Vec<&str> = users.iter().filter(|f| f[1] != "x").map(|f| f[0]).collect();
    put("passwd.unshadowed", unshadowed.join(","));
    if let Some(root) = users.iter().find(|f| f[0] == "root") {
        put("passwd.root_gid", root[3].to_string());
    }
    let Some(group) = group else { return };
    let groups: Vec<Vec<&str>> = records(group).filter(|f| f.len() >= 3).collect();
    let gids: BTreeSet<&str> = groups.iter().map(|f| f[2]).collect();
    let missing: Vec<String> =
        users.iter().filter(|f| !gids.contains(f[3])).map(|f| format!("{}({})", f[0], f[3])).collect();
    put("passwd.missing_groups", missing.join(","));
    put("group.present", "true".into());
    put("group.duplicate_gids", duplicates(groups.iter().map(|f| (f[2], f[0]))));
    put("group.duplicate_names", duplicates(groups.iter().map(|f| (f[0], f[2]))));
    // Members of `shadow`: listed in its entry, or with it as their primary group.
    let mut members: BTreeSet<&str> = BTreeSet::new();
    for g in groups.iter().filter(|f| f[0] == "shadow") {
        members.extend(g.get(3).map_or("", |m| *m).split(',').filter(|m| !m.is_empty()));
        members.extend(users.iter().filter(|u| u[3] == g[2]).map(|u| u[0]));
    }
    put("group.shadow_members", members.into_iter().collect::<Vec<_>>().join(","));
}

/// /etc/shadow's facts (`shadow.…`): accounts with an empty password, and the password aging
/// of every account that has a password (not locked with `!` or `*`), each list naming the
/// accounts at fault with their value. An empty field is shadow(5)'s "none": no minimum age,
/// no maximum, no warning, no inactivity lock.
pub fn shadow_facts(shadow: &str, doc: &mut Document) {
    shadow_facts_at(shadow, days_since_epoch(), doc)
}

/// Whether a shadow field's value (None: empty) is at fault, given today's day number.
type AtFault = fn(Option<i64>, i64) -> bool;

fn days_since_epoch() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64 / 86_400)
}

fn shadow_facts_at(shadow: &str, today: i64, doc: &mut Document) {
    doc.insert("shadow.present".into(), "true".into());
    let empty: Vec<&str> = records(shadow).filter(|f| f.len() >= 2 && f[1].is_empty()).map(|f| f[0]).collect();
    doc.insert("shadow.empty_password_accounts".into(), empty.join(","));
    let with_password: Vec<Vec<&str>> =
        records(shadow).filter(|f| f.len() >= 7 && !f[1].is_empty() && !f[1].starts_with(['!', '*'])).collect();
    let checks: [(&str, usize, AtFault); 5] = [
        ("shadow.min_days_under_1", 3, |v, _| v.is_none_or(|d| d < 1)),
        ("shadow.max_days_over_365", 4, |v, _| v.is_none_or(|d| d > 365)),
        ("shadow.warn_days_under_7", 5, |v, _| v.is_none_or(|d| d < 7)),
        ("shadow.inactive_over_30", 6, |v, _| v.is_none_or(|d| !(0..=30).contains(&d))),
        ("shadow.changed_in_future", 2, |v, today| v.is_some_and(|d| d > today)),
    ];
    for (key, field, at_fault) in checks {
        let found: Vec<String> = with_password
            .iter()
            .filter(|f| at_fault(f[field].trim().parse().ok(), today))
            .map(|f| format!("{}({})", f[0], if f[field].is_empty() { "unset" } else { f[field] }))
            .collect();
        doc.insert(key.into(), found.join(","));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_at_fault_are_named() {
        let passwd = "root:x:0:5:root:/root:/bin/bash\ntoor:x:0:0::/root:/bin/sh\nguest:x:1000:1000::/h:/bin/sh\n\
                      twin:x:1000:1001::/t:/bin/sh\nguest:x:1002:1000::/g:/bin/sh\nplain:abc:1003:1000::/:/bin/sh\n# x\n";
        let group = "root:x:0:\nguest:x:1000:\nshadow:x:42:guest,\nsame:x:1000:\nguest:x:1004:\nsys:x:5:\n";
        let mut d = Document::new();
        passwd_facts(passwd, Some(group), &mut d);
        assert_eq!(d["passwd.uid0_others"], "toor");
        assert_eq!(d["passwd.duplicate_uids"], "0(root toor),1000(guest twin)");
        assert_eq!(d["passwd.duplicate_names"], "guest(1000 1002)");
        assert_eq!(d["passwd.unshadowed"], "plain");
        assert_eq!(d["passwd.root_gid"], "5");
        assert_eq!(d["passwd.missing_groups"], "twin(1001)");
        assert_eq!(d["group.duplicate_gids"], "1000(guest same)");
        assert_eq!(d["group.duplicate_names"], "guest(1000 1004)");
        assert_eq!(d["group.shadow_members"], "guest");
        let mut d = Document::new();
        passwd_facts("root:x:0:0::/root:/bin/sh\n", Some("root:x:0:\nshadow:x:42:\n"), &mut d);
        for k in ["passwd.uid0_others", "passwd.duplicate_uids", "passwd.missing_groups", "group.shadow_members"] {
            assert_eq!(d[k], "", "{k}");
        }
        let mut d = Document::new();
        shadow_facts("root:$y$x:1::::::\nguest::1::::::\n", &mut d);
        assert_eq!(d["shadow.empty_password_accounts"], "guest");
    }

    #[test]
    fn password_aging_is_judged_for_accounts_with_a_password_only() {
        let shadow = "root:$y$x:19000:1:365:7:30::\nold:$6$y:30000:0:99999:7:::\nlocked:!:19000:0:99999:0:::\n";
        let mut d = Document::new();
        shadow_facts_at(shadow, 20000, &mut d);
        assert_eq!(d["shadow.min_days_under_1"], "old(0)");
        assert_eq!(d["shadow.max_days_over_365"], "old(99999)");
        assert_eq!(d["shadow.warn_days_under_7"], "", "the locked account is not judged");
        assert_eq!(d["shadow.inactive_over_30"], "old(unset)");
        assert_eq!(d["shadow.changed_in_future"], "old(30000)");
    }
}
