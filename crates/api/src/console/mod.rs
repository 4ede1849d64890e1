//! The web console at `/console/`: a page and its script and style, built into the binary, and
//! a session in place of a signature.
//!
//! - `POST /console/session` signs in: `AccessKeyId` and `AccessKeySecret` (or `Ticket`, a
//!   one-time link of `serve --demo`) for a session cookie (HttpOnly, SameSite=Strict, Secure
//!   over TLS, path `/console/`). Only the token's hash is stored, so a session is valid on
//!   every node and ends when idle for [`IDLE_MS`], after [`ABSOLUTE_MS`], at sign-out, or when
//!   its key is disabled or deleted (checked at every call).
//! - `GET /console/session` tells the page who is signed in, and the session's CSRF token.
//! - `POST /console/api` runs one action (form parameters, `Action=…`) with the session's key:
//!   through [`gateway::authorise`] and [`gateway::perform`], the API's own authorisation,
//!   account scope and audit trail. Every POST must carry the CSRF token in
//!   `X-Posture-Csrf` and must not come from another site.
//! - `POST /console/signout` ends the session.

use std::sync::Arc;

use model::ApiError;
use serde_json::{json, Value};
use store::{Accounts, Audit, Console, SessionKind};

use crate::gateway::{self, authorise, error_response, form_params, json_response, perform, with_request_id, Call};
use crate::http::{Request, Response};
use crate::signature::{constant_time_eq, sha256_hex};
use crate::App;

/// A session ends after this long without a call.
pub const IDLE_MS: i64 = 30 * 60 * 1000;
/// A session ends this long after sign-in, however busy.
pub const ABSOLUTE_MS: i64 = 12 * 60 * 60 * 1000;
/// A sign-in link (`serve --demo`) is good once, for this long.
pub const TICKET_MS: i64 = 24 * 60 * 60 * 1000;

const COOKIE: &str = "posture_session";
const CSRF_HEADER: &str = "x-posture-csrf";
const POLL_HEADER: &str = "x-posture-poll";

/// The page, its script and its style: (path, content type, body).
const ASSETS: &[(&str, &str, &str)] = &[
    ("/console/", "text/html;charset=utf-8", include_str!("assets/index.html")),
    ("/console/console.js", "text/javascript;charset=utf-8", include_str!("assets/console.js")),
    ("/console/console.css", "text/css;charset=utf-8", include_str!("assets/console.css")),
];

/// Nothing the console loads comes from another host; no inline script or style runs.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Answers a request under `/console`.
pub async fn handle(app: Arc<App>, req: Request, request_id: &str) -> Response {
    let host = req.header("host").unwrap_or("posture").to_string();
    let answer = match (req.method.as_str(), req.path.as_str()) {
        ("GET" | "HEAD", "/console") => Ok(redirect("/console/")),
        ("GET" | "HEAD", path) if ASSETS.iter().any(|(p, _, _)| *p == path) => Ok(asset(&req)),
        ("GET", "/console/session") => blocking(&app, move |app| whoami(app, &req)).await,
        ("POST", "/console/session") => blocking(&app, move |app| sign_in(app, &req)).await,
        ("POST", "/console/signout") => blocking(&app, move |app| sign_out(app, &req)).await,
        ("POST", "/console/api") => {
            let request_id = request_id.to_string();
            blocking(&app, move |app| call(app, &req, &request_id)).await
        }
        (_, "/console/session" | "/console/signout" | "/console/api") => Err(ApiError::unsupported_method()),
        _ => Err(ApiError::console_not_found()),
    };
    let mut r = answer.unwrap_or_else(|e| error_response(&e, &host, request_id));
    r.headers.extend(security_headers());
    r
}

/// Runs `f` off the async threads (the store blocks); a panic answers ServerError.
async fn blocking(
    app: &Arc<App>,
    f: impl FnOnce(&App) -> Result<Response, ApiError> + Send + 'static,
) -> Result<Response, ApiError> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || f(&app)).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, error_type = "panic", "a console request panicked");
        Err(ApiError::server_error())
    })
}

fn security_headers() -> Vec<(String, String)> {
    vec![
        ("content-security-policy".into(), CSP.into()),
        ("x-content-type-options".into(), "nosniff".into()),
        ("x-frame-options".into(), "DENY".into()),
        ("referrer-policy".into(), "no-referrer".into()),
    ]
}

fn redirect(to: &str) -> Response {
    Response { status: 308, headers: vec![("location".into(), to.into())], body: Vec::new() }
}

/// A built-in file, revalidated by its ETag (the binary's version of it).
fn asset(req: &Request) -> Response {
    let Some((_, kind, body)) = ASSETS.iter().find(|(p, _, _)| *p == req.path) else {
        return Response { status: 404, headers: Vec::new(), body: Vec::new() };
    };
    let etag = format!("\"{}\"", &sha256_hex(body.as_bytes())[..16]);
    let mut headers = vec![("etag".into(), etag.clone()), ("cache-control".into(), "no-cache".into())];
    if req.header("if-none-match").is_some_and(|v| v.split(',').any(|t| t.trim() == etag)) {
        return Response { status: 304, headers, body: Vec::new() };
    }
    headers.push(("content-type".into(), (*kind).into()));
    Response { status: 200, headers, body: body.as_bytes().to_vec() }
}

fn json_ok(body: &Value) -> Response {
    let mut r = json_response(200, body, None);
    r.headers.push(("cache-control".into(), "no-store".into()));
    r
}

/// The token in the request's session cookie. Two session cookies (one planted by whoever
/// could set a cookie for this host, sent first for a longer path) are refused rather than one
/// of them chosen: the browser would otherwise be pinned to a session not its own.
fn cookie_token(req: &Request) -> Option<String> {
    let mut found = req
        .headers
        .iter()
        .filter(|(k, _)| k == "cookie")
        .flat_map(|(_, v)| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .filter(|(name, _)| *name == COOKIE)
        .map(|(_, v)| v.to_string());
    let token = found.next()?;
    let well_formed = token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit());
    (well_formed && found.next().is_none()).then_some(token)
}

fn token_hash(token: &str) -> String {
    sha256_hex(format!("posture-console-session:{token}").as_bytes())
}

/// The session's CSRF token: derived from its token, so nothing more is stored, and readable
/// only by a page of this origin (`GET /console/session` answers it to the cookie's holder).
fn csrf_token(token: &str) -> String {
    sha256_hex(format!("posture-console-csrf:{token}").as_bytes())
}

/// A state-changing request must come from this site: `Sec-Fetch-Site` (which browsers set
/// and pages cannot) is `same-origin` when present, else `Origin`, when present, is this
/// node's origin (its scheme and the Host asked for, or `--public-url`'s).
fn same_site(app: &App, req: &Request) -> bool {
    same_site_as(app.settings.https, app.settings.public_url.as_deref(), req)
}

fn same_site_as(https: bool, public_url: Option<&str>, req: &Request) -> bool {
    if let Some(site) = req.header("sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    let Some(origin) = req.header("origin") else { return true };
    let scheme = if https { "https" } else { "http" };
    let asked = req.header("host").map(|host| format!("{scheme}://{host}"));
    let public = public_url.map(|u| u.trim_end_matches('/'));
    let is_origin = |o: &str| o.eq_ignore_ascii_case(origin);
    asked.as_deref().is_some_and(is_origin) || public.is_some_and(is_origin)
}

/// The session of the request and its key, if both are in force.
fn session(app: &App, req: &Request) -> Result<(String, store::AccessKey, store::ConsoleSession), ApiError> {
    let token = cookie_token(req).ok_or_else(ApiError::console_session_required)?;
    let now = store::now_ms();
    // The page marks the calls of its own polling: they do not keep an unattended tab signed in.
    let used = req.header(POLL_HEADER).is_none();
    let found = app.store.console_session(&token_hash(&token), now, IDLE_MS, used).map_err(crate::ops::db)?;
    let session = found.ok_or_else(ApiError::console_session_required)?;
    // Disabling or deleting a key removes its sessions in the same write; a key read here as
    // disabled or gone was changed since the session was read.
    match app.store.get_key(&session.key_id).map_err(crate::ops::db)? {
        Some(key) if key.enabled => Ok((token, key, session)),
        _ => Err(ApiError::console_session_required()),
    }
}

/// A POST of a signed-in page: the session, with its CSRF token and from this site.
fn checked_session(app: &App, req: &Request) -> Result<(String, store::AccessKey), ApiError> {
    let (token, key, _) = session(app, req)?;
    let sent = req.header(CSRF_HEADER).unwrap_or_default();
    if !same_site(app, req) || !constant_time_eq(sent.as_bytes(), csrf_token(&token).as_bytes()) {
        return Err(ApiError::console_csrf_refused());
    }
    Ok((token, key))
}

fn session_json(key: &store::AccessKey, token: &str, expires_ms: i64) -> Value {
    json!({
        "AccessKeyId": key.id,
        "AccountId": key.account_id,
        "Policy": key.policy,
        // What the page offers: the actions the key's policy allows (the same rule the calls
        // are held to, so a button never shows for a call that would be refused).
        "Allowed": crate::ops::OPERATIONS
            .iter()
            .map(|(action, _)| *action)
            .filter(|action| crate::auth::policy_allows(&key.policy, action))
            .collect::<Vec<_>>(),
        "CsrfToken": csrf_token(token),
        "ExpireTime": expires_ms,
        "IdleSeconds": IDLE_MS / 1000,
    })
}

fn whoami(app: &App, req: &Request) -> Result<Response, ApiError> {
    let (token, key, session) = session(app, req)?;
    Ok(json_ok(&session_json(&key, &token, session.expires_ms)))
}

fn field<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn sign_in(app: &App, req: &Request) -> Result<Response, ApiError> {
    if !same_site(app, req) {
        return Err(ApiError::console_csrf_refused());
    }
    let params = form_params(req);
    let now = store::now_ms();
    let key = match field(&params, "Ticket") {
        Some(ticket) => {
            let key_id = app.store.take_console_ticket(&token_hash(ticket), now).map_err(crate::ops::db)?;
            let key = match key_id {
                Some(id) => app.store.get_key(&id).map_err(crate::ops::db)?,
                None => None,
            };
            let key = key.filter(|k| k.enabled).ok_or_else(ApiError::console_sign_in_failed)?;
            record(app, req, &key, "ConsoleSignIn", "OK");
            key
        }
        None => {
            let id = field(&params, "AccessKeyId").unwrap_or_default().trim();
            let secret = field(&params, "AccessKeySecret").unwrap_or_default();
            let key = match id.is_empty() {
                true => None,
                false => app.store.get_key(id).map_err(crate::ops::db)?,
            };
            let Some(key) = key else { return Err(ApiError::console_sign_in_failed()) };
            let accepted = key.enabled && constant_time_eq(key.secret.as_bytes(), secret.as_bytes());
            record(app, req, &key, "ConsoleSignIn", if accepted { "OK" } else { "Console.SignInFailed" });
            if !accepted {
                return Err(ApiError::console_sign_in_failed());
            }
            key
        }
    };
    let token = store::new_id(32);
    let expires = now + ABSOLUTE_MS;
    app.store
        .open_console_session(&token_hash(&token), SessionKind::Session, &key.id, now, expires)
        .map_err(crate::ops::db)?;
    let mut r = json_ok(&session_json(&key, &token, expires));
    r.headers.push(("set-cookie".into(), cookie(app, &token, ABSOLUTE_MS / 1000)));
    Ok(r)
}

fn cookie(app: &App, token: &str, max_age_s: i64) -> String {
    let secure = if app.settings.https { "; Secure" } else { "" };
    format!("{COOKIE}={token}; Path=/console/; Max-Age={max_age_s}; HttpOnly; SameSite=Strict{secure}")
}

fn sign_out(app: &App, req: &Request) -> Result<Response, ApiError> {
    let (token, key) = checked_session(app, req)?;
    app.store.end_console_session(&token_hash(&token)).map_err(crate::ops::db)?;
    record(app, req, &key, "ConsoleSignOut", "OK");
    let mut r = json_ok(&json!({"SignedOut": true}));
    r.headers.push(("set-cookie".into(), cookie(app, "", 0)));
    Ok(r)
}

/// Where a call came from, as the audit trail records it: the client's address, and that it
/// came through the console.
fn source(req: &Request) -> String {
    format!("{} (console)", req.peer.ip())
}

/// Records a sign-in or sign-out in the audit trail of the key's account.
fn record(app: &App, req: &Request, key: &store::AccessKey, action: &str, outcome: &str) {
    let mut e = crate::ops::audit::entry(&key.account_id, &key.id, &source(req), action, &[]);
    e.outcome = outcome.to_string();
    if let Err(err) = app.store.record_audit(&e, app.settings.audit_retention_ms) {
        tracing::error!(error = %err, action, "the console sign-in could not be recorded in the audit trail");
    }
}

/// One action, with the session's key: the API's authorisation, scope and audit trail.
fn call(app: &App, req: &Request, request_id: &str) -> Result<Response, ApiError> {
    let (_, key) = checked_session(app, req)?;
    let params: Vec<(String, String)> = form_params(req).into_iter().filter(|(k, _)| k != "AccessKeyId").collect();
    let action = field(&params, "Action").unwrap_or_default().trim().to_string();
    let prepared = authorise(&key.policy, &action, &params);
    let source = source(req);
    let call = Call { key: &key, action: &action, params: &params, source: &source, request_id };
    let origin = gateway::origin(app, req.header("host"));
    let body = perform(app, &call, prepared, &origin)?;
    Ok(json_ok(&with_request_id(body, request_id)))
}

/// Opens a one-time sign-in link for `key_id` (`serve --demo` prints it): the fragment the
/// console's page reads, so the link's secret never reaches a server log.
pub fn sign_in_link(store: &store::Store, key_id: &str, console_url: &str) -> Result<String, store::StoreError> {
    let ticket = store::new_id(32);
    let now = store::now_ms();
    store.open_console_session(&token_hash(&ticket), SessionKind::Ticket, key_id, now, now + TICKET_MS)?;
    Ok(format!("{console_url}#ticket={ticket}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "POST".into(),
            path: "/console/api".into(),
            query: String::new(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: Vec::new(),
            peer: "127.0.0.1:1".parse().unwrap(),
        }
    }

    #[test]
    fn only_requests_of_this_site_change_anything() {
        let same = |h: &[(&str, &str)]| same_site_as(false, None, &req(h));
        assert!(same(&[("sec-fetch-site", "same-origin")]));
        assert!(!same(&[("sec-fetch-site", "cross-site"), ("origin", "http://a:1"), ("host", "a:1")]));
        assert!(!same(&[("sec-fetch-site", "same-site")]));
        assert!(same(&[("origin", "http://127.0.0.1:8080"), ("host", "127.0.0.1:8080")]));
        assert!(!same(&[("origin", "http://evil.example"), ("host", "127.0.0.1:8080")]));
        assert!(!same(&[("origin", "evil://127.0.0.1:8080"), ("host", "127.0.0.1:8080")]), "the scheme counts");
        assert!(!same(&[("origin", "null"), ("host", "127.0.0.1:8080")]));
        assert!(same(&[]), "a client that is no browser sends neither (the CSRF token still applies)");
        let behind_proxy = [("origin", "https://posture.example"), ("host", "10.0.0.5:8080")];
        assert!(same_site_as(false, Some("https://posture.example/"), &req(&behind_proxy)));
        assert!(!same_site_as(true, None, &req(&[("origin", "http://a:1"), ("host", "a:1")])), "http to an https node");
    }

    #[test]
    fn the_cookie_is_read_among_others_and_must_be_a_token() {
        let token = "ab".repeat(32);
        let with = |v: &str| req(&[("cookie", v)]);
        assert_eq!(cookie_token(&with(&format!("a=1; {COOKIE}={token}; b=2"))), Some(token.clone()));
        assert_eq!(cookie_token(&with(&format!("{COOKIE}=x{token}"))), None);
        assert_eq!(cookie_token(&with("a=1")), None);
        let other = "cd".repeat(32);
        assert_eq!(cookie_token(&with(&format!("{COOKIE}={other}; {COOKIE}={token}"))), None, "two: neither");
        assert_eq!(
            cookie_token(&req(&[("cookie", &format!("{COOKIE}=zz")), ("cookie", &format!("{COOKIE}={token}"))])),
            None
        );
        assert_ne!(csrf_token(&token), token_hash(&token), "the CSRF token is not the stored hash");
    }
}
