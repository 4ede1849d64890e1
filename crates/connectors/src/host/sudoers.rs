//! sudo's policy (CIS 5.3): /etc/sudoers and the files it includes, read as sudo reads them —
//! `#include`/`@include` files and `#includedir`/`@includedir` directories (in name order,
//! skipping names with a `.` or ending in `~`), lines continued by a trailing backslash, global
//! `Defaults` applied in order (the last one of an option wins).
//!
//! Document keys: `sudo.present`, `sudo.use_pty` and `sudo.timestamp_timeout` (when set),
//! `sudo.logfile`, `sudo.nopasswd` and `sudo.no_authenticate` (the `file:line` of each rule or
//! Defaults that grants without a password), each with its `src:` evidence.

use model::{Document, SOURCE};

pub const MAIN: &str = "/etc/sudoers";

/// Nesting deeper than this is refused by sudo itself (and would be a loop).
const MAX_DEPTH: usize = 8;

/// The policy's files in the order sudo reads them: (path, text).
pub fn collect<E>(
    load: &mut impl FnMut(&str) -> Result<Option<String>, E>,
    list: &impl Fn(&str) -> Vec<String>,
) -> Result<Vec<(String, String)>, E> {
    let mut out = Vec::new();
    read_into(MAIN, 0, load, list, &mut out)?;
    Ok(out)
}

fn read_into<E>(
    path: &str,
    depth: usize,
    load: &mut impl FnMut(&str) -> Result<Option<String>, E>,
    list: &impl Fn(&str) -> Vec<String>,
    out: &mut Vec<(String, String)>,
) -> Result<(), E> {
    if depth > MAX_DEPTH || out.iter().any(|(p, _)| p == path) {
        return Ok(());
    }
    let Some(text) = load(path)? else { return Ok(()) };
    let includes: Vec<(bool, String)> = logical_lines(&text)
        .filter_map(|(_, l)| {
            let (dir, rest) = if let Some(r) = l.strip_prefix("#includedir").or(l.strip_prefix("@includedir")) {
                (true, r)
            } else {
                (false, l.strip_prefix("#include").or(l.strip_prefix("@include"))?)
            };
            rest.starts_with(char::is_whitespace).then(|| (dir, rest.trim().trim_matches('"').to_string()))
        })
        .collect();
    out.push((path.to_string(), text));
    for (dir, target) in includes {
        if dir {
            for name in list(&target) {
                let base = name.rsplit('/').next().unwrap_or(&name);
                if !base.contains('.') && !base.ends_with('~') {
                    read_into(&name, depth + 1, load, list, out)?;
                }
            }
        } else {
            read_into(&target, depth + 1, load, list, out)?;
        }
    }
    Ok(())
}

/// The lines of a file with continuations joined and comments dropped (but `#include`), each
/// with the number of its first physical line.
fn logical_lines(text: &str) -> impl Iterator<Item = (usize, String)> + '_ {
    let mut lines = text.lines().enumerate().peekable();
    std::iter::from_fn(move || loop {
        let (n, first) = lines.next()?;
        let mut line = first.to_string();
        while line.ends_with('\\') {
            line.pop();
            match lines.next() {
                Some((_, more)) => line.push_str(more),
                None => break,
            }
        }
        let line = line.trim().to_string();
        let comment = line.starts_with('#') && !line.starts_with("#include");
        if !line.is_empty() && !comment {
            return Some((n + 1, line));
        }
    })
}

/// Splits a Defaults option list at the commas outside quotes.
fn options(list: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    for c in list.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().map(|o| o.trim().to_string()).filter(|o| !o.is_empty()).collect()
}

pub fn facts(files: &[(String, String)], doc: &mut Document) {
    if files.is_empty() {
        return;
    }
    doc.insert("sudo.present".into(), "true".into());
    let (mut nopasswd, mut no_auth) = (Vec::new(), Vec::new());
    let set = |doc: &mut Document, key: &str, value: String, at: &str| {
        doc.insert(format!("sudo.{key}"), value);
        doc.insert(format!("{SOURCE}sudo.{key}"), at.to_string());
    };
    for (path, text) in files {
        for (n, line) in logical_lines(text) {
            let at = format!("{path}:{n}");
            let Some(rest) = line.strip_prefix("Defaults") else {
                if line.contains("NOPASSWD:") {
                    nopasswd.push(at);
                }
                continue;
            };
            // `Defaults:user`, `Defaults@host`, … apply to some users or hosts only.
            let global = rest.starts_with(char::is_whitespace);
            for opt in options(rest.trim_start_matches(|c: char| !c.is_whitespace())) {
                if opt == "!authenticate" {
                    no_auth.push(at.clone());
                }
                if !global {
                    continue;
                }
                match opt.split_once('=') {
                    Some(("logfile", v)) => set(doc, "logfile", v.trim().to_string(), &at),
                    Some(("timestamp_timeout", v)) => set(doc, "timestamp_timeout", v.trim().to_string(), &at),
                    _ if opt == "use_pty" => set(doc, "use_pty", "true".into(), &at),
                    _ if opt == "!use_pty" => set(doc, "use_pty", "false".into(), &at),
                    _ => {}
                }
            }
        }
    }
    doc.insert("sudo.nopasswd".into(), nopasswd.join(", "));
    doc.insert("sudo.no_authenticate".into(), no_auth.join(", "));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn read(files: &BTreeMap<&str, &str>) -> Vec<(String, String)> {
        let mut load = |p: &str| Ok::<_, ()>(files.get(p).map(|t| t.to_string()));
        let list =
            |dir: &str| files.keys().filter(|k| k.starts_with(&format!("{dir}/"))).map(|k| k.to_string()).collect();
        collect(&mut load, &list).unwrap()
    }

    #[test]
    fn includes_are_followed_in_order_and_the_last_defaults_wins() {
        let files = BTreeMap::from([
            (
                MAIN,
                "Defaults\tenv_reset, use_pty\nDefaults logfile=\"/var/log/sudo.log\"\n@includedir /etc/sudoers.d\n",
            ),
            (
                "/etc/sudoers.d/10-admins",
                "%admin ALL=(ALL) NOPASSWD: ALL\nDefaults !use_pty, \\\n  timestamp_timeout=30\n",
            ),
            ("/etc/sudoers.d/README", "# no rule\n"),
            ("/etc/sudoers.d/skipped.conf", "Defaults use_pty\n"),
            ("/etc/sudoers.d/zz~", "Defaults use_pty\n"),
        ]);
        let files = read(&files);
        assert_eq!(
            files.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
            [MAIN, "/etc/sudoers.d/10-admins", "/etc/sudoers.d/README"]
        );
        let mut d = Document::new();
        facts(&files, &mut d);
        assert_eq!(d["sudo.use_pty"], "false", "10-admins is read after sudoers");
        assert_eq!(d["src:sudo.use_pty"], "/etc/sudoers.d/10-admins:2");
        assert_eq!(d["sudo.timestamp_timeout"], "30");
        assert_eq!(d["sudo.logfile"], "/var/log/sudo.log", "quotes are sudo's syntax, not the value");
        assert_eq!(d["sudo.nopasswd"], "/etc/sudoers.d/10-admins:1");
        assert_eq!(d["sudo.no_authenticate"], "");
    }

    #[test]
    fn scoped_defaults_count_only_for_no_authenticate() {
        let files = BTreeMap::from([(MAIN, "Defaults:deploy !authenticate, use_pty\n#include /etc/missing\n")]);
        let mut d = Document::new();
        facts(&read(&files), &mut d);
        assert!(!d.contains_key("sudo.use_pty"), "a Defaults for one user is not the global setting");
        assert_eq!(d["sudo.no_authenticate"], "/etc/sudoers:1");
        let mut none = Document::new();
        facts(&[], &mut none);
        assert!(none.is_empty(), "no sudoers: no sudo facts");
    }
}
