//! `posture accounts`, `posture keys`, `posture instances`: administration on a data directory,
//! safe while `serve` runs on it (the service reads accounts, keys and instances from the
//! store on every request, so it sees a change at once). Answers are JSON on stdout.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use store::Accounts as _;
use store::Approvals as _;
use store::Audit as _;
use store::Instances as _;

use clap::{Args, Subcommand};
use model::{Services, Vendor};
use serde_json::{json, Value};
use store::{NewInstance, Store, StoreError};

/// Where the service keeps its state: the same flags as `serve`.
#[derive(Args, Clone, Debug)]
pub struct DataDir {
    /// The data directory of the service.
    #[arg(long, default_value = "./posture-data")]
    pub data: PathBuf,
    /// Use PostgreSQL instead of SQLite in the data directory: postgres://USER@HOST:PORT/DB
    /// (else the environment variable, else `[store] url` in DATA/posture.toml).
    #[arg(long, env = "POSTURE_DATABASE_URL", hide_env_values = true)]
    pub database: Option<String>,
    /// The key that seals secrets at rest (default DATA/master.key). Every node on one
    /// database must use the same key; another one is refused at start.
    #[arg(long)]
    pub master_key: Option<PathBuf>,
    /// PostgreSQL: the most connections this node keeps open [default: 16] (else the
    /// environment variable, else `[store] pool`). Keep the sum over all nodes near what the
    /// database server runs well: a few per core of it.
    #[arg(long, env = "POSTURE_DATABASE_POOL", value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub database_pool: Option<u16>,
}

impl DataDir {
    /// The store's location: the flags (or the environment), else `[store] url` in `config`.
    pub fn location(&self, config: &crate::config::Config) -> store::Location {
        store::Location {
            data: self.data.clone(),
            database: self.database.clone().or_else(|| config.store.url.clone()),
            master_key: self.master_key.clone(),
            pool: self.database_pool.map(usize::from).or(config.store.pool),
        }
    }
}

#[derive(Subcommand)]
pub enum Accounts {
    /// Create an account; prints {"AccountId": …}.
    Create {
        #[command(flatten)]
        dir: DataDir,
        /// Its name.
        #[arg(long)]
        name: String,
    },
    /// List the accounts with their repair authorization.
    List {
        #[command(flatten)]
        dir: DataDir,
    },
    /// Set how many repairs an account may run in all, and whether it is a trial.
    SetQuota {
        #[command(flatten)]
        dir: DataDir,
        /// The account.
        #[arg(long)]
        account: String,
        /// A number of repairs, or `unlimited`.
        #[arg(long)]
        repairs: String,
        /// A trial account may look but not repair.
        #[arg(long)]
        trial: Option<bool>,
    },
    /// Set how many instances one submission (SubmitOperationTask) of an account may touch; a
    /// larger one is refused with InstanceLimitExceeded and nothing is submitted.
    SetLimits {
        #[command(flatten)]
        dir: DataDir,
        /// The account.
        #[arg(long)]
        account: String,
        /// A number of instances (at least 1), or `unlimited`.
        #[arg(long)]
        max_instances: String,
    },
    /// Require (or not) that another key approves an account's repairs before they run
    /// (ApproveOperationTask); with --check-id, for one item only (`inherit`: the item follows
    /// the account again). Waits not answered within --expiry end CANCELLED.
    SetApproval {
        #[command(flatten)]
        dir: DataDir,
        /// The account.
        #[arg(long)]
        account: String,
        /// `true` or `false`; with --check-id also `inherit`.
        #[arg(long)]
        required: Option<String>,
        /// One check item instead of the whole account.
        #[arg(long)]
        check_id: Option<i64>,
        /// How long a task waits for approval: 90s, 24h, 7d (1 second to 30 days).
        #[arg(long)]
        expiry: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum Keys {
    /// Create an AccessKey; prints {"AccessKeyId", "AccessKeySecret"} (the secret only now).
    Create {
        #[command(flatten)]
        dir: DataDir,
        /// The account it acts for.
        #[arg(long)]
        account: String,
        /// `Admin`, `Operator`, `ReadOnly`, or action patterns such as `List*,GetCheckDetail`.
        #[arg(long)]
        policy: String,
    },
    /// List AccessKeys (never their secrets).
    List {
        #[command(flatten)]
        dir: DataDir,
        /// Only this account's.
        #[arg(long)]
        account: Option<String>,
    },
    /// Disable a key: it is refused from the next request on.
    Disable {
        #[command(flatten)]
        dir: DataDir,
        /// The AccessKeyId.
        #[arg(long)]
        key: String,
    },
    /// Enable a disabled key again.
    Enable {
        #[command(flatten)]
        dir: DataDir,
        /// The AccessKeyId.
        #[arg(long)]
        key: String,
    },
    /// Delete a key.
    Delete {
        #[command(flatten)]
        dir: DataDir,
        /// The AccessKeyId.
        #[arg(long)]
        key: String,
    },
}

#[derive(Subcommand)]
pub enum Instances {
    /// Register servers from JSON lines (a file, or `-` for standard input):
    /// {"InstanceId", "RegionId", "Vendor", "InstanceName", "Root", "OsType", "Live", "Services"}.
    /// Root is the filesystem root the host connector reads (`/` for the machine posture runs
    /// on). "Live": true says the root is the running system: repairs are then validated with
    /// the service's own checker, take effect on the running service and are verified by the
    /// value in effect; "Services" says how to reach them, paths inside the root:
    /// {"sshd": {"PidFile": "/run/sshd.pid"} or {"Unit": "ssh"}, "redis": {"Address": "127.0.0.1:6379"}}.
    /// Registering is idempotent.
    Add {
        #[command(flatten)]
        dir: DataDir,
        /// The account.
        #[arg(long)]
        account: String,
        /// JSON lines, or `-`.
        #[arg(long, default_value = "-")]
        file: String,
    },
}

pub(crate) fn open(dir: &DataDir) -> Result<Store, String> {
    let at = dir.location(&crate::config::Config::load(None, &dir.data)?);
    if at.database.is_none() && !dir.data.join("posture.db").exists() {
        return Err(format!(
            "{} has no database: run `posture serve --data {}` once first",
            dir.data.display(),
            dir.data.display()
        ));
    }
    Store::connect(&at).map_err(|e| format!("cannot open the database: {e}"))
}

/// Prints an answer as JSON (exit 0) or the error (exit 1).
pub(crate) fn done(result: Result<Value, String>) -> ExitCode {
    match result {
        Ok(v) => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn not_found<'a>(what: &'a str, id: &'a str) -> impl Fn(StoreError) -> String + 'a {
    move |e| match e {
        StoreError::NotFound => format!("no {what} {id}"),
        e => e.to_string(),
    }
}

/// A policy is a built-in name or a list of action patterns (letters and `*`).
pub fn valid_policy(p: &str) -> bool {
    matches!(p, "Admin" | "Operator" | "ReadOnly")
        || (!p.is_empty()
            && p.split(',').all(|pat| {
                let pat = pat.trim();
                !pat.is_empty() && pat.chars().all(|c| c.is_ascii_alphanumeric() || c == '*')
            }))
}

/// Runs a command that changes something and records it in the audit trail (who: `cli:` and
/// the user, from `local`), done or refused: `f` answers the account it acted for and what to
/// print; a refusal is recorded for `account`, when the command named one.
pub(crate) fn audited(
    store: &Store,
    account: Option<&str>,
    action: &str,
    params: Value,
    f: impl FnOnce(&Store) -> Result<(String, Value), String>,
) -> Result<Value, String> {
    let result = f(store);
    let (account_id, outcome) = match &result {
        Ok((account_id, _)) => (account_id.clone(), "OK".to_string()),
        Err(_) => (account.unwrap_or_default().to_string(), "Refused".to_string()),
    };
    // The user id is the process's own (an environment variable could say anything).
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid().to_string()).unwrap_or_else(|_| "?".into());
    let name = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_default();
    let user = if name.is_empty() { format!("uid {uid}") } else { format!("{name} (uid {uid})") };
    let entry = store::AuditEntry {
        account_id,
        at_ms: store::now_ms(),
        actor: format!("cli:{user}"),
        source: "local".into(),
        action: action.into(),
        params: params.to_string(),
        outcome,
        request_id: String::new(),
    };
    if let Err(e) = store.record_audit(&entry, None) {
        eprintln!("warning: the audit trail could not record this command: {e}");
    }
    result.map(|(_, out)| out)
}

pub fn accounts(cmd: Accounts) -> ExitCode {
    done((|| match cmd {
        Accounts::Create { dir, name } => {
            audited(&open(&dir)?, None, "AccountsCreate", json!({"Name": name}), |store| {
                let a = store.create_account(&name).map_err(|e| e.to_string())?;
                Ok((a.id.clone(), json!({"AccountId": a.id})))
            })
        }
        Accounts::List { dir } => {
            let list = open(&dir)?.list_accounts().map_err(|e| e.to_string())?;
            Ok(Value::Array(list.into_iter().map(|a| json!({"AccountId": a.id, "Name": a.name, "Repairs": a.repair_quota.map_or(json!("unlimited"), |q| json!(q)), "Trial": a.trial, "MaxInstancesPerSubmission": a.max_submission_instances.map_or(json!("unlimited"), |m| json!(m))})).collect()))
        }
        Accounts::SetQuota { dir, account, repairs, trial } => {
            let quota = match repairs.as_str() {
                "unlimited" => None,
                n => Some(
                    n.parse::<i64>().ok().filter(|n| *n >= 0).ok_or("--repairs takes a number ≥ 0 or `unlimited`")?,
                ),
            };
            let params = json!({"AccountId": account, "Repairs": repairs, "Trial": trial});
            audited(&open(&dir)?, Some(&account), "AccountsSetQuota", params, |store| {
                let a = store.set_quota(&account, quota, trial).map_err(not_found("account", &account))?;
                let out = json!({"AccountId": a.id, "Repairs": a.repair_quota.map_or(json!("unlimited"), |q| json!(q)), "Trial": a.trial});
                Ok((a.id, out))
            })
        }
        Accounts::SetLimits { dir, account, max_instances } => {
            let max = match max_instances.as_str() {
                "unlimited" => None,
                n => Some(
                    n.parse::<i64>()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or("--max-instances takes a number ≥ 1 or `unlimited`")?,
                ),
            };
            let params = json!({"AccountId": account, "MaxInstances": max_instances});
            audited(&open(&dir)?, Some(&account), "AccountsSetLimits", params, |store| {
                let a = store.set_limits(&account, max).map_err(not_found("account", &account))?;
                let out = json!({"AccountId": a.id, "MaxInstancesPerSubmission": a.max_submission_instances.map_or(json!("unlimited"), |m| json!(m))});
                Ok((a.id, out))
            })
        }
        Accounts::SetApproval { dir, account, required, check_id, expiry } => {
            let flag = |text: &str| match text {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(format!(
                    "--required takes true or false{}",
                    if check_id.is_some() { " or inherit" } else { "" }
                )),
            };
            let mut change = store::ApprovalChange::default();
            match (check_id, required.as_deref()) {
                (Some(id), Some("inherit")) => change.item = Some((id, None)),
                (Some(id), Some(text)) => change.item = Some((id, Some(flag(text)?))),
                (Some(_), None) => return Err("--check-id needs --required".into()),
                (None, text) => change.required = text.map(flag).transpose()?,
            }
            if let Some(text) = &expiry {
                let ms = api::ops::approvals::parse_expiry(text)
                    .ok_or("--expiry takes a duration from 1s to 30d, such as 90s, 24h or 7d")?;
                change.expiry_ms = Some(ms);
            }
            if change == store::ApprovalChange::default() {
                return Err("give --required or --expiry".into());
            }
            let params = json!({"AccountId": account, "Required": required, "CheckId": check_id, "Expiry": expiry});
            audited(&open(&dir)?, Some(&account), "AccountsSetApproval", params, |store| {
                let c = store.set_approval(&account, &change).map_err(not_found("account", &account))?;
                Ok((account.clone(), api::ops::approvals::config_json(&c)))
            })
        }
    })())
}

pub fn keys(cmd: Keys) -> ExitCode {
    done((|| match cmd {
        Keys::Create { dir, account, policy } => {
            if !valid_policy(&policy) {
                return Err(format!("{policy:?} is not a policy: use Admin, Operator, ReadOnly or action patterns like List*,GetCheckDetail"));
            }
            audited(
                &open(&dir)?,
                Some(&account),
                "KeysCreate",
                json!({"AccountId": account, "Policy": policy}),
                |store| {
                    let k = store.create_key(&account, &policy).map_err(not_found("account", &account))?;
                    Ok((k.account_id, json!({"AccessKeyId": k.id, "AccessKeySecret": k.secret})))
                },
            )
        }
        Keys::List { dir, account } => {
            let list = open(&dir)?.list_keys(account.as_deref()).map_err(|e| e.to_string())?;
            Ok(Value::Array(list.into_iter().map(|k| json!({"AccessKeyId": k.id, "AccountId": k.account_id, "Policy": k.policy, "Enabled": k.enabled, "CreateTime": k.created_ms})).collect()))
        }
        Keys::Disable { dir, key } => key_change(&dir, &key, "KeysDisable", |s| s.set_key_enabled(&key, false)),
        Keys::Enable { dir, key } => key_change(&dir, &key, "KeysEnable", |s| s.set_key_enabled(&key, true)),
        Keys::Delete { dir, key } => key_change(&dir, &key, "KeysDelete", |s| s.delete_key(&key)),
    })())
}

/// Disables, enables or deletes a key, recorded for the key's account.
fn key_change(
    dir: &DataDir,
    key: &str,
    action: &str,
    change: impl FnOnce(&Store) -> store::Result<()>,
) -> Result<Value, String> {
    let store = open(dir)?;
    let owner = store.get_key(key).map_err(|e| e.to_string())?.map(|k| k.account_id);
    audited(&store, owner.as_deref(), action, json!({"AccessKeyId": key}), |store| {
        change(store).map_err(not_found("AccessKey", key))?;
        let out = match action {
            "KeysDelete" => json!({"AccessKeyId": key, "Deleted": true}),
            _ => json!({"AccessKeyId": key, "Enabled": action == "KeysEnable"}),
        };
        Ok((owner.clone().unwrap_or_default(), out))
    })
}

pub fn instances(cmd: Instances) -> ExitCode {
    done((|| match cmd {
        Instances::Add { dir, account, file } => {
            let store = open(&dir)?;
            store.get_account(&account).map_err(|e| e.to_string())?.ok_or(format!("no account {account}"))?;
            let reader: Box<dyn BufRead> = if file == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                Box::new(std::io::BufReader::new(std::fs::File::open(&file).map_err(|e| format!("{file}: {e}"))?))
            };
            let mut batch = Vec::new();
            for (n, line) in reader.lines().enumerate() {
                let line = line.map_err(|e| e.to_string())?;
                if line.trim().is_empty() {
                    continue;
                }
                batch.push(parse_instance(&line).map_err(|e| format!("line {}: {e}", n + 1))?);
            }
            // The record names each instance and where it is (its root: where repairs write).
            let listed: Vec<Value> =
                batch.iter().take(100).map(|i| json!({"InstanceId": i.instance_id, "Root": i.locator})).collect();
            let params = json!({"AccountId": account, "Count": batch.len(), "Instances (first 100)": listed});
            audited(&store, Some(&account), "InstancesAdd", params, |store| {
                let count = store.upsert_instances(&account, &batch).map_err(|e| e.to_string())?;
                Ok((account.clone(), json!({"Registered": count})))
            })
        }
    })())
}

fn parse_instance(line: &str) -> Result<NewInstance, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let field = |name: &str| v.get(name).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
    let id = field("InstanceId").ok_or("InstanceId is required")?;
    let vendor = match v.get("Vendor") {
        None => Vendor::Idc,
        Some(Value::Number(n)) => n.as_i64().and_then(Vendor::from_code).ok_or("Vendor is not a vendor code")?,
        Some(Value::String(s)) => Vendor::parse(s).ok_or("Vendor is not a vendor code")?,
        Some(_) => return Err("Vendor is not a vendor code".into()),
    };
    let root = field("Root").ok_or("Root is required")?;
    if !root.starts_with('/') {
        return Err("Root must be an absolute path".into());
    }
    let os = field("OsType").unwrap_or("linux").to_lowercase();
    if !matches!(os.as_str(), "linux" | "windows") {
        return Err("OsType is linux or windows".into());
    }
    let live = match (v.get("Live"), v.get("Services")) {
        (None | Some(Value::Bool(false)), None) => None,
        (Some(Value::Bool(true)), None) => Some(Services::default()),
        (Some(Value::Bool(true)), Some(services)) => {
            let services: Services = serde_json::from_value(services.clone()).map_err(|e| format!("Services: {e}"))?;
            services.check()?;
            Some(services)
        }
        (Some(Value::Bool(_)) | None, Some(_)) => {
            return Err("Services is for a live instance: add \"Live\": true".into())
        }
        (Some(_), _) => return Err("Live is true or false".into()),
    };
    Ok(NewInstance {
        live,
        vendor,
        region_id: field("RegionId").unwrap_or("default").to_string(),
        instance_id: id.to_string(),
        instance_name: field("InstanceName").unwrap_or(id).to_string(),
        connector: "host".to_string(),
        locator: root.to_string(),
        os_type: os,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_and_instance_lines_are_checked() {
        assert!(valid_policy("ReadOnly") && valid_policy("List*,GetCheckDetail") && valid_policy("*"));
        assert!(!valid_policy("") && !valid_policy("List*;rm") && !valid_policy("List*,,Get*"));
        let i = parse_instance(r#"{"InstanceId":"i-1","Vendor":"ALIYUN","RegionId":"cn-hangzhou","Root":"/srv/i-1"}"#)
            .unwrap();
        assert_eq!((i.vendor, i.instance_name.as_str(), i.os_type.as_str()), (Vendor::Aliyun, "i-1", "linux"));
        assert!(parse_instance(r#"{"InstanceId":"i-1","Root":"relative"}"#).is_err());
        assert!(parse_instance(r#"{"Root":"/"}"#).is_err());
        assert!(parse_instance(r#"{"InstanceId":"i-1","Root":"/","Vendor":6}"#).is_err());
        assert_eq!(parse_instance(r#"{"InstanceId":"i-1","Root":"/"}"#).unwrap().live, None);
        let live = parse_instance(
            r#"{"InstanceId":"i-1","Root":"/srv/r","Live":true,"Services":{"sshd":{"PidFile":"/run/sshd.pid"}}}"#,
        )
        .unwrap();
        assert_eq!(live.live.unwrap().sshd.unwrap().pid_file.as_deref(), Some("/run/sshd.pid"));
        assert_eq!(
            parse_instance(r#"{"InstanceId":"i-1","Root":"/","Live":true}"#).unwrap().live,
            Some(Services::default())
        );
        for bad in [
            r#"{"InstanceId":"i-1","Root":"/","Services":{}}"#,
            r#"{"InstanceId":"i-1","Root":"/","Live":"yes"}"#,
            r#"{"InstanceId":"i-1","Root":"/","Live":true,"Services":{"sshd":{"Unit":"a b"}}}"#,
            r#"{"InstanceId":"i-1","Root":"/","Live":true,"Services":{"apache":{}}}"#,
        ] {
            assert!(parse_instance(bad).is_err(), "{bad}");
        }
    }
}
