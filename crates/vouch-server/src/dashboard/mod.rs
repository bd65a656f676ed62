//! The dashboard (issue 16 item 6): server-rendered, read-only pages behind a login, for one
//! tenant at a time.
//!
//! - **Login.** `GET <root>/login` is a form; `POST <root>/login` takes a token of the tenant
//!   (its read or admin token, or a scoped API token of any role: `crate::auth`) and answers with a session cookie: 32 random bytes, never the
//!   token, `HttpOnly; Secure; SameSite=Strict`, scoped to the dashboard's path
//!   (`/dashboard/`, or `/t/<tenant>/dashboard/`), for [`SESSION_TTL`] at most. The server keeps
//!   the session (by the SHA-256 of its id) with the token it was opened with, and checks that
//!   token again on every page: a token that stops being valid ends its sessions. Every
//!   session is read-only (the auditor role), whatever token opened it. `POST <root>/logout`
//!   forgets it. A POST whose `Origin` is another site, or that the browser marks
//!   `Sec-Fetch-Site: cross-site`, is refused (login CSRF).
//! - **Pages** (all `GET`, none changes anything): the fleet, nodes, failures, anomalies,
//!   revocations, policies with versions and diffs, the audit log with its proofs checked,
//!   and a workload's page. Every string that came from an agent, its evidence or an operator
//!   is escaped ([`html::esc`]); pages are sent with a `Content-Security-Policy` that allows
//!   no script at all, so a missed escape could still not run one. Every list is one page of
//!   at most [`PAGE`] rows.
//!
//! The pages live under `/dashboard/` so that the cookie's path keeps one tenant's session
//! away from another's pages; `/` redirects there.

mod audit;
mod fleet;
mod html;
mod policy;
mod workload;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::state::{State, unix_now};

type S = Arc<State>;

/// Rows on one page of any list.
pub(crate) const PAGE: u32 = 50;

/// How long a session lasts after login, seconds.
pub const SESSION_TTL: u64 = 8 * 3600;

/// Most sessions held at once (the oldest give way).
const MAX_SESSIONS: usize = 10_000;

/// The session cookie's name.
const COOKIE: &str = "vouch_session";

/// The largest login form read.
const LOGIN_BODY_LIMIT: usize = 4096;

/// One signed-in browser.
struct Session {
    /// The token it was opened with (checked again on every page; never sent anywhere).
    token: String,
    /// The token's name.
    name: String,
    /// Unix seconds it ends.
    expires_at: u64,
}

/// The sessions of one tenant's dashboard, by the SHA-256 of their id.
#[derive(Default)]
pub(crate) struct Sessions {
    held: Mutex<HashMap<[u8; 32], Session>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

impl Sessions {
    /// Open a session for `token` named `name`; its id (the cookie's value).
    fn open(&self, token: &str, name: &str, now: u64) -> String {
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(crate::keys::random_bytes::<32>());
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.len() >= MAX_SESSIONS {
            held.retain(|_, s| s.expires_at > now);
        }
        while held.len() >= MAX_SESSIONS {
            let Some(oldest) = held
                .iter()
                .min_by_key(|(_, s)| s.expires_at)
                .map(|(k, _)| *k)
            else {
                break;
            };
            held.remove(&oldest);
        }
        held.insert(
            Sha256::digest(id.as_bytes()).into(),
            Session {
                token: token.to_string(),
                name: name.to_string(),
                expires_at: now + SESSION_TTL,
            },
        );
        id
    }

    /// The token and name of session `id`, while it lasts.
    fn find(&self, id: &str, now: u64) -> Option<(String, String)> {
        let key: [u8; 32] = Sha256::digest(id.as_bytes()).into();
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get(&key)
            .filter(|s| s.expires_at > now)
            .map(|s| (s.token.clone(), s.name.clone()))
    }

    /// Forget session `id`.
    fn close(&self, id: &str) {
        let key: [u8; 32] = Sha256::digest(id.as_bytes()).into();
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    }
}

/// The signed-in viewer of a page (put in the request by [`require_session`]).
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    /// The token's name.
    pub name: String,
}

/// The tenant whose data `st` holds.
fn tenant(st: &State) -> String {
    st.tenant.clone()
}

/// The dashboard's path for `st`'s tenant: `/dashboard`, or `/t/<tenant>/dashboard` (where
/// `crate::lib` nests the tenant's routes).
pub(crate) fn root(st: &State) -> String {
    if st.tenant == crate::auth::DEFAULT_TENANT {
        "/dashboard".into()
    } else {
        format!("/t/{}/dashboard", st.tenant)
    }
}

/// The page frame for `st` and `viewer`.
pub(crate) fn frame_parts(st: &State, viewer: &Viewer) -> (String, String, String) {
    (root(st), tenant(st), viewer.name.clone())
}

/// The name of `token` if it is a credential of this tenant, any role ([`crate::auth::identify`]:
/// constant time; another tenant's token is refused). The session is read-only whatever the
/// role.
fn credential(st: &State, token: &str) -> Option<String> {
    match crate::auth::identify(st, token) {
        Ok(Some(caller)) if caller.tenant == st.tenant => Some(caller.name),
        _ => None,
    }
}

/// The dashboard's routes (merged into the API router by `routes::router`, after its JSON
/// error layer: these pages answer in HTML).
pub(crate) fn router(state: S) -> Router<S> {
    let sessions = Arc::new(Sessions::default());
    let pages = Router::new()
        .route("/dashboard/", get(fleet::fleet))
        .route("/dashboard/nodes", get(fleet::nodes))
        .route("/dashboard/failures", get(fleet::failures))
        .route("/dashboard/anomalies", get(fleet::anomalies))
        .route("/dashboard/workload", get(workload::workload))
        .route("/dashboard/revocations", get(audit::revocations))
        .route("/dashboard/policies", get(policy::policies))
        .route("/dashboard/policy", get(policy::policy))
        .route("/dashboard/diff", get(policy::diff_route))
        .route("/dashboard/audit", get(audit::audit))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_session,
        ));
    Router::new()
        .merge(pages)
        .route("/", get(to_dashboard))
        .route("/dashboard", get(to_dashboard))
        .route("/dashboard/login", get(login_form).post(login))
        .route("/dashboard/logout", axum::routing::post(logout))
        .layer(axum::extract::DefaultBodyLimit::max(LOGIN_BODY_LIMIT))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(axum::Extension(sessions))
        .layer(axum::Extension(Arc::new(audit::SeenHead::default())))
        .layer(axum::middleware::from_fn_with_state(
            std::time::Duration::from_secs(state.cfg.request_timeout.max(1)),
            crate::listener::request_timeout,
        ))
}

/// What every dashboard answer carries: no script may run, no framing, nothing cached, no
/// referrer to other sites.
async fn security_headers(req: Request, next: axum::middleware::Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // Not `no-referrer`: with it a browser sends `Origin: null` on the form's POST.
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    res
}

fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

async fn to_dashboard(AxState(st): AxState<S>) -> Response {
    see_other(&format!("{}/", root(&st)))
}

/// The session ids a request's cookies offer (at most a few).
fn offered_sessions(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .take(8)
        .collect()
}

/// The pages need a live session whose token is still one of this tenant's: otherwise the
/// browser is sent to the login form.
async fn require_session(
    AxState(st): AxState<S>,
    axum::Extension(sessions): axum::Extension<Arc<Sessions>>,
    mut req: Request,
    next: axum::middleware::Next,
) -> Response {
    let now = unix_now();
    let viewer = offered_sessions(req.headers())
        .into_iter()
        .filter_map(|id| sessions.find(id, now))
        .find(|(token, _)| credential(&st, token).is_some())
        .map(|(_, name)| Viewer { name });
    match viewer {
        Some(v) => {
            req.extensions_mut().insert(v);
            next.run(req).await
        }
        None => see_other(&format!("{}/login", root(&st))),
    }
}

/// Whether a POST comes from another site: an `Origin` whose host is not this request's
/// `Host` (HTTP/1.1) or authority (HTTP/2), an opaque `Origin: null` without
/// `Sec-Fetch-Site: same-origin`, or the browser's own `Sec-Fetch-Site: cross-site`.
fn cross_site(headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
    let get = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok());
    let fetch_site = get(header::HeaderName::from_static("sec-fetch-site"));
    if fetch_site == Some("cross-site") {
        return true;
    }
    match get(header::ORIGIN) {
        None => false,
        // An opaque origin: only the browser's own word that it is this site will do.
        Some("null") => fetch_site != Some("same-origin"),
        Some(origin) => {
            let host = origin.split_once("://").map_or("", |(_, h)| h);
            let ours = get(header::HOST).or_else(|| uri.authority().map(|a| a.as_str()));
            ours != Some(host)
        }
    }
}

fn login_page(st: &State, status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Sign in · Vouch</title>\
<style>body{{font-family:system-ui,sans-serif;margin:4em auto;max-width:28em;color:#222}}\
input{{width:100%;padding:.4em;margin:.4em 0}}.bad{{color:#c5221f}}</style></head><body>\
<h1>Vouch dashboard</h1><p>Tenant <b>{tenant}</b>. Sign in with one of its tokens (the read \
token, <code>keys/read.token</code>, is enough): the session is read-only.</p>{message}\
<form method=post action=\"{root}/login\"><label>Token <input type=password name=token \
autocomplete=off required></label><button type=submit>Sign in</button></form></body></html>",
        tenant = html::esc(&tenant(st)),
        root = html::esc(&root(st)),
        message = if message.is_empty() {
            String::new()
        } else {
            format!("<p class=bad>{}</p>", html::esc(message))
        },
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn login_form(AxState(st): AxState<S>) -> Response {
    login_page(&st, StatusCode::OK, "")
}

/// The value of `name` in an `application/x-www-form-urlencoded` body, decoded.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let body = std::str::from_utf8(body).ok()?;
    let raw = body
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))?;
    let mut out = Vec::with_capacity(raw.len());
    let b = raw.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

async fn login(
    AxState(st): AxState<S>,
    axum::Extension(sessions): axum::Extension<Arc<Sessions>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if cross_site(&headers, &uri) {
        return login_page(
            &st,
            StatusCode::FORBIDDEN,
            "Refused: this sign-in was posted from another site.",
        );
    }
    let token = form_field(&body, "token").unwrap_or_default();
    let Some(name) = credential(&st, token.trim()) else {
        tracing::warn!("dashboard sign-in refused: not a token of this tenant");
        return login_page(
            &st,
            StatusCode::UNAUTHORIZED,
            "That token is not one of this tenant's.",
        );
    };
    let id = sessions.open(token.trim(), &name, unix_now());
    tracing::info!(name, tenant = %st.tenant, "dashboard sign-in");
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, format!("{}/", root(&st))),
            (
                header::SET_COOKIE,
                format!(
                    "{COOKIE}={id}; Path={}/; Max-Age={SESSION_TTL}; Secure; HttpOnly; SameSite=Strict",
                    root(&st)
                ),
            ),
        ],
    )
        .into_response()
}

async fn logout(
    AxState(st): AxState<S>,
    axum::Extension(sessions): axum::Extension<Arc<Sessions>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    if cross_site(&headers, &uri) {
        return login_page(
            &st,
            StatusCode::FORBIDDEN,
            "Refused: this sign-out was posted from another site.",
        );
    }
    for id in offered_sessions(&headers) {
        sessions.close(id);
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, format!("{}/login", root(&st))),
            (
                header::SET_COOKIE,
                format!(
                    "{COOKIE}=; Path={}/; Max-Age=0; Secure; HttpOnly; SameSite=Strict",
                    root(&st)
                ),
            ),
        ],
    )
        .into_response()
}

/// A page answer.
pub(crate) fn html_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// A page's query parameters, or a `400` page saying what is wrong with them.
// The error is the answer itself, returned at once by every caller.
#[allow(clippy::result_large_err)]
pub(crate) fn query<T>(
    q: Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, Response> {
    q.map(|axum::extract::Query(q)| q).map_err(|e| {
        html_response(
            StatusCode::BAD_REQUEST,
            format!(
                "<!doctype html><title>Bad request</title><p>{}</p>",
                html::esc(&e.body_text())
            ),
        )
    })
}

/// A page inside the frame, `200`.
pub(crate) fn framed(
    st: &State,
    viewer: &Viewer,
    current: &str,
    title: &str,
    body: &str,
) -> Response {
    framed_with(st, viewer, StatusCode::OK, current, title, body)
}

/// A page inside the frame with `status`.
pub(crate) fn framed_with(
    st: &State,
    viewer: &Viewer,
    status: StatusCode,
    current: &str,
    title: &str,
    body: &str,
) -> Response {
    let (root, tenant, who) = frame_parts(st, viewer);
    let f = html::Frame {
        root: &root,
        tenant: &tenant,
        who: &who,
    };
    html_response(status, html::page(&f, current, title, body))
}

/// A store error as a `500` page (the detail goes to the log, not the page).
pub(crate) fn store_failed(st: &State, viewer: &Viewer, e: impl std::fmt::Display) -> Response {
    tracing::error!("dashboard: store read failed: {e}");
    framed_with(
        st,
        viewer,
        StatusCode::INTERNAL_SERVER_ERROR,
        "fleet",
        "Store unavailable",
        "<p>The store did not answer; the verifier's log says why.</p>",
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn form_fields_are_decoded_and_bounded_to_their_name() {
        assert_eq!(
            form_field(b"token=vrt_a%2Bb+c&x=1", "token").as_deref(),
            Some("vrt_a+b c")
        );
        assert_eq!(form_field(b"tokens=1", "token"), None);
        assert_eq!(form_field(b"token=%4", "token"), None);
        assert_eq!(form_field(b"token=%ff", "token"), None);
    }

    #[test]
    fn sessions_expire_close_and_are_kept_by_hash() {
        let s = Sessions::default();
        let id = s.open("tok", "read-token", 100);
        assert_eq!(s.find(&id, 101).unwrap().1, "read-token");
        assert!(s.find(&id, 100 + SESSION_TTL).is_none());
        assert!(s.find("tok", 101).is_none());
        s.close(&id);
        assert!(s.find(&id, 101).is_none());
        // The map holds the id's hash, not the id.
        let id = s.open("tok", "read-token", 100);
        let held = s.held.lock().unwrap();
        assert!(held.contains_key(&<[u8; 32]>::from(Sha256::digest(id.as_bytes()))));
    }

    #[test]
    fn sessions_are_bounded_and_the_oldest_give_way() {
        let s = Sessions::default();
        let first = s.open("tok", "a", 100);
        for i in 0..MAX_SESSIONS as u64 {
            s.open("tok", "b", 200 + i);
        }
        assert_eq!(s.held.lock().unwrap().len(), MAX_SESSIONS);
        assert!(s.find(&first, 150).is_none());
        // Expired ones are dropped first when full.
        let late = 200 + MAX_SESSIONS as u64 + SESSION_TTL;
        let id = s.open("tok", "c", late);
        assert_eq!(s.held.lock().unwrap().len(), 1);
        assert!(s.find(&id, late + 1).is_some());
    }

    #[test]
    fn cross_site_posts_are_recognised() {
        let mut h = HeaderMap::new();
        let uri = axum::http::Uri::from_static("/dashboard/login");
        let cross_site = |h: &HeaderMap| super::cross_site(h, &uri);
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8443"));
        assert!(!cross_site(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://127.0.0.1:8443"),
        );
        assert!(!cross_site(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(cross_site(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(cross_site(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(!cross_site(&h));
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&h));
        // HTTP/2: no Host header, the authority in the URI.
        let mut h = HeaderMap::new();
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://127.0.0.1:8443"),
        );
        let uri = axum::http::Uri::from_static("https://127.0.0.1:8443/dashboard/login");
        assert!(!super::cross_site(&h, &uri));
        let uri = axum::http::Uri::from_static("https://evil.example/dashboard/login");
        assert!(super::cross_site(&h, &uri));
    }
}
