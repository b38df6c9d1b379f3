//! The HTTP side of `client serve`: routes, JSON errors, the bearer token, deadlines, and
//! the live stream of payments received (Server-Sent Events).

use super::core::{PayRequest, ReceivedEvent, ServiceError, WalletCore, check_key};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fastpay_wire::{AccountId, Amount};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

/// The page and its assets, served as they are in the repository (no build step).
const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const STYLE_CSS: &str = include_str!("page/style.css");
/// The OpenAPI description of the API.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// Every route the service answers, as `(method, path)` in OpenAPI's path syntax (the
/// description must list each one; a test checks).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/accounts"),
    ("get", "/api/accounts/{account}"),
    ("get", "/api/accounts/{account}/history"),
    ("post", "/api/payments"),
    ("get", "/api/events"),
];

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    core: Arc<Mutex<WalletCore>>,
    /// Payments received, as the poller learns them.
    events: broadcast::Sender<ReceivedEvent>,
    /// How many live streams watch each account (the poller syncs only these).
    watchers: Arc<Mutex<HashMap<AccountId, usize>>>,
    /// The SHA-256 of the bearer token, if one is required.
    token: Option<[u8; 32]>,
    /// How long a request may take before it is answered with 504.
    deadline: Duration,
}

impl AppState {
    /// The state over `core`; requests need `token` as a bearer token if it is given.
    pub fn new(core: WalletCore, token: Option<&str>, deadline: Duration) -> Self {
        let (events, _) = broadcast::channel(4096);
        AppState {
            core: Arc::new(Mutex::new(core)),
            events,
            watchers: Arc::new(Mutex::new(HashMap::new())),
            token: token.map(|t| Sha256::digest(t.as_bytes()).into()),
            deadline,
        }
    }

    /// Syncs the watched accounts once and publishes what they received; returns the
    /// errors of accounts that could not be synced.
    pub fn poll_once(&self) -> Vec<ServiceError> {
        let watched: Vec<AccountId> = lock(&self.watchers).keys().copied().collect();
        if watched.is_empty() {
            return Vec::new();
        }
        let (events, errors) = lock(&self.core).poll(&watched);
        for event in events {
            // No receiver is fine: nobody is watching that account any more.
            let _ = self.events.send(event);
        }
        errors
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A handler that panicked mid-call leaves the wallet as saved on disk; carry on.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The service's router.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/accounts", get(accounts))
        .route("/api/accounts/{account}", get(account))
        .route("/api/accounts/{account}/history", get(history))
        .route("/api/payments", post(pay))
        .route("/api/events", get(events))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/app.js",
            get(|| async { asset("text/javascript", APP_JS) }),
        )
        .route("/style.css", get(|| async { asset("text/css", STYLE_CSS) }))
        .route(
            "/openapi.json",
            get(|| async { asset("application/json", OPENAPI_JSON) }),
        )
        .merge(api)
        .with_state(state)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// An error answer: a status and `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        let (status, code) = match &error {
            ServiceError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ServiceError::UnknownAccount(_) => (StatusCode::NOT_FOUND, "unknown_account"),
            ServiceError::WatchOnly(_) => (StatusCode::CONFLICT, "watch_only"),
            ServiceError::InsufficientFunds { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "insufficient_funds")
            }
            ServiceError::KeyReused { .. } => (StatusCode::CONFLICT, "idempotency_key_reused"),
            ServiceError::CommitteeTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "committee_timeout"),
            ServiceError::Network(_) => (StatusCode::BAD_GATEWAY, "committee_error"),
            ServiceError::Wallet(_) => (StatusCode::INTERNAL_SERVER_ERROR, "wallet_error"),
        };
        ApiError::new(status, code, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, axum::Json(body)).into_response()
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// Refuses API requests without the bearer token, when one is required.
async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(expected) = &state.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let matches = given.is_some_and(|token| {
            let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
            digest == *expected
        });
        if !matches {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this service requires `Authorization: Bearer <token>` (the token in its --token-file)",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    next.run(request).await
}

/// Runs `call` on the wallet on a blocking thread, answering 504 after the deadline.
async fn with_core<T: Send + 'static>(
    state: &AppState,
    call: impl FnOnce(&mut WalletCore) -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ApiError> {
    let core = state.core.clone();
    let work = tokio::task::spawn_blocking(move || call(&mut lock(&core)));
    match tokio::time::timeout(state.deadline, work).await {
        Ok(Ok(result)) => result.map_err(ApiError::from),
        Ok(Err(join)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the request failed: {join}"),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "deadline",
            format!(
                "no answer within {} s (the wallet is busy or the committee slow); a payment may \
                 still complete: retry it with the same idempotency key",
                state.deadline.as_secs()
            ),
        )),
    }
}

fn parse_account(text: &str, what: &str) -> Result<AccountId, ApiError> {
    text.trim().parse().map_err(|_| {
        ApiError::bad_request(format!("{what}: not an address (64 hex digits): {text:?}"))
    })
}

async fn accounts(State(state): State<AppState>) -> Result<Response, ApiError> {
    let accounts = with_core(&state, |core| Ok(core.accounts())).await?;
    Ok(axum::Json(json!({ "accounts": accounts })).into_response())
}

async fn account(
    State(state): State<AppState>,
    Path(account): Path<String>,
) -> Result<Response, ApiError> {
    let account = parse_account(&account, "account")?;
    let view = with_core(&state, move |core| core.account(&account)).await?;
    Ok(axum::Json(view).into_response())
}

#[derive(Deserialize)]
struct HistoryQuery {
    limit: Option<String>,
}

async fn history(
    State(state): State<AppState>,
    Path(account): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<Response, ApiError> {
    let account = parse_account(&account, "account")?;
    let limit = match query.limit {
        None => 200,
        Some(text) => text
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request(format!("limit: not a count: {text:?}")))?,
    };
    let payments = with_core(&state, move |core| core.history(&account, limit)).await?;
    Ok(axum::Json(json!({ "account": account, "payments": payments })).into_response())
}

/// Reads the pay request's JSON by hand, so that every mistake gets a message naming the
/// field.
fn parse_pay(body: &[u8]) -> Result<PayRequest, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    let field = |name: &str| {
        value
            .get(name)
            .ok_or_else(|| ApiError::bad_request(format!("{name}: missing")))
    };
    let text = |name: &str| {
        field(name)?
            .as_str()
            .ok_or_else(|| ApiError::bad_request(format!("{name}: must be a string")))
    };
    let from = parse_account(text("from")?, "from")?;
    let to = parse_account(text("to")?, "to")?;
    let amount = match field("amount")? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) if s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        _ => None,
    }
    .filter(|&units| units > 0)
    .ok_or_else(|| {
        ApiError::bad_request(format!(
            "amount: must be a whole number of units from 1 to {}, not {}",
            u64::MAX,
            value["amount"]
        ))
    })?;
    let idempotency_key = text("idempotency_key")?.to_string();
    check_key(&idempotency_key)?;
    Ok(PayRequest {
        from,
        to,
        amount: Amount::new(amount),
        idempotency_key,
    })
}

async fn pay(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let request = parse_pay(&body)?;
    let done = with_core(&state, move |core| core.pay(&request)).await?;
    let status = if done.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, axum::Json(done)).into_response())
}

#[derive(Deserialize)]
struct EventsQuery {
    account: Option<String>,
}

/// Removes a stream's watch of its account when the stream ends.
struct Watch {
    watchers: Arc<Mutex<HashMap<AccountId, usize>>>,
    account: AccountId,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut watchers = lock(&self.watchers);
        if let Some(count) = watchers.get_mut(&self.account) {
            *count -= 1;
            if *count == 0 {
                watchers.remove(&self.account);
            }
        }
    }
}

async fn events(
    State(state): State<AppState>,
    Query(query): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let text = query
        .account
        .ok_or_else(|| ApiError::bad_request("account: missing (?account=ADDRESS)"))?;
    let account = parse_account(&text, "account")?;
    if !with_core(&state, move |core| Ok(core.contains(&account))).await? {
        return Err(ServiceError::UnknownAccount(account).into());
    }
    // Subscribe before the watch starts, so nothing learned after `ready` is missed.
    let receiver = state.events.subscribe();
    *lock(&state.watchers).entry(account).or_default() += 1;
    let watch = Watch {
        watchers: state.watchers.clone(),
        account,
    };
    let ready = Event::default()
        .event("ready")
        .data(json!({ "account": account }).to_string());
    let payments = BroadcastStream::new(receiver).filter_map(move |item| {
        let _keep = &watch;
        match item {
            Ok(event) if event.account == account => Some(
                Event::default()
                    .event("payment")
                    .data(serde_json::to_string(&event).unwrap_or_default()),
            ),
            Ok(_) => None,
            // Too slow a reader: say so (it should re-read the history).
            Err(_) => Some(Event::default().event("lagged").data("{}")),
        }
    });
    let stream = tokio_stream::once(ready)
        .chain(payments)
        .map(Ok::<Event, Infallible>);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_description_lists_every_route() {
        let description: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        for (method, path) in ROUTES {
            assert!(
                description["paths"][path][method].is_object(),
                "openapi.json lacks {method} {path}"
            );
        }
        let listed = description["paths"].as_object().unwrap().len();
        let paths: std::collections::BTreeSet<_> = ROUTES.iter().map(|(_, p)| p).collect();
        assert_eq!(
            listed,
            paths.len(),
            "openapi.json lists a path the service lacks"
        );
    }

    #[test]
    fn pay_requests_name_the_field_that_is_wrong() {
        let a = "11".repeat(32);
        let b = "22".repeat(32);
        let ok = format!(r#"{{"from":"{a}","to":"{b}","amount":12,"idempotency_key":"k"}}"#);
        assert_eq!(parse_pay(ok.as_bytes()).unwrap().amount, Amount::new(12));
        let as_text = format!(r#"{{"from":"{a}","to":"{b}","amount":"12","idempotency_key":"k"}}"#);
        assert_eq!(
            parse_pay(as_text.as_bytes()).unwrap().amount,
            Amount::new(12)
        );
        for (body, needle) in [
            ("not json".to_string(), "not JSON"),
            (
                format!(r#"{{"to":"{b}","amount":1,"idempotency_key":"k"}}"#),
                "from: missing",
            ),
            (
                format!(r#"{{"from":"xyz","to":"{b}","amount":1,"idempotency_key":"k"}}"#),
                "from: not an address",
            ),
            (
                format!(r#"{{"from":"{a}","to":"{b}","amount":-3,"idempotency_key":"k"}}"#),
                "amount",
            ),
            (
                format!(r#"{{"from":"{a}","to":"{b}","amount":1.5,"idempotency_key":"k"}}"#),
                "amount",
            ),
            (
                format!(r#"{{"from":"{a}","to":"{b}","amount":0,"idempotency_key":"k"}}"#),
                "amount",
            ),
            (
                format!(r#"{{"from":"{a}","to":"{b}","amount":"1e3","idempotency_key":"k"}}"#),
                "amount",
            ),
            (
                format!(r#"{{"from":"{a}","to":"{b}","amount":1,"idempotency_key":""}}"#),
                "idempotency_key",
            ),
            (
                format!(r#"{{"from":"{a}","to":"{b}","amount":1}}"#),
                "idempotency_key: missing",
            ),
        ] {
            let error = parse_pay(body.as_bytes()).expect_err(&body);
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{body}");
            assert!(error.message.contains(needle), "{body}: {}", error.message);
        }
    }
}
