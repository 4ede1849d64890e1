//! `posture agents`: enrolment tokens, the agents of an account, revocation, on the data
//! directory (safe while `serve` runs on it). Answers are JSON on stdout.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::Value;
use store::{Accounts as _, Agents as _};

use crate::admin::{audited, done, open, DataDir};

#[derive(Subcommand)]
pub enum AgentsCmd {
    /// Enrolment tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// List the account's agents (revoked ones too), with whether each is online.
    List {
        #[command(flatten)]
        dir: DataDir,
        /// The account.
        #[arg(long)]
        account: String,
    },
    /// Revoke an agent (by AgentId, or the active agent of an InstanceId): its next request is
    /// refused and it stops.
    Revoke {
        #[command(flatten)]
        dir: DataDir,
        /// The account.
        #[arg(long)]
        account: String,
        /// The AgentId or InstanceId.
        agent: String,
    },
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Create an enrolment token; prints {"Token", "ExpiresAt"} (the token only now).
    Create {
        #[command(flatten)]
        dir: DataDir,
        /// The account the agents enrol into.
        #[arg(long)]
        account: String,
        /// How long the token can be used: 90s, 15m, 24h, 7d (at most 30d).
        #[arg(long, default_value = "24h")]
        expires: String,
        /// How many enrolments it allows.
        #[arg(long, default_value_t = 1)]
        uses: i64,
        /// Only this InstanceId, which it may also re-enrol (a general token enrols only new
        /// InstanceIds, so its holder cannot take over a server already enrolled).
        #[arg(long)]
        instance_id: Option<String>,
    },
}

pub fn run(cmd: AgentsCmd) -> ExitCode {
    done((|| match cmd {
        AgentsCmd::Token(TokenCmd::Create { dir, account, expires, uses, instance_id }) => {
            let params =
                serde_json::json!({"AccountId": account, "Expires": expires, "Uses": uses, "InstanceId": instance_id});
            audited(&open(&dir)?, Some(&account), "AgentsTokenCreate", params, |store| {
                store.get_account(&account).map_err(|e| e.to_string())?.ok_or(format!("no account {account}"))?;
                let out = api::ops::agents::create_token(store, &account, instance_id.as_deref(), &expires, uses)?;
                Ok((account.clone(), out))
            })
        }
        AgentsCmd::List { dir, account } => {
            let now = store::now_ms();
            let agents = open(&dir)?.list_agents(&account).map_err(|e| e.to_string())?;
            Ok(Value::Array(
                agents.iter().map(|a| api::ops::agents::agent_json(a, now, api::ops::agents::ONLINE_MS)).collect(),
            ))
        }
        AgentsCmd::Revoke { dir, account, agent } => {
            let params = serde_json::json!({"AccountId": account, "Agent": agent});
            audited(&open(&dir)?, Some(&account), "AgentsRevoke", params, |store| {
                if !store.revoke_agent(&account, &agent).map_err(|e| e.to_string())? {
                    return Err(format!("the account {account} has no active agent {agent}"));
                }
                Ok((account.clone(), serde_json::json!({"Revoked": agent})))
            })
        }
    })())
}
