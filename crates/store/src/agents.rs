//! Agents: enrolment tokens, enrolled agents and their keys, and the work an agent takes for
//! its own instance (its tasks, under a fenced lease; its details of running check runs).

use std::sync::LazyLock;

use sha2::{Digest, Sha256};

use crate::instances::{instance_from, INSTANCE_COLS};
use crate::runs::{detail_from, run_from, DETAIL_COLS, RUN_COLS};
use crate::sql::{args, skip_locked, Conn, Row};
use crate::tasks::get_task_in;
use crate::{
    new_id, now_ms, CheckRun, CheckRunDetail, Claimed, Instance, NewInstance, Result, Store, StoreError, AGENT_LOCATOR,
};
use model::{RunStatus, TaskStatus};

/// An enrolled agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agent {
    /// Its id (`agt-` and 24 hex), sent with every request it signs.
    pub id: String,
    /// The account it belongs to.
    pub account_id: String,
    /// Its instance.
    pub instance_pk: i64,
    /// Its instance's InstanceId.
    pub instance_id: String,
    /// Its Ed25519 public key (32 bytes).
    pub public_key: Vec<u8>,
    /// The version it reported.
    pub version: String,
    /// What it said of its server (JSON: hostname, OS, kernel, addresses).
    pub info: String,
    /// When it enrolled.
    pub enrolled_ms: i64,
    /// When it was last heard from (kept a few seconds behind: see `agents_seen`).
    pub last_seen_ms: i64,
    /// When it was revoked (None: active).
    pub revoked_ms: Option<i64>,
}

/// An enrolment: the token, the instance to register, and the agent's key.
#[derive(Clone, Debug)]
pub struct Enrolment {
    /// The token, as given.
    pub token: String,
    /// The instance (its locator is set to [`AGENT_LOCATOR`]).
    pub instance: NewInstance,
    /// The agent's Ed25519 public key.
    pub public_key: Vec<u8>,
    /// The agent's version.
    pub version: String,
    /// What it says of its server (JSON).
    pub info: String,
}

/// Why an enrolment was refused (nothing is written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnrolRefusal {
    /// No such token (never created, or mistyped).
    UnknownToken,
    /// The token has expired.
    Expired,
    /// The token has been used as many times as it allowed.
    UsedUp,
    /// The token was created for another InstanceId.
    OtherInstance(String),
    /// The InstanceId is already registered: only a token created for it may enrol it again.
    InstanceExists,
}

/// A token's stored digest: the token itself is shown once and never kept.
fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

const AGENT_COLS: &str = "a.id, a.account_id, a.instance_pk, i.instance_id, a.public_key, a.version, a.info, a.enrolled_ms, a.last_seen_ms, a.revoked_ms";
/// The agents with their instances (AGENT_COLS reads both).
const AGENT_FROM: &str = " FROM agents a JOIN instances i ON i.pk = a.instance_pk";

fn agent_from(r: &Row) -> Result<Agent> {
    Ok(Agent {
        id: r.get(0)?,
        account_id: r.get(1)?,
        instance_pk: r.get(2)?,
        instance_id: r.get(3)?,
        public_key: r.get(4)?,
        version: r.get(5)?,
        info: r.get(6)?,
        enrolled_ms: r.get(7)?,
        last_seen_ms: r.get(8)?,
        revoked_ms: r.get(9)?,
    })
}

/// Statuses in which nothing has been changed yet: a task its agent has not taken that far
/// within the deadline fails (the sweep), instead of waiting for an agent that may never come.
const NOT_YET_CHANGING: &str = "'INIT', 'IN_BACKUP', 'BACKED_UP', 'ROLL_BACK_INIT'";

/// The agent of instance `?3` leases its oldest due task: one statement, fenced, as a worker's
/// claim is.
static CLAIM_AGENT_TASK_SQL: LazyLock<[String; 2]> = LazyLock::new(|| {
    skip_locked(format!(
        "UPDATE tasks SET lease_until_ms = CAST(?1 AS BIGINT) + ?2, fence = fence + 1, attempts = attempts + 1
         WHERE rowid = (SELECT rowid FROM tasks WHERE instance_pk = ?3 AND {} AND agent = 1 AND lease_until_ms < ?1 ORDER BY rowid LIMIT 1)
         RETURNING id, account_id, fence",
        crate::status_in("status", TaskStatus::is_claimable)
    ))
});

/// Whether instance `?1`'s agent has a due task, an unchecked detail of a running run or a
/// preview to answer.
static AGENT_HAS_WORK_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT EXISTS (SELECT 1 FROM tasks WHERE instance_pk = ?1 AND {} AND agent = 1 AND lease_until_ms < ?2)
             OR EXISTS (SELECT 1 FROM check_run_details d WHERE d.instance_pk = ?1 AND d.status_code IN (0, 1)
                          AND EXISTS (SELECT 1 FROM check_runs r WHERE r.id = d.run_id AND r.status_code = ?3))
             OR EXISTS (SELECT 1 FROM agent_previews p WHERE p.instance_pk = ?1 AND p.answer IS NULL
                          AND p.created_ms >= ?2 - {})",
        crate::status_in("status", TaskStatus::is_claimable),
        crate::PREVIEW_WAIT_MS
    )
});

/// A task of an agent not heard from for `?3` ms, submitted at least that long ago, and not yet
/// changing anything: leased (fenced) so that the engine can fail it.
static CLAIM_STALE_AGENT_TASK_SQL: LazyLock<[String; 2]> = LazyLock::new(|| {
    skip_locked(format!(
        "UPDATE tasks SET lease_until_ms = CAST(?1 AS BIGINT) + ?2, fence = fence + 1
         WHERE rowid = (SELECT rowid FROM tasks t WHERE {} AND t.agent = 1 AND t.status IN ({NOT_YET_CHANGING})
                          AND t.lease_until_ms < ?1 AND t.created_ms < ?1 - ?3
                          AND COALESCE((SELECT MAX(a.last_seen_ms) FROM agents a WHERE a.instance_pk = t.instance_pk AND a.revoked_ms IS NULL), 0) < ?1 - ?3
                        LIMIT 1)
         RETURNING id, account_id, fence",
        crate::status_in("t.status", TaskStatus::is_claimable)
    ))
});

/// Runs a claim statement (of now, the lease and one value of its own) and reads the task it
/// leased, in one write.
fn claim_with(
    store: &Store,
    sql: &'static LazyLock<[String; 2]>,
    lease_ms: i64,
    value: i64,
    by: &'static str,
) -> Result<Option<Claimed>> {
    let now = now_ms();
    store.write(move |tx| {
        let [sqlite, postgres] = &**sql;
        let got: Option<(String, String, i64)> =
            tx.query_opt(tx.pick(sqlite, postgres), args![now, lease_ms, value], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        let Some((id, account, fence)) = got else { return Ok(None) };
        let task = get_task_in(tx, &account, &id)?.ok_or(StoreError::NotFound)?;
        Ok(Some(Claimed { task, fence, by: by.to_string() }))
    })
}

/// Agents and the work they take.
pub trait Agents: Send + Sync {
    /// Creates an enrolment token of the account, good for `uses` enrolments until
    /// `expires_ms`; with an InstanceId, it enrols (or re-enrols) only that one. The token is
    /// returned here and never again.
    fn create_agent_token(
        &self,
        account_id: &str,
        instance_id: Option<&str>,
        uses: i64,
        expires_ms: i64,
    ) -> Result<String>;

    /// Enrols an agent: spends one use of the token, registers (or takes over) its instance,
    /// revokes the instance's earlier agent, all in one transaction.
    fn enroll_agent(&self, e: &Enrolment) -> Result<std::result::Result<(Agent, Instance), EnrolRefusal>>;

    /// One agent, of any account (requests name their agent before they are verified), and
    /// its instance.
    fn agent(&self, id: &str) -> Result<Option<(Agent, Instance)>>;

    /// The agents of an account (revoked ones too), oldest first.
    fn list_agents(&self, account_id: &str) -> Result<Vec<Agent>>;

    /// Revokes the agent with this AgentId, or the active agent of this InstanceId; false if
    /// the account has none such.
    fn revoke_agent(&self, account_id: &str, agent_or_instance: &str) -> Result<bool>;

    /// Records the version an agent now reports (it was upgraded in place).
    fn set_agent_version(&self, agent_id: &str, version: &str) -> Result<()>;

    /// Records when agents were last heard from (the API keeps them in memory and writes them
    /// a few seconds at a time: one statement per agent, one transaction in all).
    fn agents_seen(&self, seen: &[(String, i64)]) -> Result<()>;

    /// Whether the agent of an instance has anything to do now (a read, before a claim writes).
    fn agent_has_work(&self, instance_pk: i64) -> Result<bool>;

    /// Leases the oldest due task of an instance reached through its agent.
    fn claim_agent_task(&self, instance_pk: i64, lease_ms: i64) -> Result<Option<Claimed>>;

    /// Whether the lease `fence` of a task is still held and unexpired (a late report from an
    /// expired lease is refused even when no one has taken the task since).
    fn lease_held(&self, task_id: &str, fence: i64) -> Result<bool>;

    /// Leases a task whose agent has not been heard from for `deadline_ms` and that has not
    /// changed anything yet, for the engine to fail.
    fn claim_stale_agent_task(&self, deadline_ms: i64, lease_ms: i64) -> Result<Option<Claimed>>;

    /// The next unchecked detail of a running check run on an instance (for its agent).
    fn agent_detail(&self, instance_pk: i64) -> Result<Option<(CheckRun, CheckRunDetail)>>;

    /// One detail and its run, by the detail's id.
    fn detail_by_id(&self, detail_id: &str) -> Result<Option<(CheckRun, CheckRunDetail)>>;
}

const DETAIL_FROM: &str = " FROM check_run_details d JOIN instances i ON i.pk = d.instance_pk";

fn detail_with_run(c: &Conn, d: Option<CheckRunDetail>) -> Result<Option<(CheckRun, CheckRunDetail)>> {
    let Some(d) = d else { return Ok(None) };
    let run = c.query_opt(&format!("SELECT {RUN_COLS} FROM check_runs WHERE id = ?"), args![&d.run_id], run_from)?;
    Ok(run.map(|r| (r, d)))
}

impl Agents for Store {
    fn create_agent_token(
        &self,
        account_id: &str,
        instance_id: Option<&str>,
        uses: i64,
        expires_ms: i64,
    ) -> Result<String> {
        let token = format!("pat-{}", new_id(24));
        let (digest, account_id, instance_id) =
            (token_digest(&token), account_id.to_string(), instance_id.map(str::to_string));
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO agent_tokens (digest, account_id, instance_id, uses_left, expires_ms, created_ms) VALUES (?, ?, ?, ?, ?, ?)",
                args![&digest, &account_id, &instance_id, uses, expires_ms, now_ms()],
            )?;
            Ok(())
        })?;
        Ok(token)
    }

    fn enroll_agent(&self, e: &Enrolment) -> Result<std::result::Result<(Agent, Instance), EnrolRefusal>> {
        let e = e.clone();
        let digest = token_digest(&e.token);
        let now = now_ms();
        self.write(move |tx| {
            let account: Option<String> =
                tx.query_opt("SELECT account_id FROM agent_tokens WHERE digest = ?", args![&digest], |r| r.get(0))?;
            let Some(account_id) = account else {
                return Ok(Err(EnrolRefusal::UnknownToken));
            };
            // On PostgreSQL, enrolments of one account take turns (its row lock): two uses of a
            // token's last use, or two enrolments of one new InstanceId with a general token,
            // cannot both pass the checks below. (SQLite's one writer takes turns already.)
            crate::tasks::lock_account(tx, &account_id)?;
            let (only, uses_left, expires_ms): (Option<String>, i64, i64) = tx.query_one(
                "SELECT instance_id, uses_left, expires_ms FROM agent_tokens WHERE digest = ?",
                args![&digest],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            if expires_ms <= now {
                return Ok(Err(EnrolRefusal::Expired));
            }
            if uses_left <= 0 {
                return Ok(Err(EnrolRefusal::UsedUp));
            }
            let n = &e.instance;
            match &only {
                Some(id) if *id != n.instance_id => return Ok(Err(EnrolRefusal::OtherInstance(id.clone()))),
                Some(_) => {}
                None => {
                    let known: bool = tx.value(
                        "SELECT EXISTS (SELECT 1 FROM instances WHERE account_id = ? AND instance_id = ?)",
                        args![&account_id, &n.instance_id],
                    )?;
                    if known {
                        return Ok(Err(EnrolRefusal::InstanceExists));
                    }
                }
            }
            tx.execute("UPDATE agent_tokens SET uses_left = uses_left - 1 WHERE digest = ?", args![&digest])?;
            let n = NewInstance { locator: AGENT_LOCATOR.to_string(), ..n.clone() };
            let instance = crate::instances::upsert_in(tx, &account_id, &n)?;
            tx.execute(
                "UPDATE agents SET revoked_ms = ? WHERE instance_pk = ? AND revoked_ms IS NULL",
                args![now, instance.pk],
            )?;
            let id = format!("agt-{}", new_id(12));
            tx.execute(
                "INSERT INTO agents (id, account_id, instance_pk, public_key, version, info, enrolled_ms, last_seen_ms)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                args![&id, &account_id, instance.pk, &e.public_key, &e.version, &e.info, now, now],
            )?;
            let agent =
                tx.query_one(&format!("SELECT {AGENT_COLS}{AGENT_FROM} WHERE a.id = ?"), args![&id], agent_from)?;
            Ok(Ok((agent, instance)))
        })
    }

    fn agent(&self, id: &str) -> Result<Option<(Agent, Instance)>> {
        self.read(|c| {
            c.query_opt(&format!("SELECT {AGENT_COLS}, {INSTANCE_COLS}{AGENT_FROM} WHERE a.id = ?"), args![id], |r| {
                Ok((agent_from(r)?, instance_from(r, 10)?))
            })
        })
    }

    fn list_agents(&self, account_id: &str) -> Result<Vec<Agent>> {
        self.read(|c| {
            c.query(
                &format!("SELECT {AGENT_COLS}{AGENT_FROM} WHERE a.account_id = ? ORDER BY a.enrolled_ms, a.id"),
                args![account_id],
                agent_from,
            )
        })
    }

    fn revoke_agent(&self, account_id: &str, agent_or_instance: &str) -> Result<bool> {
        let (account_id, name) = (account_id.to_string(), agent_or_instance.to_string());
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE agents SET revoked_ms = ? WHERE account_id = ? AND revoked_ms IS NULL
                   AND (id = ? OR instance_pk IN (SELECT pk FROM instances WHERE account_id = ? AND instance_id = ?))",
                args![now_ms(), &account_id, &name, &account_id, &name],
            )?;
            Ok(n > 0)
        })
    }

    fn set_agent_version(&self, agent_id: &str, version: &str) -> Result<()> {
        let (id, version) = (agent_id.to_string(), version.to_string());
        self.write(move |tx| tx.execute("UPDATE agents SET version = ? WHERE id = ?", args![&version, &id]).map(drop))
    }

    fn agents_seen(&self, seen: &[(String, i64)]) -> Result<()> {
        if seen.is_empty() {
            return Ok(());
        }
        let seen = seen.to_vec();
        self.write(move |tx| {
            for (id, at) in &seen {
                tx.execute(
                    "UPDATE agents SET last_seen_ms = ?, offline_reported = 0 WHERE id = ? AND last_seen_ms < ?",
                    args![*at, id, *at],
                )?;
            }
            Ok(())
        })
    }

    fn agent_has_work(&self, instance_pk: i64) -> Result<bool> {
        self.read(|c| c.value(&AGENT_HAS_WORK_SQL, args![instance_pk, now_ms(), RunStatus::Checking.code()]))
    }

    fn claim_agent_task(&self, instance_pk: i64, lease_ms: i64) -> Result<Option<Claimed>> {
        // The engine names the agent it hands the task to.
        claim_with(self, &CLAIM_AGENT_TASK_SQL, lease_ms, instance_pk, "agent")
    }

    fn lease_held(&self, task_id: &str, fence: i64) -> Result<bool> {
        self.read(|c| {
            c.value(
                "SELECT EXISTS (SELECT 1 FROM tasks WHERE id = ? AND fence = ? AND lease_until_ms >= ?)",
                args![task_id, fence, now_ms()],
            )
        })
    }

    fn claim_stale_agent_task(&self, deadline_ms: i64, lease_ms: i64) -> Result<Option<Claimed>> {
        claim_with(self, &CLAIM_STALE_AGENT_TASK_SQL, lease_ms, deadline_ms, crate::SERVICE_ACTOR)
    }

    fn agent_detail(&self, instance_pk: i64) -> Result<Option<(CheckRun, CheckRunDetail)>> {
        self.read(|c| {
            let d = c.query_opt(
                &format!(
                    "SELECT {DETAIL_COLS}{DETAIL_FROM} WHERE d.instance_pk = ? AND d.status_code IN (0, 1)
                       AND EXISTS (SELECT 1 FROM check_runs r WHERE r.id = d.run_id AND r.status_code = ?)
                     ORDER BY d.created_ms LIMIT 1"
                ),
                args![instance_pk, RunStatus::Checking.code()],
                |r| detail_from(r, 0),
            )?;
            detail_with_run(c, d)
        })
    }

    fn detail_by_id(&self, detail_id: &str) -> Result<Option<(CheckRun, CheckRunDetail)>> {
        self.read(|c| {
            let d =
                c.query_opt(&format!("SELECT {DETAIL_COLS}{DETAIL_FROM} WHERE d.id = ?"), args![detail_id], |r| {
                    detail_from(r, 0)
                })?;
            detail_with_run(c, d)
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testutil::store;
    use crate::Accounts;
    use model::Vendor;

    pub(crate) fn enrolment(token: &str, instance_id: &str) -> Enrolment {
        Enrolment {
            token: token.into(),
            instance: NewInstance {
                vendor: Vendor::Idc,
                region_id: "r".into(),
                instance_id: instance_id.into(),
                instance_name: instance_id.into(),
                connector: "host".into(),
                locator: AGENT_LOCATOR.into(),
                os_type: "linux".into(),
                live: None,
            },
            public_key: vec![7; 32],
            version: "0.1.0".into(),
            info: "{}".into(),
        }
    }

    /// Enrols from 8 threads at once; the refusals, and how many were taken.
    fn race(s: &Store, token: &str, instance_id: impl Fn(usize) -> String) -> (usize, Vec<EnrolRefusal>) {
        let outcomes: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let e = enrolment(token, &instance_id(i));
                    scope.spawn(move || s.enroll_agent(&e).unwrap())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let taken = outcomes.iter().filter(|o| o.is_ok()).count();
        (taken, outcomes.into_iter().filter_map(|o| o.err()).collect())
    }

    crate::testutil::both_backends! {
        fn a_token_is_used_no_more_often_than_it_allows_even_at_once() {
            let (_d, s) = store();
            let account = s.create_account("t").unwrap().id;
            let once = s.create_agent_token(&account, None, 1, now_ms() + 60_000).unwrap();
            let (taken, refused) = race(&s, &once, |i| format!("new-{i}"));
            assert_eq!(taken, 1);
            assert!(refused.iter().all(|r| *r == EnrolRefusal::UsedUp), "{refused:?}");
            // A general token enrols one new InstanceId once, however many try it at once.
            let many = s.create_agent_token(&account, None, 8, now_ms() + 60_000).unwrap();
            let (taken, refused) = race(&s, &many, |_| "same".to_string());
            assert_eq!(taken, 1);
            assert!(refused.iter().all(|r| *r == EnrolRefusal::InstanceExists), "{refused:?}");
            assert_eq!(s.list_agents(&account).unwrap().iter().filter(|a| a.revoked_ms.is_none()).count(), 2);
        }
    }
}
