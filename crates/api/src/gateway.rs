//! The HTTP edge: `GET`/`POST /`, parameters from the query and a form body, authentication,
//! authorisation, dispatch, and the success / error envelopes. No input reaches a panic or a
//! 500 except a real internal failure, which answers `ServerError` and logs the RequestId.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use model::ApiError;
use serde_json::{json, Value};

use crate::auth::{authenticate, policy_allows, RawRequest};
use crate::encoding::form_decode;
use crate::ops::{self, Ctx};
use crate::params::Params;
use crate::App;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 1 << 20;

/// The service's routes.
pub fn router(app: Arc<App>) -> Router {
    Router::new().route("/healthz", axum::routing::get(healthz)).fallback(handle).with_state(app)
}

async fn healthz() -> Response {
    json_response(StatusCode::OK, &json!({"Status": "ok"}), None)
}

/// An uppercase UUID-shaped request id, like the reference's.
pub fn request_id() -> String {
    store::uuid_like().to_uppercase()
}

async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    let request_id = request_id();
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("posture").to_string();
    let result = process(app, req).await;
    match result {
        Ok(mut body) => {
            if let Value::Object(map) = &mut body {
                map.insert("RequestId".into(), Value::String(request_id.clone()));
            }
            json_response(StatusCode::OK, &body, Some(&request_id))
        }
        Err(e) => {
            if e.status >= 500 {
                tracing::error!(request_id = %request_id, code = %e.code, "request failed with a server error");
            } else {
                tracing::debug!(request_id = %request_id, code = %e.code, "request refused");
            }
            let body = json!({
                "RequestId": request_id,
                "HostId": host,
                "Code": e.code,
                "Message": e.message,
                "Recommend": format!("See docs/api.md (errors) for {}", e.code),
            });
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            json_response(status, &body, Some(&request_id))
        }
    }
}

fn json_response(status: StatusCode, body: &Value, request_id: Option<&str>) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json;charset=utf-8"));
    if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(id).ok()) {
        h.insert("x-acs-request-id", id);
    }
    resp
}

async fn process(app: Arc<App>, req: Request) -> Result<Value, ApiError> {
    let (parts, body) = req.into_parts();
    if parts.method != Method::GET && parts.method != Method::POST {
        return Err(ApiError::unsupported_method());
    }
    if parts.uri.path() != "/" {
        return Err(ApiError::action_not_found());
    }
    let body =
        axum::body::to_bytes(Body::new(body), BODY_LIMIT).await.map_err(|_| ApiError::body_too_large(BODY_LIMIT))?;
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    let raw = RawRequest {
        method: parts.method.as_str().to_string(),
        query: form_decode(parts.uri.query().unwrap_or("")),
        body_params: if is_form { form_decode(&String::from_utf8_lossy(&body)) } else { Vec::new() },
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body: body.to_vec(),
    };
    // Authentication and the operation touch the store (blocking SQLite): off the async threads.
    // A panic in there becomes a JoinError, answered as ServerError, never a dropped connection.
    tokio::task::spawn_blocking(move || {
        let caller = authenticate(&app.store, &app.nonces, &raw, store::now_ms())?;
        let op = ops::find(&caller.action).ok_or_else(ApiError::action_not_found)?;
        if !policy_allows(&caller.key.policy, &caller.action) {
            return Err(ApiError::no_permission());
        }
        let ctx = Ctx {
            store: &app.store,
            engine: &app.engine,
            account_id: &caller.key.account_id,
            settings: &app.settings,
            idempotency: &app.idempotency,
        };
        ops::run(&ctx, &caller.action, op, &Params::new(raw.all_params()))
    })
    .await
    .unwrap_or_else(|e| {
        tracing::error!(error = %e, error_type = "panic", "an operation panicked");
        Err(ApiError::server_error())
    })
}
