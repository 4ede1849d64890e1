//! The HTTP edge: `GET`/`POST /`, parameters from the query and a form body, authentication,
//! authorisation, dispatch, and the success / error envelopes. No input reaches a panic or a
//! 500 except a real internal failure, which answers `ServerError` and logs the RequestId.

use std::sync::Arc;

use model::ApiError;
use serde_json::{json, Value};

use crate::auth::{authenticate, policy_allows, RawRequest};
use crate::encoding::form_decode;
use crate::http::{Answer, Refusal, Request, Response, Service};
use crate::ops::{self, Ctx};
use crate::params::Params;
use crate::App;

/// The API as the HTTP server's service: `GET /healthz`, and every action at `/`.
pub struct Gateway(pub Arc<App>);

impl Service for Gateway {
    fn call(&self, req: Request) -> Answer {
        let app = self.0.clone();
        Box::pin(async move { handle(app, req).await })
    }

    fn refuse(&self, r: &Refusal) -> Response {
        let e = ApiError { status: r.status, code: r.code.to_string(), message: r.message.clone() };
        error_response(&e, "posture", &request_id())
    }
}

/// An uppercase UUID-shaped request id, like the reference's.
pub fn request_id() -> String {
    store::uuid_like().to_uppercase()
}

async fn handle(app: Arc<App>, req: Request) -> Response {
    let request_id = request_id();
    let host = req.header("host").unwrap_or("posture").to_string();
    if matches!(req.path.as_str(), "/healthz" | "/metrics") && !matches!(req.method.as_str(), "GET" | "HEAD") {
        return error_response(&ApiError::unsupported_method(), &host, &request_id);
    }
    if req.path == "/healthz" && app.starting.load(std::sync::atomic::Ordering::Relaxed) {
        return json_response(503, &json!({"Status": "starting"}), None);
    }
    if req.path == "/healthz" {
        // The node is healthy when its database answers (a load balancer takes it out if not).
        let store = app.store.clone();
        let db = tokio::task::spawn_blocking(move || store.ping()).await;
        return match db {
            Ok(Ok(())) => json_response(200, &json!({"Status": "ok", "Database": "ok"}), None),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "health check: the database does not answer");
                let body = json!({"Status": "unavailable", "Database": e.to_string()});
                json_response(503, &body, None)
            }
            Err(_) => json_response(503, &json!({"Status": "unavailable"}), None),
        };
    }
    if req.path == "/metrics" {
        return metrics_response(app).await;
    }
    if let Some(rest) = req.path.strip_prefix("/exports/") {
        if !matches!(req.method.as_str(), "GET" | "HEAD") {
            return error_response(&ApiError::unsupported_method(), &host, &request_id);
        }
        return export_download(app, rest.to_string(), &req.query, &host, &request_id).await;
    }
    if req.path == "/console" || req.path.starts_with("/console/") {
        let started = std::time::Instant::now();
        let r = crate::console::handle(app, req, &request_id).await;
        let code = if r.status < 400 { "OK".to_string() } else { r.status.to_string() };
        count("console", &code, started);
        return r;
    }
    if req.path.starts_with(client::agent::PREFIX) {
        let started = std::time::Instant::now();
        let answer = crate::agents::handle(app, req).await;
        count("agent", answer.as_ref().map_or_else(|e| e.code.as_str(), |_| "OK"), started);
        return match answer {
            Ok(body) => json_response(200, &body, Some(&request_id)),
            Err(e) => error_response(&e, &host, &request_id),
        };
    }
    let started = std::time::Instant::now();
    let mut action = "unknown";
    let answer = process(app, req, &mut action, &request_id).await;
    count(action, answer.as_ref().map_or_else(|e| e.code.as_str(), |_| "OK"), started);
    match answer {
        Ok(body) => json_response(200, &with_request_id(body, &request_id), Some(&request_id)),
        Err(e) => {
            if e.status >= 500 {
                tracing::error!(request_id = %request_id, code = %e.code, "request failed with a server error");
            } else {
                tracing::debug!(request_id = %request_id, code = %e.code, "request refused");
            }
            error_response(&e, &host, &request_id)
        }
    }
}

/// Counts one request in the metrics: its label (an action, `agent` or `console`), its outcome
/// and its time.
fn count(label: &str, code: &str, started: std::time::Instant) {
    let m = metrics::global();
    m.requests.inc(&[label, code]);
    m.request_seconds.observe(&[label], started.elapsed());
}

/// An action's answer with the request's id in it, as every answer of the API carries.
pub(crate) fn with_request_id(mut body: Value, request_id: &str) -> Value {
    if let Value::Object(map) = &mut body {
        map.insert("RequestId".into(), Value::String(request_id.to_string()));
    }
    body
}

/// The parameters of a form body (`application/x-www-form-urlencoded`); none for another body.
pub(crate) fn form_params(req: &Request) -> Vec<(String, String)> {
    let is_form = req
        .header("content-type")
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    if is_form {
        form_decode(&String::from_utf8_lossy(&req.body))
    } else {
        Vec::new()
    }
}

/// `GET /exports/<id>/<file>?token=…`: an export's CSV (its file name) or JSON (the same stem,
/// `.json`), for whoever holds its link (ExportRecord, DescribeExportInfo), from any node.
/// A wrong token, an expired link and an unknown export are all `404`.
async fn export_download(app: Arc<App>, rest: String, query: &str, host: &str, request_id: &str) -> Response {
    let token = form_decode(query).into_iter().find(|(k, _)| k == "token").map(|(_, v)| v).unwrap_or_default();
    let Some((id, name)) =
        rest.split_once('/').and_then(|(id, name)| Some((id.parse::<i64>().ok()?, name.to_string())))
    else {
        return error_response(&ApiError::export_not_found(0), host, request_id);
    };
    let store = app.store.clone();
    let json = name.ends_with(".json");
    let found = tokio::task::spawn_blocking(move || {
        use store::Exports;
        store.export_download(id, &token, json, store::now_ms())
    })
    .await;
    let (file_name, body) = match found {
        Ok(Ok(Some(found))) => found,
        Ok(Ok(None)) => return error_response(&ApiError::export_not_found(id), host, request_id),
        Ok(Err(e)) => return error_response(&ops::db(e), host, request_id),
        Err(_) => return error_response(&ApiError::server_error(), host, request_id),
    };
    let asked = if json { format!("{}.json", file_name.trim_end_matches(".csv")) } else { file_name };
    if name != asked {
        return error_response(&ApiError::export_not_found(id), host, request_id);
    }
    let kind = if json { "application/json;charset=utf-8" } else { "text/csv;charset=utf-8" };
    Response {
        status: 200,
        headers: vec![
            ("content-type".into(), kind.into()),
            ("content-disposition".into(), format!("attachment; filename=\"{name}\"")),
            ("cache-control".into(), "no-store".into()),
        ],
        body: body.into_bytes(),
    }
}

/// The error envelope (rpc-protocol.md).
pub(crate) fn error_response(e: &ApiError, host: &str, request_id: &str) -> Response {
    let body = json!({
        "RequestId": request_id,
        "HostId": host,
        "Code": e.code,
        "Message": e.message,
        "Recommend": format!("See docs/api.md (errors) for {}", e.code),
    });
    json_response(e.status, &body, Some(request_id))
}

pub(crate) fn json_response(status: u16, body: &Value, request_id: Option<&str>) -> Response {
    let mut headers = vec![("content-type".to_string(), "application/json;charset=utf-8".to_string())];
    if let Some(id) = request_id {
        headers.push(("x-acs-request-id".to_string(), id.to_string()));
    }
    Response { status, headers, body: body.to_string().into_bytes() }
}

/// `GET /metrics`: the process's counters, and gauges read now (the queue, the connections).
async fn metrics_response(app: Arc<App>) -> Response {
    let store = app.store.clone();
    let gauges = tokio::task::spawn_blocking(move || {
        let queue = store::TaskQueue::count_active_tasks(&*store).map(|n| n as f64).unwrap_or(f64::NAN);
        let (open, idle) = store.connection_gauges();
        (queue, open as f64, idle as f64)
    })
    .await
    .unwrap_or((f64::NAN, f64::NAN, f64::NAN));
    let text = metrics::global().render(&[
        ("posture_queue_depth", "Unfinished tasks (all accounts).", gauges.0),
        ("posture_db_connections_open", "Database connections open.", gauges.1),
        ("posture_db_connections_idle", "Database connections idle.", gauges.2),
    ]);
    let headers = vec![("content-type".to_string(), "text/plain; version=0.0.4; charset=utf-8".to_string())];
    Response { status: 200, headers, body: text.into_bytes() }
}

/// Runs one API request; `action` is set to its action's name (a metrics label) once known.
async fn process(app: Arc<App>, req: Request, action: &mut &'static str, request_id: &str) -> Result<Value, ApiError> {
    if req.method != "GET" && req.method != "POST" {
        return Err(ApiError::unsupported_method());
    }
    if req.path != "/" {
        return Err(ApiError::action_not_found());
    }
    let raw = RawRequest {
        method: req.method.clone(),
        query: form_decode(&req.query),
        body_params: form_params(&req),
        headers: req.headers,
        body: req.body,
    };
    *action = ops::label(raw.action());
    let origin = origin(&app, raw.header("host"));
    let (source, request_id) = (req.peer.ip().to_string(), request_id.to_string());
    // Authentication and the operation touch the store (blocking SQLite): off the async threads.
    // A panic in there becomes a JoinError, answered as ServerError, never a dropped connection.
    let ran = tokio::task::spawn_blocking(move || {
        let caller = authenticate(&app.store, &raw, store::now_ms())?;
        let params = raw.all_params();
        let prepared = authorise(&caller.key.policy, &caller.action, &params);
        // The nonce goes to disk before the operation runs: a request that may write has it
        // committed with its writes or before them, never after.
        let may_write = !prepared.as_ref().is_ok_and(|(_, p)| ops::reads_only(&caller.action, p));
        let nonce = caller.nonce.send(&app.store, may_write);
        let call = Call {
            key: &caller.key,
            action: &caller.action,
            params: &params,
            source: &source,
            request_id: &request_id,
        };
        let answer = perform(&app, &call, prepared, &origin);
        Ok((answer, nonce))
    })
    .await
    .unwrap_or_else(|e| {
        tracing::error!(error = %e, error_type = "panic", "an operation panicked");
        Err(ApiError::server_error())
    });
    // Nothing is answered before the request's nonce is committed, so no replay is ever
    // accepted, even after a crash. The wait holds no thread.
    let (answer, nonce) = ran?;
    nonce.committed().await?;
    answer
}

/// The scheme and host a caller reached this node by, for links in answers.
pub(crate) fn origin(app: &App, host: Option<&str>) -> String {
    match &app.settings.public_url {
        Some(url) => url.clone(),
        None => format!("{}://{}", if app.settings.https { "https" } else { "http" }, host.unwrap_or_default()),
    }
}

/// The operation of `action` with its parameters, if the policy allows the action.
pub(crate) fn authorise(
    policy: &str,
    action: &str,
    params: &[(String, String)],
) -> Result<(ops::Op, Params), ApiError> {
    match ops::find(action) {
        None => Err(ApiError::action_not_found()),
        Some(_) if !policy_allows(policy, action) => Err(ApiError::no_permission()),
        Some(op) => Params::new(params.to_vec()).map(|p| (op, p)),
    }
}

/// One call of an action by an authenticated key (a signed request, or a console session).
pub(crate) struct Call<'a> {
    pub key: &'a store::AccessKey,
    pub action: &'a str,
    /// Every parameter as received (what the audit trail records).
    pub params: &'a [(String, String)],
    /// The client's address.
    pub source: &'a str,
    pub request_id: &'a str,
}

/// Runs an authorised call with the key's account, and records every call of an action that
/// may change something in the audit trail, refused or not, before it is answered (the record
/// rides the call's first write: `store::audited`). The API and the console both call through
/// here: one path, one authorisation.
pub(crate) fn perform(
    app: &App,
    call: &Call,
    prepared: Result<(ops::Op, Params), ApiError>,
    origin: &str,
) -> Result<Value, ApiError> {
    let run = || {
        prepared.and_then(|(op, params)| {
            let ctx = Ctx {
                store: &*app.store,
                engine: &app.engine,
                account_id: &call.key.account_id,
                settings: &app.settings,
                idempotency: &app.idempotency,
                origin,
                key_id: &call.key.id,
            };
            ops::run(&ctx, call.action, op, &params)
        })
    };
    if !ops::changes_state(call.action) {
        return run();
    }
    let mut e = ops::audit::entry(&call.key.account_id, &call.key.id, call.source, call.action, call.params);
    e.request_id = call.request_id.to_string();
    let outcome = |a: &Result<Value, ApiError>| a.as_ref().map_or_else(|e| e.code.clone(), |_| "OK".to_string());
    let (answer, recorded) = store::audited(&app.store, e, app.settings.audit_retention_ms, run, outcome);
    if let Err(err) = recorded {
        tracing::error!(error = %err, action = %call.action, "the call could not be recorded in the audit trail");
    }
    answer
}
