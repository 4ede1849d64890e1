//! Facts of the boot configuration and the login banners.

use model::Document;

/// AppArmor on the kernel command line of every boot entry of grub.cfg (CIS 1.6.1.2):
/// `grub.linux_entries` (how many `linux` lines) and `grub.apparmor_missing` (the entries, by
/// line number, without both `apparmor=1` and `security=apparmor`).
pub fn grub_facts(cfg: &str, doc: &mut Document) {
    let mut entries = 0;
    let mut missing = Vec::new();
    for (n, line) in cfg.lines().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() != Some(&"linux") {
            continue;
        }
        entries += 1;
        if !(words.contains(&"apparmor=1") && words.contains(&"security=apparmor")) {
            missing.push(format!("line {}", n + 1));
        }
    }
    doc.insert("grub.linux_entries".into(), entries.to_string());
    doc.insert("grub.apparmor_missing".into(), missing.join(", "));
}

/// The escapes agetty expands to the OS release, kernel and machine (CIS 1.7.1–1.7.3).
const ESCAPES: [&str; 4] = ["\\m", "\\r", "\\s", "\\v"];

/// What a banner tells about the system: agetty's release escapes and the OS's name (`ID` of
/// os-release, matched without regard to case), as `banner:<path>.os_details`.
pub fn banner_facts(path: &str, text: &str, os_id: Option<&str>, doc: &mut Document) {
    let mut found: Vec<String> = ESCAPES.iter().filter(|e| text.contains(*e)).map(|e| e.to_string()).collect();
    if let Some(id) = os_id.filter(|id| !id.is_empty()) {
        if text.to_lowercase().contains(&id.to_lowercase()) {
            found.push(id.to_string());
        }
    }
    doc.insert(format!("banner:{path}.os_details"), found.join(", "));
}

/// `ID` of an os-release file.
pub fn os_id(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|l| l.strip_prefix("ID=")).map(|v| v.trim().trim_matches('"').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_boot_entry_must_turn_apparmor_on() {
        let cfg = "menuentry 'Ubuntu' {\n\tlinux /vmlinuz root=/dev/sda1 ro apparmor=1 security=apparmor\n}\n\
                   menuentry 'recovery' {\n\tlinux /vmlinuz root=/dev/sda1 ro single\n\tinitrd /initrd\n}\n";
        let mut d = Document::new();
        grub_facts(cfg, &mut d);
        assert_eq!((d["grub.linux_entries"].as_str(), d["grub.apparmor_missing"].as_str()), ("2", "line 5"));
    }

    #[test]
    fn banners_are_searched_for_escapes_and_the_os_name() {
        let mut d = Document::new();
        banner_facts(
            "/etc/issue",
            "Ubuntu 22.04 LTS \\n \\l\n",
            os_id("NAME=\"Ubuntu\"\nID=ubuntu\n").as_deref(),
            &mut d,
        );
        assert_eq!(d["banner:/etc/issue.os_details"], "ubuntu");
        banner_facts("/etc/issue.net", "Kernel \\r on \\m\n", Some("debian"), &mut d);
        assert_eq!(d["banner:/etc/issue.net.os_details"], "\\m, \\r");
        banner_facts("/etc/motd", "Authorised use only.\n", Some("ubuntu"), &mut d);
        assert_eq!(d["banner:/etc/motd.os_details"], "");
    }
}
