//! Agent administration: enrolment tokens, the account's agents, revocation (posture actions;
//! `posture agents` does the same on the data directory).

use model::ApiError;
use serde_json::{json, Value};
use store::{Agent, ApiStore};

use super::{db, Ctx};
use crate::params::Params;

/// The longest a token may live.
const MAX_TOKEN_LIFE_MS: i64 = 30 * 24 * 3600 * 1000;

/// A duration such as `90s`, `15m`, `24h`, `7d` (a bare number is seconds), in milliseconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    let t = text.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: i64 = digits.parse().ok()?;
    let ms = match unit {
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(ms).filter(|ms| *ms > 0)
}

/// Creates an enrolment token: `{"Token", "ExpiresAt"}` (ms since the epoch).
pub fn create_token(
    store: &dyn ApiStore,
    account_id: &str,
    instance_id: Option<&str>,
    expires: &str,
    uses: i64,
) -> Result<Value, String> {
    let life = parse_duration(expires)
        .filter(|ms| *ms <= MAX_TOKEN_LIFE_MS)
        .ok_or_else(|| format!("{expires:?} is not a lifetime up to 30d (e.g. 90s, 15m, 24h, 7d)"))?;
    if !(1..=100_000).contains(&uses) {
        return Err("uses must be 1 to 100000".into());
    }
    if let Some(id) = instance_id {
        if id.trim().is_empty() || id.len() > 128 || id.chars().any(char::is_control) {
            return Err("the InstanceId must be 1 to 128 printable characters".into());
        }
    }
    let expires_at = store::now_ms() + life;
    let token = store.create_agent_token(account_id, instance_id, uses, expires_at).map_err(|e| e.to_string())?;
    Ok(json!({"Token": token, "ExpiresAt": expires_at, "Uses": uses, "InstanceId": instance_id}))
}

/// One agent as listed; online when heard from within `online_ms`.
pub fn agent_json(a: &Agent, now: i64, online_ms: i64) -> Value {
    let info: Value = serde_json::from_str(&a.info).unwrap_or(Value::Null);
    json!({
        "AgentId": a.id,
        "InstanceId": a.instance_id,
        "Version": a.version,
        "Info": info,
        "EnrolledAt": a.enrolled_ms,
        "LastSeenAt": a.last_seen_ms,
        "Online": a.revoked_ms.is_none() && now - a.last_seen_ms <= online_ms,
        "Revoked": a.revoked_ms.is_some(),
    })
}

/// An agent polls at least this often; one not heard from for this long is offline.
pub const ONLINE_MS: i64 = 90_000;

/// `CreateAgentToken`: InstanceId (optional), Expires (default 24h), Uses (default 1).
pub fn create_agent_token(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let uses = p.int("Uses")?.unwrap_or(1);
    let expires = p.str("Expires").unwrap_or("24h");
    create_token(ctx.store, ctx.account_id, p.str("InstanceId"), expires, uses).map_err(|e| ApiError::illegal_param(&e))
}

/// `DescribeAgents`: the account's agents, revoked ones too.
pub fn describe_agents(ctx: &Ctx, _p: &Params) -> Result<Value, ApiError> {
    let now = store::now_ms();
    let agents = ctx.store.list_agents(ctx.account_id).map_err(db)?;
    Ok(json!({"Agents": agents.iter().map(|a| agent_json(a, now, ONLINE_MS)).collect::<Vec<_>>()}))
}

/// `RevokeAgent`: AgentId, or InstanceId (its active agent).
pub fn revoke_agent(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let name = p.str("AgentId").or(p.str("InstanceId")).ok_or_else(|| ApiError::missing_parameter("AgentId"))?;
    if !ctx.store.revoke_agent(ctx.account_id, name).map_err(db)? {
        return Err(ApiError::agent_not_found(name));
    }
    Ok(json!({"Revoked": name}))
}
