//! The demo fleet: servers as directory trees under `DIR/fleet/<InstanceId>/`, with the
//! configuration files a Debian server has, some hardened and some not, spread over vendors
//! and regions. Registered once; the service then checks them like any other instance.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use model::Vendor;
use store::NewInstance;

/// How one demo server is configured.
struct Server {
    vendor: Vendor,
    region: &'static str,
    id: &'static str,
    name: &'static str,
    hardened_ssh: bool,
    sshd_mode: u32,
    pass_max_days: &'static str,
    redis: Option<&'static str>,
    sysctl: &'static str,
    shadow_mode: u32,
    passwd_mode: u32,
    empty_password_user: bool,
}

const FLEET: [Server; 8] = [
    Server {
        vendor: Vendor::Aliyun,
        region: "cn-hangzhou",
        id: "i-bp1a2c3d4e5f6g7h8i9j",
        name: "web-01",
        hardened_ssh: false,
        sshd_mode: 0o644,
        pass_max_days: "99999",
        redis: Some("bind 0.0.0.0\nprotected-mode no\nport 6379\n"),
        sysctl: "",
        shadow_mode: 0o640,
        passwd_mode: 0o644,
        empty_password_user: false,
    },
    Server {
        vendor: Vendor::Aliyun,
        region: "cn-hangzhou",
        id: "i-bp1k2l3m4n5o6p7q8r9s",
        name: "web-02",
        hardened_ssh: true,
        sshd_mode: 0o600,
        pass_max_days: "90",
        redis: None,
        sysctl: "net.ipv4.conf.all.accept_redirects = 0\nnet.ipv4.conf.all.send_redirects = 0\n",
        shadow_mode: 0o640,
        passwd_mode: 0o644,
        empty_password_user: false,
    },
    Server {
        vendor: Vendor::Aliyun,
        region: "cn-shanghai",
        id: "i-uf6a1b2c3d4e5f6g7h8i",
        name: "cache-01",
        hardened_ssh: true,
        sshd_mode: 0o600,
        pass_max_days: "180",
        redis: Some(
            "bind 127.0.0.1 -::1\nprotected-mode yes\nport 6379\nrequirepass 9f8e7d6c5b4a39281706f5e4d3c2b1a0\n",
        ),
        sysctl: "net.ipv4.conf.all.accept_redirects = 0\nnet.ipv4.conf.all.send_redirects = 0\n",
        shadow_mode: 0o640,
        passwd_mode: 0o644,
        empty_password_user: false,
    },
    Server {
        vendor: Vendor::Outside,
        region: "cn-beijing",
        id: "3b7c5e1a-8f2d-4c6b-9a0e-1d2f3a4b5c6d",
        name: "office-gw",
        hardened_ssh: false,
        sshd_mode: 0o644,
        pass_max_days: "99999",
        redis: None,
        sysctl: "net.ipv4.ip_forward = 1\n",
        shadow_mode: 0o644,
        passwd_mode: 0o644,
        empty_password_user: true,
    },
    Server {
        vendor: Vendor::Idc,
        region: "cn-shenzhen",
        id: "7e4d2c1b-0a9f-4e8d-b7c6-5a4b3c2d1e0f",
        name: "idc-build-01",
        hardened_ssh: false,
        sshd_mode: 0o600,
        pass_max_days: "365",
        redis: Some("port 6380\nprotected-mode yes\n"),
        sysctl: "kernel.randomize_va_space = 0\n",
        shadow_mode: 0o640,
        passwd_mode: 0o666,
        empty_password_user: false,
    },
    Server {
        vendor: Vendor::Lightweight,
        region: "ap-southeast-1",
        id: "5a8e1c7d2b9f4e6a8c3d1b7e9f2a4c6e",
        name: "blog",
        hardened_ssh: false,
        sshd_mode: 0o644,
        pass_max_days: "99999",
        redis: None,
        sysctl: "",
        shadow_mode: 0o640,
        passwd_mode: 0o644,
        empty_password_user: false,
    },
    Server {
        vendor: Vendor::Aliyun,
        region: "ap-southeast-1",
        id: "i-t4n1o2p3q4r5s6t7u8v9",
        name: "jump-sg",
        hardened_ssh: true,
        sshd_mode: 0o600,
        pass_max_days: "60",
        redis: None,
        sysctl: "net.ipv4.conf.all.accept_redirects = 0\nnet.ipv4.conf.all.send_redirects = 0\n",
        shadow_mode: 0o600,
        passwd_mode: 0o644,
        empty_password_user: false,
    },
    Server {
        vendor: Vendor::Lightweight,
        region: "cn-hangzhou",
        id: "c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6",
        name: "staging",
        hardened_ssh: false,
        sshd_mode: 0o600,
        pass_max_days: "99999",
        redis: Some("bind * -::*\nprotected-mode yes\n"),
        sysctl: "net.ipv4.conf.all.accept_redirects = 0\n",
        shadow_mode: 0o640,
        passwd_mode: 0o644,
        empty_password_user: false,
    },
];

pub(crate) fn sshd_config(hardened: bool) -> String {
    let (root, x11, tries, grace, empty) =
        if hardened { ("no", "no", "3", "30", "no") } else { ("yes", "yes", "6", "2m", "no") };
    let access = if hardened { "AllowGroups sudo sshusers\n" } else { "" };
    format!(
        "\n# This is the sshd server system-wide configuration file.  See\n# sshd_config(5) for more information.\n\n\
# The strategy used for options in the default sshd_config shipped with\n# OpenSSH is to specify options with their default value where\n\
# possible, but leave them commented.  Uncommented options override the\n# default value.\n\n\
Include /etc/ssh/sshd_config.d/*.conf\n\n#Port 22\n#AddressFamily any\n#ListenAddress 0.0.0.0\n\n\
# Authentication:\n\nLoginGraceTime {grace}\nPermitRootLogin {root}\n#StrictModes yes\nMaxAuthTries {tries}\n#MaxSessions 10\n\n\
#PubkeyAuthentication yes\n\n# To disable tunneled clear text passwords, change to no here!\n#PasswordAuthentication yes\nPermitEmptyPasswords {empty}\n\n\
KbdInteractiveAuthentication no\nUsePAM yes\n{access}\nX11Forwarding {x11}\nPrintMotd no\n\n\
# Allow client to pass locale environment variables\nAcceptEnv LANG LC_*\n\n\
# override default of no subsystems\nSubsystem\tsftp\t/usr/lib/openssh/sftp-server\n\n\
# Example of overriding settings on a per-user basis\n#Match User anoncvs\n#\tX11Forwarding no\n#\tPermitTTY no\n"
    )
}

fn login_defs(max_days: &str) -> String {
    format!(
        "#\n# /etc/login.defs - Configuration control definitions for the login package.\n#\n\
MAIL_DIR        /var/mail\nFAILLOG_ENAB\t\tyes\nLOG_UNKFAIL_ENAB\tno\nLOG_OK_LOGINS\t\tno\nSYSLOG_SU_ENAB\t\tyes\n\n\
#\n# Password aging controls:\n#\n#\tPASS_MAX_DAYS\tMaximum number of days a password may be used.\n\
#\tPASS_MIN_DAYS\tMinimum number of days allowed between password changes.\n#\tPASS_WARN_AGE\tNumber of days warning given before a password expires.\n#\n\
PASS_MAX_DAYS\t{max_days}\nPASS_MIN_DAYS\t0\nPASS_WARN_AGE\t7\n\nUID_MIN\t\t\t 1000\nUID_MAX\t\t\t60000\nUMASK\t\t022\nENCRYPT_METHOD SHA512\n"
    )
}

const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nbin:x:2:2:bin:/bin:/usr/sbin/nologin\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\nredis:x:101:102::/var/lib/redis:/usr/sbin/nologin\nops:x:1000:1000:Ops,,,:/home/ops:/bin/bash\n";
const GROUP: &str = "root:x:0:\ndaemon:x:1:\nbin:x:2:\nshadow:x:42:\nredis:x:102:\nops:x:1000:\nnogroup:x:65534:\n";

/// /etc/shadow: the accounts with a password age as CIS asks on hardened servers, as a default
/// install leaves them (no minimum, no expiry, no inactivity lock) elsewhere.
fn shadow(empty_password_user: bool, hardened: bool) -> String {
    let aging = if hardened { "1:365:7:30:" } else { "0:99999:7::" };
    let mut s = format!(
        "root:$y$j9T$Fk3pQm2x$0d8sZbq1Yt7c9WnQm3uR5eVx2aLk4Hj6Gf8Ds0Pq1Zo:19800:{aging}:\n\
daemon:*:19800:0:99999:7:::\nbin:*:19800:0:99999:7:::\nsshd:!:19800::::::\nredis:!:19800::::::\n\
ops:$y$j9T$Qw7eRt5y$Uy3iOp9aSd1fGh5jKl7zXc2vBn4mQw6eRt8yUi0oPa1:19800:{aging}:\n",
    );
    if empty_password_user {
        s.push_str("guest::19800:0:99999:7:::\n");
    }
    s
}

fn write(root: &Path, rel: &str, text: &str, mode: u32) -> std::io::Result<()> {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("a parent"))?;
    std::fs::write(&p, text)?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
}

/// The kernel modules CIS wants kept from loading.
const MODULES: [&str; 12] =
    ["cramfs", "freevxfs", "hfs", "hfsplus", "jffs2", "squashfs", "udf", "usb-storage", "dccp", "sctp", "rds", "tipc"];

/// One installed package as dpkg's status file lists it.
fn dpkg_entry(package: &str) -> String {
    format!("Package: {package}\nStatus: install ok installed\nPriority: optional\nVersion: 1.0-1\nDescription: {package}\n")
}

/// The rest of a Debian server's files the catalog reads — mounts, modules, PAM, journald,
/// packages, banners, backups, host keys — hardened or as a default install leaves them.
fn system_files(root: &Path, hardened: bool, cis_audit_rules: &str) -> std::io::Result<()> {
    let (tmp, shm) = if hardened {
        ("defaults,nodev,nosuid,noexec", "defaults,nodev,nosuid,noexec")
    } else {
        ("defaults", "defaults,nodev")
    };
    let (var_tmp, home) =
        if hardened { ("defaults,nodev,nosuid,noexec", "defaults,nodev,nosuid") } else { ("defaults", "defaults") };
    write(
        root,
        "etc/fstab",
        &format!(
            "# /etc/fstab\nUUID=7e3f / ext4 errors=remount-ro 0 1\ntmpfs /tmp tmpfs {tmp} 0 0\ntmpfs /dev/shm tmpfs {shm} 0 0\n\
             UUID=9a1c /var/tmp ext4 {var_tmp} 0 2\nUUID=4b2d /home ext4 {home} 0 2\n"
        ),
        0o644,
    )?;
    if hardened {
        let lines: String = MODULES.iter().map(|m| format!("install {m} /bin/false\nblacklist {m}\n")).collect();
        write(root, "etc/modprobe.d/cis.conf", &lines, 0o644)?;
    }
    let (minlen, unlock, inactive, storage) = if hardened {
        ("minlen = 14\nminclass = 4\n", "unlock_time = 900\n", "INACTIVE=30\n", "Storage=persistent\n")
    } else {
        ("# minlen = 8\n", "# unlock_time = 600\n", "", "#Storage=auto\n")
    };
    write(
        root,
        "etc/security/pwquality.conf",
        &format!("# Configuration for systemwide password quality limits\n{minlen}"),
        0o644,
    )?;
    write(root, "etc/security/faillock.conf", &format!("# deny = 3\n{unlock}"), 0o644)?;
    write(root, "etc/security/pwhistory.conf", "# remember = 10\n", 0o644)?;
    write(root, "etc/default/useradd", &format!("# Default values for useradd(8)\nSHELL=/bin/sh\n{inactive}"), 0o644)?;
    let forward = if hardened { "#ForwardToSyslog=yes\n" } else { "ForwardToSyslog=no\n" };
    write(root, "etc/systemd/journald.conf", &format!("[Journal]\n{storage}#Compress=yes\n{forward}"), 0o644)?;
    let mut packages = vec!["base-files", "openssh-server", "sudo", "rsyslog", "apparmor", "at"];
    packages.extend(if hardened { ["aide", "auditd"] } else { ["telnet", "rsync"] });
    write(root, "var/lib/dpkg/status", &packages.iter().map(|p| dpkg_entry(p)).collect::<Vec<_>>().join("\n"), 0o644)?;
    write(
        root,
        "etc/os-release",
        "PRETTY_NAME=\"Ubuntu 22.04.3 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\nID=ubuntu\nID_LIKE=debian\n",
        0o644,
    )?;
    for banner in ["etc/motd", "etc/issue", "etc/issue.net"] {
        write(root, banner, "Authorised use only.\n", 0o644)?;
    }
    if !hardened {
        write(root, "etc/issue", "Ubuntu 22.04.3 LTS \\n \\l\n\n", 0o644)?;
    }
    let audit = if hardened {
        "max_log_file_action = keep_logs\nspace_left_action = email\naction_mail_acct = root\nadmin_space_left_action = single\n"
    } else {
        "max_log_file_action = ROTATE\nspace_left_action = SYSLOG\nadmin_space_left_action = SUSPEND\n"
    };
    write(
        root,
        "etc/audit/auditd.conf",
        &format!("log_file = /var/log/audit/audit.log\nmax_log_file = 8\n{audit}"),
        0o640,
    )?;
    let mut rules = String::from("## First rule - delete all\n-D\n-b 8192\n--backlog_wait_time 60000\n-f 1\n");
    if hardened {
        rules.push_str(cis_audit_rules);
    }
    write(root, "etc/audit/rules.d/audit.rules", &rules, 0o640)?;
    let cron_dir = if hardened { 0o700 } else { 0o755 };
    for dir in ["etc/cron.hourly", "etc/cron.daily", "etc/cron.weekly", "etc/cron.monthly", "etc/cron.d"] {
        write(root, &format!("{dir}/.placeholder"), "# keeps the directory\n", 0o644)?;
        std::fs::set_permissions(root.join(dir), std::fs::Permissions::from_mode(cron_dir))?;
    }
    let (core, path) = if hardened {
        ("*\thard\tcore\t0\n", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    } else {
        (
            "#*\thard\tcore\t0\n",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/games:/usr/local/games:/snap/bin",
        )
    };
    write(root, "etc/security/limits.conf", &format!("# /etc/security/limits.conf\n{core}"), 0o644)?;
    write(root, "etc/environment", &format!("PATH=\"{path}\"\n"), 0o644)?;
    for dir in ["usr/local/sbin", "usr/local/bin", "usr/sbin", "usr/bin", "sbin", "bin"] {
        std::fs::create_dir_all(root.join(dir))?;
    }
    let dropin = if hardened { 0o600 } else { 0o644 };
    write(root, "etc/ssh/sshd_config.d/50-cloud-init.conf", "# written by cloud-init\n", dropin)?;
    if !hardened {
        write(
            root,
            "etc/profile.d/legacy.sh",
            "# left writable by an installer\nexport PATH=$PATH:/opt/tool/bin\n",
            0o666,
        )?;
    }
    if hardened {
        write(root, "etc/cron.allow", "root\n", 0o640)?;
        write(root, "etc/at.allow", "root\n", 0o640)?;
    } else {
        write(root, "etc/at.deny", "guest\n", 0o640)?;
    }
    let sudo_defaults = if hardened { "Defaults\tuse_pty\nDefaults\tlogfile=\"/var/log/sudo.log\"\n" } else { "" };
    write(
        root,
        "etc/sudoers",
        &format!("Defaults\tenv_reset\nDefaults\tmail_badpass\n{sudo_defaults}root\tALL=(ALL:ALL) ALL\n%sudo\tALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n"),
        0o440,
    )?;
    if !hardened {
        write(
            root,
            "etc/sudoers.d/90-cloud-init-users",
            "# Created by cloud-init\nubuntu ALL=(ALL) NOPASSWD:ALL\n",
            0o440,
        )?;
        let wants = root.join("etc/systemd/system/multi-user.target.wants");
        std::fs::create_dir_all(&wants)?;
        for unit in ["cups.service", "avahi-daemon.service"] {
            let link = wants.join(unit);
            if link.symlink_metadata().is_err() {
                std::os::unix::fs::symlink(format!("/lib/systemd/system/{unit}"), link)?;
            }
        }
    }
    write(
        root,
        "etc/crontab",
        "SHELL=/bin/sh\n17 * * * * root cd / && run-parts --report /etc/cron.hourly\n",
        if hardened { 0o600 } else { 0o644 },
    )?;
    let apparmor = if hardened { " apparmor=1 security=apparmor" } else { "" };
    let grub = format!(
        "# grub.cfg\nset timeout=5\nmenuentry 'Ubuntu' {{\n\tlinux\t/boot/vmlinuz-5.15.0-91-generic root=UUID=7e3f ro quiet splash{apparmor}\n}}\n"
    );
    write(root, "boot/grub/grub.cfg", &grub, if hardened { 0o400 } else { 0o444 })?;
    write(root, "etc/passwd-", PASSWD, 0o644)?;
    write(root, "etc/group-", GROUP, 0o644)?;
    write(root, "etc/shadow-", &shadow(false, hardened), 0o600)?;
    write(root, "etc/gshadow", "root:*::\nshadow:*::\n", 0o640)?;
    write(root, "etc/gshadow-", "root:*::\nshadow:*::\n", 0o600)?;
    write(
        root,
        "etc/ssh/ssh_host_ed25519_key",
        "-----BEGIN OPENSSH PRIVATE KEY-----\n(demo)\n-----END OPENSSH PRIVATE KEY-----\n",
        if hardened { 0o600 } else { 0o640 },
    )?;
    write(root, "etc/ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 AAAA demo\n", 0o644)
}

/// Writes the fleet's files under `fleet_dir` and returns the instances to register.
/// The rules the catalog's audit items ask for, one per line (the last one, `-e 2`, among
/// them): what a hardened server loads.
fn cis_audit_rules() -> std::io::Result<String> {
    let catalog = catalog::Catalog::builtin().map_err(|e| std::io::Error::other(e.to_string()))?;
    let rules = catalog.all().flat_map(|c| &c.rule).filter(|c| c.op == catalog::Op::AuditRules);
    Ok(rules.flat_map(|c| &c.values).map(|l| format!("{l}\n")).collect())
}

pub fn build(fleet_dir: &Path) -> std::io::Result<Vec<NewInstance>> {
    let cis_audit_rules = cis_audit_rules()?;
    let mut out = Vec::new();
    for s in &FLEET {
        let root = fleet_dir.join(s.id);
        write(&root, "etc/hostname", &format!("{}\n", s.name), 0o644)?;
        write(&root, "etc/ssh/sshd_config", &sshd_config(s.hardened_ssh), s.sshd_mode)?;
        std::fs::create_dir_all(root.join("etc/ssh/sshd_config.d"))?;
        write(&root, "etc/login.defs", &login_defs(s.pass_max_days), 0o644)?;
        write(&root, "etc/passwd", PASSWD, s.passwd_mode)?;
        write(&root, "etc/group", GROUP, 0o644)?;
        write(&root, "etc/shadow", &shadow(s.empty_password_user, s.hardened_ssh), s.shadow_mode)?;
        write(
            &root,
            "etc/sysctl.conf",
            &format!("#\n# /etc/sysctl.conf - Configuration file for setting system variables\n#\n\n{}", s.sysctl),
            0o644,
        )?;
        std::fs::create_dir_all(root.join("etc/sysctl.d"))?;
        system_files(&root, s.hardened_ssh, &cis_audit_rules)?;
        if let Some(redis) = s.redis {
            let text = format!("# Redis configuration file example.\n\ndaemonize yes\npidfile /run/redis/redis-server.pid\nloglevel notice\nlogfile /var/log/redis/redis-server.log\n\n{redis}\ndatabases 16\nsave 3600 1\n");
            write(&root, "etc/redis/redis.conf", &text, 0o640)?;
        }
        out.push(instance(fleet_dir, s));
    }
    Ok(out)
}

/// The demo's servers as `build` registers them, without writing anything (a demo on agents
/// starts their agents at every start).
pub fn servers(fleet_dir: &Path) -> Vec<NewInstance> {
    FLEET.iter().map(|s| instance(fleet_dir, s)).collect()
}

fn instance(fleet_dir: &Path, s: &Server) -> NewInstance {
    NewInstance {
        vendor: s.vendor,
        region_id: s.region.to_string(),
        instance_id: s.id.to_string(),
        instance_name: s.name.to_string(),
        connector: "host".to_string(),
        locator: fleet_dir.join(s.id).display().to_string(),
        os_type: "linux".to_string(),
        // Directories of files: their repairs say that no live step ran.
        live: None,
    }
}
