//! Operator sessions in the browser: log in and out, the session cookie with its idle timeout,
//! and the CSRF tokens of forms.
//!
//! A session is a row of the `sessions` table under the SHA-256 of the random token the cookie
//! holds (HttpOnly, SameSite=Strict). Each request moves its expiry to [`IDLE_TIMEOUT`] from
//! now, until the session is as old as the login policy's token lifetime. Forms carry an
//! HMAC-SHA-256 of the session token; the login form, before any session exists, carries one of
//! a random value kept in a short-lived cookie of its own.

use askama::Template;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use cardwright_domain::Operator;
use cardwright_processes::{auth, Context, ProcessError};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::form::{parse_body, Posted};
use super::page::{render_with, Reply};
use crate::state::AppState;

/// How long a session lives without a request.
pub(crate) const IDLE_TIMEOUT: chrono::Duration = chrono::Duration::minutes(30);

/// The cookie holding the session token.
const SESSION_COOKIE: &str = "cardwright_session";
/// The cookie holding the login form's random value.
const LOGIN_COOKIE: &str = "cardwright_login";
/// What the CSRF token of a session's forms is the HMAC of.
const FORM_LABEL: &[u8] = b"cardwright ui form";
/// What the CSRF token of the login form is the HMAC of.
const LOGIN_LABEL: &[u8] = b"cardwright ui login";

/// A logged-in operator, from the session cookie. A request without a live session is sent to
/// the login page.
pub(crate) struct UiSession {
    pub operator: Operator,
    pub(crate) token: String,
}

impl UiSession {
    /// The CSRF token the session's forms carry.
    pub(crate) fn csrf(&self) -> String {
        hex::encode(mac(&self.token, FORM_LABEL).finalize().into_bytes())
    }

    /// Whether `token` is this session's CSRF token (compared in constant time).
    pub(crate) fn csrf_ok(&self, token: Option<&str>) -> bool {
        verify(&self.token, FORM_LABEL, token)
    }
}

fn mac(key: &str, label: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(label);
    mac
}

fn verify(key: &str, label: &[u8], token: Option<&str>) -> bool {
    let Some(bytes) = token.and_then(|t| hex::decode(t).ok()) else {
        return false;
    };
    mac(key, label).verify_slice(&bytes).is_ok()
}

/// A random value from the context's entropy, as hex.
fn random_hex(ctx: &Context) -> String {
    let mut raw = [0u8; 32];
    ctx.entropy.fill(&mut raw);
    hex::encode(raw)
}

/// The value of a cookie of the request.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn set_cookie(name: &str, value: &str, path: &str, max_age: Option<i64>) -> HeaderValue {
    let age = max_age
        .map(|s| format!("; Max-Age={s}"))
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; HttpOnly; SameSite=Strict{age}"
    ))
    .expect("cookie values are hex")
}

/// A 303 redirect.
pub(crate) fn see_other(location: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        res.headers_mut().insert(LOCATION, value);
    }
    res
}

/// A local path to return to after logging in; anything else becomes the home page.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.starts_with("/login")
                && !n.starts_with("/logout")
                && n.len() <= 2000
                && !n.chars().any(char::is_control) =>
        {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// Where a request without a live session goes: the login page, coming back to the page asked
/// for after login (for page loads).
fn to_login(parts: &Parts, had_cookie: bool) -> Response {
    let mut query: Vec<(&str, String)> = Vec::new();
    if parts.method == Method::GET || parts.method == Method::HEAD {
        let back = parts
            .uri
            .path_and_query()
            .map_or("/", axum::http::uri::PathAndQuery::as_str);
        if back != "/" {
            query.push(("next", back.to_owned()));
        }
    }
    if had_cookie {
        query.push(("expired", "1".to_owned()));
    }
    let location = if query.is_empty() {
        "/login".to_owned()
    } else {
        format!(
            "/login?{}",
            serde_urlencoded::to_string(&query).unwrap_or_default()
        )
    };
    let mut res = see_other(&location);
    if had_cookie {
        res.headers_mut()
            .append(SET_COOKIE, set_cookie(SESSION_COOKIE, "", "/", Some(0)));
    }
    res
}

/// Moves the session's expiry to the idle timeout from now.
async fn slide(ctx: &Context, token: &str) -> Result<(), ProcessError> {
    auth::keep_alive(ctx, token, IDLE_TIMEOUT).await
}

impl FromRequestParts<AppState> for UiSession {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_login(parts, false));
        };
        let (operator, must_change) = match auth::authenticate_session(&state.ctx, &token).await {
            Ok(found) => found,
            Err(ProcessError::Unauthenticated(_)) => return Err(to_login(parts, true)),
            Err(e) => return Err(internal(e)),
        };
        // A one-time password is changed before anything else is done.
        if must_change && !matches!(parts.uri.path(), "/account/password" | "/logout") {
            return Err(see_other("/account/password?first=1"));
        }
        slide(&state.ctx, &token).await.map_err(internal)?;
        Ok(Self { operator, token })
    }
}

fn internal(e: ProcessError) -> Response {
    let (status, message) = super::page::explain(e);
    (status, message).into_response()
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    next: String,
    username: String,
    error: Option<String>,
    notice: Option<&'static str>,
    /// "Sign in with NAME", when single sign-on is configured.
    sso_name: Option<String>,
    /// Whether the password form is shown.
    password_login: bool,
}

#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
    expired: Option<String>,
    bye: Option<String>,
}

/// The login form's random value: the one the browser has, or a new one to set.
fn login_value(ctx: &Context, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    if let Some(value) = cookie(headers, LOGIN_COOKIE) {
        return (value, None);
    }
    let value = random_hex(ctx);
    let header = set_cookie(LOGIN_COOKIE, &value, "/login", Some(3600));
    (value, Some(header))
}

fn login_form(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    page: LoginPage,
) -> Response {
    let ctx = &state.ctx;
    let (value, set) = login_value(ctx, headers);
    let page = LoginPage {
        csrf: hex::encode(mac(&value, LOGIN_LABEL).finalize().into_bytes()),
        sso_name: state.oidc.as_ref().map(|p| p.name().to_owned()),
        password_login: ctx.settings.login.password_login,
        ..page
    };
    let mut res = render_with(status, &page);
    if let Some(set) = set {
        res.headers_mut().append(SET_COOKIE, set);
    }
    res
}

/// GET /login: the login form (the home page for an operator already logged in).
pub(crate) async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        if auth::authenticate_session(&state.ctx, &token).await.is_ok() {
            return see_other(&next);
        }
    }
    let notice = if q.bye.is_some() {
        Some("You are logged out.")
    } else if q.expired.is_some() {
        Some("Your session has ended. Log in again to go on.")
    } else {
        None
    };
    login_form(
        &state,
        &headers,
        StatusCode::OK,
        LoginPage {
            csrf: String::new(),
            next,
            username: String::new(),
            error: None,
            notice,
            sso_name: None,
            password_login: true,
        },
    )
}

/// POST /login: checks the password and opens a session.
pub(crate) async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Reply {
    let form = parse_body(&body).map_err(|m| (StatusCode::BAD_REQUEST, m).into_response())?;
    let next = safe_next(form.get("next"));
    let username = form.get("username").unwrap_or_default().trim().to_owned();
    let refuse = |status: StatusCode, error: &str| {
        login_form(
            &state,
            &headers,
            status,
            LoginPage {
                csrf: String::new(),
                next: next.clone(),
                username: username.clone(),
                error: Some(error.to_owned()),
                notice: None,
                sso_name: None,
                password_login: true,
            },
        )
    };
    if !state.ctx.settings.login.password_login {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "Password login is switched off: sign in through the identity provider.",
        ));
    }
    let form_ok = cookie(&headers, LOGIN_COOKIE)
        .is_some_and(|value| verify(&value, LOGIN_LABEL, form.get("csrf")));
    if !form_ok {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "The login form had expired. Please log in again.",
        ));
    }
    let password = form.get("password").unwrap_or_default();
    let session = match auth::login(&state.ctx, &username, password).await {
        Ok(session) => session,
        Err(
            e @ (ProcessError::Unauthenticated(_)
            | ProcessError::Throttled(_)
            | ProcessError::Forbidden(_)),
        ) => {
            let (status, message) = super::page::explain(e);
            return Err(refuse(status, &message));
        }
        Err(e) => return Err(internal(e)),
    };
    slide(&state.ctx, &session.token).await.map_err(internal)?;
    let mut res = see_other(&next);
    let headers = res.headers_mut();
    headers.append(
        SET_COOKIE,
        set_cookie(SESSION_COOKIE, &session.token, "/", None),
    );
    headers.append(SET_COOKIE, set_cookie(LOGIN_COOKIE, "", "/login", Some(0)));
    Ok(res)
}

/// The cookie holding a single sign-on under way (state, nonce, PKCE verifier, where to go).
const OIDC_COOKIE: &str = "cardwright_oidc";
/// Where the browser keeps it: only the callback needs it.
const OIDC_PATH: &str = "/login/oidc";
/// How long a sign-in at the provider may take.
const OIDC_MAX_AGE: i64 = 600;

/// What the browser keeps while it is at the provider.
#[derive(serde::Serialize, Deserialize)]
struct Pending {
    state: String,
    nonce: String,
    verifier: String,
    next: String,
}

impl Pending {
    fn encode(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn from_headers(headers: &HeaderMap) -> Option<Self> {
        use base64::Engine as _;
        let raw = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(key, _)| *key == OIDC_COOKIE)
            .map(|(_, value)| value.to_owned())
            .filter(|v| !v.is_empty() && v.len() <= 2048)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(raw)
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// The single sign-on cookie: Lax, because the provider sends the browser back from its own
/// site, and only for the callback's path.
fn oidc_cookie(value: &str, max_age: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{OIDC_COOKIE}={value}; Path={OIDC_PATH}; HttpOnly; SameSite=Lax; Max-Age={max_age}"
    ))
    .expect("the cookie value is base64url")
}

/// The login page with an error, after a failed single sign-on.
fn sso_refused(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    error: String,
) -> Response {
    let mut res = login_form(
        state,
        headers,
        status,
        LoginPage {
            csrf: String::new(),
            next: "/".into(),
            username: String::new(),
            error: Some(error),
            notice: None,
            sso_name: None,
            password_login: true,
        },
    );
    res.headers_mut().append(SET_COOKIE, oidc_cookie("", 0));
    res
}

/// The configured identity provider, or the login page saying there is none (404).
fn provider(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<std::sync::Arc<crate::oidc::Provider>, Response> {
    state.oidc.clone().ok_or_else(|| {
        sso_refused(
            state,
            headers,
            StatusCode::NOT_FOUND,
            "Single sign-on is not configured.".into(),
        )
    })
}

/// GET /login/oidc: sends the browser to the identity provider to sign in.
pub(crate) async fn oidc_start(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    let provider = match provider(&state, &headers) {
        Ok(provider) => provider,
        Err(refused) => return refused,
    };
    let next = Some(safe_next(q.next.as_deref()))
        .filter(|n| n.len() <= 512)
        .unwrap_or_else(|| "/".to_owned());
    match provider.start().await {
        Ok(start) => {
            let pending = Pending {
                state: start.state,
                nonce: start.nonce,
                verifier: start.verifier,
                next,
            };
            let mut res = see_other(&start.url);
            res.headers_mut()
                .append(SET_COOKIE, oidc_cookie(&pending.encode(), OIDC_MAX_AGE));
            res
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "single sign-on could not start");
            sso_refused(
                &state,
                &headers,
                StatusCode::BAD_GATEWAY,
                format!(
                    "{} cannot be reached, so single sign-on is not possible now: {e:#}",
                    provider.name()
                ),
            )
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Template)]
#[template(path = "signed_in.html")]
struct SignedInPage {
    username: String,
    next: String,
}

/// GET /login/oidc/callback: the provider sends the browser back here; the code becomes a
/// session.
pub(crate) async fn oidc_callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let provider = match provider(&state, &headers) {
        Ok(provider) => provider,
        Err(refused) => return refused,
    };
    let refuse = |status: StatusCode, error: String| sso_refused(&state, &headers, status, error);
    let Some(pending) = Pending::from_headers(&headers) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "The sign-in took too long or was started in another browser. Please sign in again."
                .into(),
        );
    };
    if let Some(error) = q.error {
        let why = q.error_description.unwrap_or(error);
        let why: String = why.chars().filter(|c| !c.is_control()).take(300).collect();
        return refuse(
            StatusCode::FORBIDDEN,
            format!("{} did not sign you in: {why}", provider.name()),
        );
    }
    let state_ok = q.state.as_deref().is_some_and(|s| {
        s.len() == pending.state.len()
            && s.bytes()
                .zip(pending.state.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    let Some(code) = q
        .code
        .filter(|c| !c.is_empty() && c.len() <= 4096 && state_ok)
    else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "The answer from the identity provider does not belong to this sign-in. Please \
             sign in again."
                .into(),
        );
    };
    let identity = match provider
        .finish(&code, &pending.verifier, &pending.nonce)
        .await
    {
        Ok(identity) => identity,
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "single sign-on failed");
            return refuse(
                StatusCode::BAD_GATEWAY,
                format!("Signing in through {} failed: {e:#}", provider.name()),
            );
        }
    };
    let session = match auth::sign_in_external(&state.ctx, &identity).await {
        Ok(session) => session,
        Err(e @ (ProcessError::Forbidden(_) | ProcessError::Unauthenticated(_))) => {
            let (status, message) = super::page::explain(e);
            return refuse(status, message);
        }
        Err(e) => return internal(e),
    };
    if let Err(e) = slide(&state.ctx, &session.token).await {
        return internal(e);
    }
    // The provider's site sent the browser here, so a browser would not send the Strict session
    // cookie along a redirect; a page of this site moves on instead.
    let mut res = super::page::render(&SignedInPage {
        username: session.operator.username.as_str().to_owned(),
        next: pending.next,
    });
    let headers = res.headers_mut();
    headers.append(
        SET_COOKIE,
        set_cookie(SESSION_COOKIE, &session.token, "/", None),
    );
    headers.append(SET_COOKIE, oidc_cookie("", 0));
    res
}

/// POST /logout: ends the session.
pub(crate) async fn logout(State(state): State<AppState>, posted: Posted) -> Reply {
    auth::logout(&state.ctx, &posted.session.token)
        .await
        .map_err(internal)?;
    let mut res = see_other("/login?bye=1");
    res.headers_mut()
        .append(SET_COOKIE, set_cookie(SESSION_COOKIE, "", "/", Some(0)));
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let a = UiSession {
            operator: Operator {
                id: cardwright_domain::OperatorId::new(1, [0; 10]),
                username: cardwright_domain::Username::parse("ann").unwrap(),
                roles: cardwright_domain::Roles::default(),
            },
            token: "aa".repeat(32),
        };
        let b = UiSession {
            token: "bb".repeat(32),
            operator: a.operator.clone(),
        };
        assert!(a.csrf_ok(Some(&a.csrf())));
        assert!(!a.csrf_ok(Some(&b.csrf())));
        assert!(!a.csrf_ok(None));
        assert!(!a.csrf_ok(Some("not hex")));
    }

    #[test]
    fn only_local_paths_are_returned_to() {
        assert_eq!(safe_next(Some("/cards/x?a=1")), "/cards/x?a=1");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "/login",
        ] {
            assert_eq!(safe_next(Some(bad)), "/");
        }
        assert_eq!(safe_next(None), "/");
    }
}
