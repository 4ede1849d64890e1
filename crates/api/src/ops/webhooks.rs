//! CreateWebhook, ListWebhooks, DeleteWebhook (posture actions): an account's endpoints for
//! its events, and their latest deliveries. Deliveries themselves: `crate::webhooks`.

use model::ApiError;
use serde_json::{json, Value};

use super::{db, Ctx};
use crate::params::Params;

/// Longest URL accepted.
const MAX_URL: usize = 2048;

/// CreateWebhook: `Url` (http:// or https://), `Events.N` (each of task.finished,
/// root.finished, check.failed, agent.offline; none: all of them). Answers the secret that
/// signs its deliveries, this once.
pub fn create_webhook(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let url = p.required("Url")?.trim();
    if url.len() > MAX_URL || crate::webhooks::target(url).is_err() {
        return Err(ApiError::invalid_parameter("Url"));
    }
    let mut events = p.list("Events")?;
    if events.iter().any(|e| !store::WEBHOOK_EVENTS.contains(&e.as_str())) {
        return Err(ApiError::invalid_parameter("Events"));
    }
    events.sort();
    events.dedup();
    if events.is_empty() {
        events.push("*".into());
    }
    let (hook, secret) = ctx.store.create_webhook(ctx.account_id, url, &events).map_err(db)?;
    Ok(json!({"WebhookId": hook.id, "Url": hook.url, "Events": hook.events, "Secret": secret}))
}

/// ListWebhooks: each webhook (never its secret) with its latest deliveries, newest first.
pub fn list_webhooks(ctx: &Ctx, _p: &Params) -> Result<Value, ApiError> {
    let hooks: Vec<Value> = ctx
        .store
        .list_webhooks(ctx.account_id)
        .map_err(db)?
        .into_iter()
        .map(|(h, deliveries)| {
            let deliveries: Vec<Value> = deliveries
                .into_iter()
                .map(|d| {
                    json!({
                        "DeliveryId": d.id, "Event": d.event, "Time": d.created_ms, "Attempts": d.attempts,
                        "LastAttemptTime": d.last_attempt_ms, "LastResult": d.last_result,
                        "Delivered": d.delivered_ms.is_some(), "DeliveredTime": d.delivered_ms, "GivenUp": d.given_up,
                    })
                })
                .collect();
            json!({"WebhookId": h.id, "Url": h.url, "Events": h.events, "CreateTime": h.created_ms, "Deliveries": deliveries})
        })
        .collect();
    Ok(json!({"Webhooks": hooks}))
}

/// DeleteWebhook: `WebhookId`; its deliveries not yet made are dropped.
pub fn delete_webhook(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let id = p.required("WebhookId")?;
    if !ctx.store.delete_webhook(ctx.account_id, id).map_err(db)? {
        return Err(ApiError::webhook_not_found(id));
    }
    Ok(json!({"WebhookId": id, "Deleted": true}))
}
