//! Stations elsewhere. The admin's side is part of the REST API (`/api/v1/stations`): register,
//! list, disable, enable, a new enrolment code. The agents' side (`/station/v1/...`) is the
//! protocol `cardwright station` speaks: enrolment with a code, then calls over mutual TLS with
//! the station's client certificate. It is not in the OpenAPI document: it is for the agent of
//! the same Cardwright version, not for integrations.

use std::time::Duration;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use cardwright_cardsdk::encoder::CardKey;
use cardwright_domain::{BatchOrderId, CardId};
use cardwright_processes::stations::{self, EnrollmentCode, StationView as Station};
use cardwright_processes::temp_cards::remote::{self, AttemptRef, RemoteOutcome, Reported};
use cardwright_storage::stations::StationRecord;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{ApiJson, Auth};
use super::openapi::{JsonBody, NeedsLogin};
use super::schema::{StationDescriptionText, StationNameText};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// A station to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewStationBody {
    #[schema(value_type = StationNameText)]
    pub name: String,
    #[serde(default)]
    #[schema(value_type = StationDescriptionText)]
    pub description: String,
}

/// A station's enrolment code, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct EnrollmentView {
    pub name: String,
    /// Give it to `cardwright station enroll --code`. It works once, until `expires_at`. Its
    /// second part is the fingerprint of the server's CA, which the agent pins.
    pub enrollment_code: String,
    pub expires_at: DateTime<Utc>,
    /// SHA-256 of the server's CA certificate, as `openssl x509 -fingerprint -sha256` prints it.
    pub ca_fingerprint: String,
}

impl From<EnrollmentCode> for EnrollmentView {
    fn from(c: EnrollmentCode) -> Self {
        Self {
            name: c.station,
            enrollment_code: c.code,
            expires_at: c.expires_at,
            ca_fingerprint: c.ca_fingerprint,
        }
    }
}

/// A station.
#[derive(Debug, Serialize, ToSchema)]
pub struct StationView {
    pub name: String,
    pub description: String,
    /// `enrolling` (waiting for its agent), `online` (called within 90 seconds), `offline` or
    /// `disabled`.
    pub state: String,
    pub last_seen: Option<DateTime<Utc>>,
    /// The serial of the card the station holds now.
    pub current_card: Option<String>,
    /// Cards it produced since midnight (UTC).
    pub produced_today: u64,
    /// The agent's version, as it last said.
    pub version: Option<String>,
    /// Its printer's kind (spool, simulated, ipp).
    pub printer: Option<String>,
    /// Its chip encoder's kind (none, pkcs11).
    pub encoder: Option<String>,
    pub enrolled_at: Option<DateTime<Utc>>,
    /// The serial (hex) of its client certificate.
    pub certificate_serial: Option<String>,
    /// When that certificate ends (the agent renews it 30 days before).
    pub certificate_expires_at: Option<DateTime<Utc>>,
    /// Until when its enrolment code works, while it has one.
    pub code_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl From<Station> for StationView {
    fn from(v: Station) -> Self {
        let r = v.record;
        Self {
            name: r.name,
            description: r.description,
            state: v.state.as_str().to_owned(),
            last_seen: r.last_seen,
            current_card: r.current_card,
            produced_today: r.produced_today,
            version: r.version,
            printer: r.printer_kind,
            encoder: r.encoder_kind,
            enrolled_at: r.enrolled_at,
            certificate_serial: r.cert_serial,
            certificate_expires_at: r.cert_not_after,
            code_expires_at: r.code_expires_at,
            created_at: r.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StationList {
    pub stations: Vec<StationView>,
}

/// Register a station at an operator's desk; the answer carries its single-use enrolment code.
#[utoipa::path(post, path = "/stations", tag = "stations", request_body = NewStationBody,
    security(("bearer" = [])),
    responses((status = 201, description = "Registered; the enrolment code is shown this once.", body = EnrollmentView),
        (status = 400, description = "The name is not a station name, or the description is longer than 200 characters.", body = ErrorBody),
        JsonBody, NeedsLogin,
        (status = 403, description = "Needs the role production-admin.", body = ErrorBody),
        (status = 409, description = "A station of that name exists, or it is one of the server's own.", body = ErrorBody),
        (status = 422, description = "The description has a control or invisible formatting character; the message names the field.", body = ErrorBody)))]
pub async fn register_station(
    State(state): State<AppState>,
    Auth(op): Auth,
    ApiJson(body): ApiJson<NewStationBody>,
) -> Result<(StatusCode, Json<EnrollmentView>), ApiError> {
    let code = stations::register(&state.ctx, &op, &body.name, &body.description).await?;
    Ok((StatusCode::CREATED, Json(code.into())))
}

/// Every station, with its state.
#[utoipa::path(get, path = "/stations", tag = "stations", security(("bearer" = [])),
    responses((status = 200, description = "The stations, by name.", body = StationList), NeedsLogin,
        (status = 403, description = "Needs the role production-admin or registration-officer.", body = ErrorBody)))]
pub async fn list_stations(
    State(state): State<AppState>,
    Auth(op): Auth,
) -> Result<Json<StationList>, ApiError> {
    Ok(Json(StationList {
        stations: stations::list(&state.ctx, &op)
            .await?
            .into_iter()
            .map(StationView::from)
            .collect(),
    }))
}

/// One station.
#[utoipa::path(get, path = "/stations/{name}", tag = "stations",
    params(("name" = StationNameText, Path, description = "station name")), security(("bearer" = [])),
    responses((status = 200, description = "The station.", body = StationView),
        (status = 400, description = "Not a station name.", body = ErrorBody), NeedsLogin,
        (status = 403, description = "Needs the role production-admin or registration-officer.", body = ErrorBody),
        (status = 404, description = "No such station.", body = ErrorBody)))]
pub async fn get_station(
    State(state): State<AppState>,
    Auth(op): Auth,
    Path(name): Path<String>,
) -> Result<Json<StationView>, ApiError> {
    stations::check_name(&name)?;
    Ok(Json(stations::get(&state.ctx, &op, &name).await?.into()))
}

/// Disable a station at once: its next call is refused, it produces nothing more, and its
/// certificate is on hold (the revocation list shows it).
#[utoipa::path(post, path = "/stations/{name}/disable", tag = "stations",
    params(("name" = StationNameText, Path, description = "station name")), security(("bearer" = [])),
    responses((status = 200, description = "The station, disabled.", body = StationView),
        (status = 400, description = "Not a station name.", body = ErrorBody), NeedsLogin,
        (status = 403, description = "Needs the role production-admin.", body = ErrorBody),
        (status = 404, description = "No such station.", body = ErrorBody)))]
pub async fn disable_station(
    State(state): State<AppState>,
    Auth(op): Auth,
    Path(name): Path<String>,
) -> Result<Json<StationView>, ApiError> {
    stations::check_name(&name)?;
    Ok(Json(
        stations::set_disabled(&state.ctx, &op, &name, true)
            .await?
            .into(),
    ))
}

/// Enable a disabled station: its certificate is released from hold and it may call again.
#[utoipa::path(post, path = "/stations/{name}/enable", tag = "stations",
    params(("name" = StationNameText, Path, description = "station name")), security(("bearer" = [])),
    responses((status = 200, description = "The station, enabled.", body = StationView),
        (status = 400, description = "Not a station name.", body = ErrorBody), NeedsLogin,
        (status = 403, description = "Needs the role production-admin.", body = ErrorBody),
        (status = 404, description = "No such station.", body = ErrorBody)))]
pub async fn enable_station(
    State(state): State<AppState>,
    Auth(op): Auth,
    Path(name): Path<String>,
) -> Result<Json<StationView>, ApiError> {
    stations::check_name(&name)?;
    Ok(Json(
        stations::set_disabled(&state.ctx, &op, &name, false)
            .await?
            .into(),
    ))
}

/// A new enrolment code for a station (its agent moved to a new computer, or the code ran out).
#[utoipa::path(post, path = "/stations/{name}/enrollment", tag = "stations",
    params(("name" = StationNameText, Path, description = "station name")), security(("bearer" = [])),
    responses((status = 200, description = "The new code, shown this once.", body = EnrollmentView),
        (status = 400, description = "Not a station name.", body = ErrorBody), NeedsLogin,
        (status = 403, description = "Needs the role production-admin.", body = ErrorBody),
        (status = 404, description = "No such station.", body = ErrorBody)))]
pub async fn new_enrollment_code(
    State(state): State<AppState>,
    Auth(op): Auth,
    Path(name): Path<String>,
) -> Result<Json<EnrollmentView>, ApiError> {
    stations::check_name(&name)?;
    Ok(Json(
        stations::renew_code(&state.ctx, &op, &name).await?.into(),
    ))
}

// ---- The agents' protocol -------------------------------------------------------------------

/// The agent routes, outside the OpenAPI document.
pub fn agent_routes() -> Router<AppState> {
    Router::new()
        .route("/station/v1/enroll", post(enroll))
        .route("/station/v1/renew", post(renew))
        .route("/station/v1/jobs/next", post(next_job))
        .route(
            "/station/v1/jobs/{order}/{card}/{attempt}/heartbeat",
            post(heartbeat),
        )
        .route(
            "/station/v1/jobs/{order}/{card}/{attempt}/certificates",
            post(certify),
        )
        .route(
            "/station/v1/jobs/{order}/{card}/{attempt}/outcome",
            post(outcome),
        )
}

/// The client certificate of the request (DER), or 401.
fn client_certificate(parts: &Parts) -> Result<std::sync::Arc<Vec<u8>>, ApiError> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<crate::tls::Peer>>()
        .and_then(|peer| peer.0.certificate.clone())
        .ok_or_else(|| {
            ApiError::unauthorized(
                "stations call with their client certificate over HTTPS (cardwright station \
                 enroll gives one)",
            )
        })
}

/// The client certificate the request came with (DER), checked by the handler.
pub struct ClientCertificate(pub std::sync::Arc<Vec<u8>>);

impl FromRequestParts<AppState> for ClientCertificate {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(client_certificate(parts)?))
    }
}

/// The station calling, known and checked by its client certificate (its record read anew).
pub struct StationPeer(pub StationRecord);

impl FromRequestParts<AppState> for StationPeer {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let certificate = client_certificate(parts)?;
        Ok(Self(
            stations::authenticate(&state.ctx, &certificate).await?,
        ))
    }
}

/// The station calling about a card it holds: its name and its certificate's serial, which the
/// step checks in its own transaction (a certificate's station is remembered once looked up).
pub struct StationCaller {
    pub name: String,
    pub serial: String,
}

impl StationCaller {
    fn caller(&self) -> remote::Caller<'_> {
        remote::Caller {
            station: &self.name,
            certificate: Some(&self.serial),
        }
    }
}

impl FromRequestParts<AppState> for StationCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let certificate = client_certificate(parts)?;
        let (_, serial) = cardwright_pki::subject_and_serial(&certificate)
            .map_err(|_| ApiError::unauthorized("the client certificate does not parse"))?;
        let serial = hex::encode(serial);
        let known = state
            .station_certificates
            .lock()
            .ok()
            .and_then(|names| names.get(&serial).cloned());
        let name = if let Some(name) = known {
            name
        } else {
            let record = stations::authenticate(&state.ctx, &certificate).await?;
            if let Ok(mut names) = state.station_certificates.lock() {
                if names.len() > 10_000 {
                    names.clear();
                }
                names.insert(serial.clone(), record.name.clone());
            }
            record.name
        };
        let due = state
            .station_touched
            .lock()
            .ok()
            .is_some_and(|mut touched| {
                let now = std::time::Instant::now();
                let due = touched
                    .get(&name)
                    .is_none_or(|at| now.duration_since(*at) >= Duration::from_secs(10));
                if due {
                    if touched.len() > 10_000 {
                        touched.clear();
                    }
                    touched.insert(name.clone(), now);
                }
                due
            });
        if due {
            stations::touch(&state.ctx, &name).await?;
        }
        Ok(Self { name, serial })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollBody {
    code: String,
    /// The agent's signing request (PEM).
    csr: String,
}

#[derive(Debug, Serialize)]
struct EnrolledView {
    station: String,
    certificate: String,
    ca: String,
}

async fn enroll(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<EnrollBody>,
) -> Result<Json<EnrolledView>, ApiError> {
    let enrolled = stations::enroll(&state.ctx, &body.code, &body.csr).await?;
    tracing::info!(station = %enrolled.station, "station enrolled");
    Ok(Json(EnrolledView {
        station: enrolled.station,
        certificate: enrolled.certificate_pem,
        ca: enrolled.ca_pem,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RenewBody {
    /// The agent's signing request (PEM) for its new key.
    csr: String,
}

/// A new certificate for the calling station's new key; its current one is retired.
async fn renew(
    State(state): State<AppState>,
    ClientCertificate(certificate): ClientCertificate,
    ApiJson(body): ApiJson<RenewBody>,
) -> Result<Json<EnrolledView>, ApiError> {
    let renewed = stations::renew(&state.ctx, &certificate, &body.csr).await?;
    tracing::info!(station = %renewed.station, "station certificate renewed");
    Ok(Json(EnrolledView {
        station: renewed.station,
        certificate: renewed.certificate_pem,
        ca: renewed.ca_pem,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NextBody {
    /// The agent's version.
    #[serde(default)]
    version: String,
    /// Its printer's and encoder's kinds.
    #[serde(default)]
    printer: String,
    #[serde(default)]
    encoder: String,
    /// How long to wait for a job, in seconds (at most 30).
    #[serde(default)]
    wait_secs: u64,
}

/// The station's next card: at once when one is queued, else when one comes within
/// `wait_secs`; 204 when none came.
async fn next_job(
    State(state): State<AppState>,
    StationPeer(record): StationPeer,
    ApiJson(body): ApiJson<NextBody>,
) -> Result<Response, ApiError> {
    let serial = record.cert_serial.clone().unwrap_or_default();
    stations::seen(
        &state.ctx,
        &record,
        &body.version,
        &body.printer,
        &body.encoder,
    )
    .await?;
    let station = record.name;
    let lease_secs = state.ctx.stations.lease.num_seconds();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(body.wait_secs.min(30));
    let mut stop = state.shutdown.clone();
    loop {
        let caller = remote::Caller {
            station: &station,
            certificate: Some(&serial),
        };
        if let Some(job) = remote::claim(&state.ctx, caller).await? {
            tracing::info!(%station, serial = %job.serial, attempt = job.attempt, "card handed to station");
            return Ok(Json(job.to_json(lease_secs)).into_response());
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        let pause = tokio::time::sleep(Duration::from_millis(250));
        match stop.as_mut() {
            Some(stop) => tokio::select! {
                () = pause => {}
                _ = stop.wait_for(|stop| *stop) => return Ok(StatusCode::NO_CONTENT.into_response()),
            },
            None => pause.await,
        }
    }
}

fn attempt_ref(order: &str, card: &str, attempt: u32) -> Result<AttemptRef, ApiError> {
    Ok(AttemptRef {
        order: BatchOrderId::parse(order).map_err(|e| ApiError::bad_request(e.to_string()))?,
        card: CardId::parse(card).map_err(|e| ApiError::bad_request(e.to_string()))?,
        attempt,
    })
}

async fn heartbeat(
    State(state): State<AppState>,
    caller: StationCaller,
    Path((order, card, attempt)): Path<(String, String, u32)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let at = attempt_ref(&order, &card, attempt)?;
    let until = remote::heartbeat(&state.ctx, caller.caller(), at).await?;
    Ok(Json(serde_json::json!({ "lease_until": until })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CertifyBody {
    profile: String,
    /// Hex of the key's `CKA_ID`.
    key_id: String,
    /// Hex of the DER SubjectPublicKeyInfo.
    public_key: String,
}

async fn certify(
    State(state): State<AppState>,
    caller: StationCaller,
    Path((order, card, attempt)): Path<(String, String, u32)>,
    ApiJson(body): ApiJson<CertifyBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let at = attempt_ref(&order, &card, attempt)?;
    let key = CardKey {
        profile: body.profile,
        id: hex::decode(&body.key_id).map_err(|_| ApiError::bad_request("key_id: not hex"))?,
        spki: hex::decode(&body.public_key)
            .map_err(|_| ApiError::bad_request("public_key: not hex"))?,
    };
    let (certificate, serial) = remote::certify(&state.ctx, caller.caller(), at, &key).await?;
    Ok(Json(serde_json::json!({
        "serial": serial,
        "label": certificate.label,
        "der": hex::encode(&certificate.der),
        "subject": hex::encode(&certificate.subject),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutcomeBody {
    produced: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    certificates: Vec<String>,
    /// Hex of the new PUK sealed to the escrow key.
    #[serde(default)]
    puk_sealed: Option<String>,
    /// Hand the station its next card in the same step.
    #[serde(default)]
    next: bool,
}

async fn outcome(
    State(state): State<AppState>,
    caller: StationCaller,
    Path((order, card, attempt)): Path<(String, String, u32)>,
    ApiJson(body): ApiJson<OutcomeBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let at = attempt_ref(&order, &card, attempt)?;
    let outcome = RemoteOutcome {
        produced: body.produced,
        error: body.error,
        certificates: body.certificates,
        puk_sealed: body
            .puk_sealed
            .map(|h| hex::decode(h).map_err(|_| ApiError::bad_request("puk_sealed: not hex")))
            .transpose()?,
    };
    let (reported, job) =
        remote::report(&state.ctx, caller.caller(), at, &outcome, body.next).await?;
    if let Some(job) = &job {
        tracing::info!(station = %caller.name, serial = %job["serial"], "card handed to station");
    }
    Ok(Json(serde_json::json!({
        "recorded": match reported {
            Reported::Recorded => "now",
            Reported::AlreadyRecorded => "before",
        },
        "job": job,
    })))
}
