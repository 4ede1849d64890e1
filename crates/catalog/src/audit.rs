//! Linux audit rules as CIS judges them (CIS Ubuntu 22.04, 4.1.3): a required rule is in place
//! when the loaded rules (the lines of /etc/audit/rules.d/*.rules, in the order augenrules
//! joins them) record at least what it records.
//!
//! - A watch (`-w PATH -p PERMS`) is covered by a watch of the same path (a trailing `/`
//!   aside) whose permissions include the required ones.
//! - A syscall rule (`-a always,exit -F arch=b64 -S a,b -F auid>=1000 …`) is covered by the
//!   rules with the same list and action, the same arch and exactly the same other fields
//!   (`auid!=-1`, `auid!=4294967295` and `auid!=unset` are one field), whose syscalls together
//!   include the required ones — they may be spread over several lines, as augenrules allows.
//! - `-e 2` (the configuration made immutable) must be the last `-e` of the rules.
//!
//! Keys (`-k`, `-F key=`) name rules for searching the log and do not change what is recorded.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

/// One rule, normalised.
#[derive(Debug, PartialEq, Eq)]
enum Rule {
    Watch { path: String, perms: BTreeSet<char> },
    Syscall { list: String, fields: BTreeSet<String>, syscalls: BTreeSet<String> },
    Enable(String),
}

fn parse(line: &str) -> Option<Rule> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut it = words.iter().copied();
    let (mut watch, mut perms, mut list) = (None, BTreeSet::new(), None);
    let (mut fields, mut syscalls) = (BTreeSet::new(), BTreeSet::new());
    while let Some(w) = it.next() {
        match w {
            "-w" => watch = it.next().map(|p| p.trim_end_matches('/').to_string()),
            "-p" => perms = it.next().unwrap_or("").chars().collect(),
            "-a" | "-A" => {
                // `always,exit` and `exit,always` are the same rule.
                let mut parts: Vec<&str> = it.next().unwrap_or("").split(',').collect();
                parts.sort_unstable();
                list = Some(parts.join(","));
            }
            "-S" => syscalls.extend(it.next().unwrap_or("").split(',').map(str::to_string)),
            "-F" | "-C" => {
                let field = it.next().unwrap_or("");
                if !field.starts_with("key=") {
                    fields.insert(normal_field(field));
                }
            }
            "-k" => {
                it.next();
            }
            "-e" => return Some(Rule::Enable(it.next().unwrap_or("").to_string())),
            _ => {}
        }
    }
    match (watch, list) {
        (Some(path), _) => Some(Rule::Watch { path, perms }),
        (None, Some(list)) => Some(Rule::Syscall { list, fields, syscalls }),
        _ => None,
    }
}

fn normal_field(f: &str) -> String {
    match f {
        "auid!=-1" | "auid!=4294967295" => "auid!=unset".to_string(),
        _ => f.to_string(),
    }
}

/// Whether the loaded rules record everything each required line does.
pub fn covers(loaded: &str, required: &[String]) -> bool {
    // A host's rules are the same text for each of the twenty-odd items that read them, and an
    // item's own rules never change: each is parsed once per thread (parsing every time was
    // most of the time a check spent evaluating rules).
    thread_local! {
        static LOADED: RefCell<(String, Rc<Vec<Rule>>)> = RefCell::new((String::new(), Rc::new(Vec::new())));
        static REQUIRED: RefCell<HashMap<Vec<String>, Rc<Vec<Rule>>>> = RefCell::new(HashMap::new());
    }
    let have = LOADED.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != loaded {
            *c = (loaded.to_string(), Rc::new(loaded.lines().filter_map(parse).collect()));
        }
        c.1.clone()
    });
    let wanted = REQUIRED.with(|c| {
        let mut c = c.borrow_mut();
        if let Some(rules) = c.get(required) {
            return rules.clone();
        }
        if c.len() >= 4096 {
            c.clear(); // items of custom catalogs come and go: bounded
        }
        let rules: Rc<Vec<Rule>> = Rc::new(required.iter().filter_map(|r| parse(r)).collect());
        c.insert(required.to_vec(), rules.clone());
        rules
    });
    wanted.iter().all(|want| match &want {
        Rule::Watch { path, perms } => {
            have.iter().any(|h| matches!(h, Rule::Watch { path: p, perms: q } if p == path && perms.is_subset(q)))
        }
        Rule::Syscall { list, fields, syscalls } => {
            let mut union = BTreeSet::new();
            let mut found = false;
            for h in have.iter() {
                if let Rule::Syscall { list: l, fields: f, syscalls: s } = h {
                    if l == list && f == fields {
                        found = true;
                        union.extend(s.iter().cloned());
                    }
                }
            }
            found && syscalls.is_subset(&union)
        }
        Rule::Enable(mode) => {
            have.iter().rev().find_map(|h| if let Rule::Enable(m) = h { Some(m) } else { None }) == Some(mode)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn watches_need_the_path_and_at_least_the_permissions() {
        let want = req(&["-w /etc/sudoers -p wa -k scope", "-w /etc/sudoers.d -p wa -k scope"]);
        assert!(covers("-w /etc/sudoers -p rwa -k mine\n-w /etc/sudoers.d/ -p wa\n", &want));
        assert!(!covers("-w /etc/sudoers -p w -k scope\n-w /etc/sudoers.d -p wa\n", &want), "a is missing");
        assert!(!covers("-w /etc/sudoers -p wa\n", &want), "sudoers.d is not watched");
    }

    #[test]
    fn syscalls_may_be_spread_over_lines_with_the_same_fields() {
        let want = req(&["-a always,exit -F arch=b64 -S adjtimex,settimeofday,clock_settime -k time-change"]);
        let split = "-a exit,always -F arch=b64 -S adjtimex -S settimeofday\n-a always,exit -F arch=b64 -S clock_settime -F key=t\n";
        assert!(covers(split, &want));
        assert!(!covers("-a always,exit -F arch=b32 -S adjtimex,settimeofday,clock_settime\n", &want), "another arch");
        let narrowed = "-a always,exit -F arch=b64 -S adjtimex,settimeofday,clock_settime -F auid>=1000\n";
        assert!(!covers(narrowed, &want), "an extra field records less");
        let unset = req(&["-a always,exit -F arch=b64 -S mount -F auid>=1000 -F auid!=unset -k mounts"]);
        assert!(covers("-a always,exit -F arch=b64 -S mount -F auid>=1000 -F auid!=-1\n", &unset));
    }

    #[test]
    fn a_rule_without_syscalls_needs_a_rule_with_its_fields() {
        let want = req(&["-a always,exit -F path=/usr/bin/chcon -F perm=x -F auid>=1000 -F auid!=unset -k perm_chng"]);
        assert!(!covers("", &want));
        assert!(!covers("-a always,exit -F path=/usr/bin/setfacl -F perm=x -F auid>=1000 -F auid!=unset\n", &want));
        assert!(covers("-a always,exit -F path=/usr/bin/chcon -F perm=x -F auid>=1000 -F auid!=unset -k x\n", &want));
    }

    #[test]
    fn the_last_enable_line_decides_immutability() {
        let want = req(&["-e 2"]);
        assert!(covers("-D\n-e 2\n", &want));
        assert!(!covers("-e 2\n-e 1\n", &want));
        assert!(!covers("", &want));
    }
}
