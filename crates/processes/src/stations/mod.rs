//! Stations elsewhere: agents at operators' desks that produce cards with the devices attached
//! to the desk's computer. A production-admin registers a station, which gives a single-use
//! enrolment code; the agent sends the code with a signing request and gets a client
//! certificate from the built-in CA, with which it makes every later call. Disabling a station
//! puts its certificate on hold (the revocation list shows it) and refuses its next call.

use cardwright_domain::{FreeText, Operator, Role, TextRule, Timestamp};
use cardwright_pki::tls::TlsRole;
use cardwright_storage::audit::{self, NewEvent};
use cardwright_storage::stations::{self, StationCertificate, StationRecord};
use cardwright_storage::{Conn, Store};

use crate::pki::{new_serial, pki};
use crate::{require_any, Context, ProcessError};

mod enrolment;
use enrolment::new_code;
pub use enrolment::{enroll, Enrolled, ENROLL_FAILURES_IN_ALL, ENROLL_FAILURES_PER_STATION};

/// How long an enrolment code can be used.
pub const CODE_VALID_MINUTES: i64 = 15;
/// How long a station's client certificate is valid.
pub const CERTIFICATE_DAYS: u32 = 365;
/// A station renews its certificate at most this often.
pub const RENEW_AFTER_MINUTES: i64 = 60;
/// A station that called within this many seconds is online.
pub const ONLINE_SECS: i64 = 90;
/// A station's description (where it stands, what it has): free text of one line, at most 200
/// characters, or none.
pub const DESCRIPTION_RULE: TextRule = TextRule::line(200).or_empty();

/// What a station is doing, as the Stations page and the API show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StationState {
    /// Registered; the agent has not enrolled yet (or was given a new code).
    Enrolling,
    /// Enrolled and called recently.
    Online,
    /// Enrolled, but not heard from lately.
    Offline,
    /// Disabled: its calls are refused and its certificate is on hold.
    Disabled,
}

impl StationState {
    pub fn as_str(self) -> &'static str {
        match self {
            StationState::Enrolling => "enrolling",
            StationState::Online => "online",
            StationState::Offline => "offline",
            StationState::Disabled => "disabled",
        }
    }
}

/// A station with its state.
#[derive(Debug, Clone)]
pub struct StationView {
    pub record: StationRecord,
    pub state: StationState,
}

fn view(record: StationRecord, now: Timestamp) -> StationView {
    let state = if record.disabled {
        StationState::Disabled
    } else if record.cert_serial.is_none() || record.code_sha256.is_some() {
        StationState::Enrolling
    } else if record
        .last_seen
        .is_some_and(|seen| (now - seen).num_seconds() <= ONLINE_SECS)
    {
        StationState::Online
    } else {
        StationState::Offline
    };
    StationView { record, state }
}

/// Midnight (UTC) of `now`'s day: "produced today" counts from there.
fn start_of_day(now: Timestamp) -> Timestamp {
    now.date_naive()
        .and_hms_opt(0, 0, 0)
        .map_or(now, |t| t.and_utc())
}

/// A registration's answer: the code the agent enrols with, once.
#[derive(Debug, Clone)]
pub struct EnrollmentCode {
    pub station: String,
    /// `SECRET-FINGERPRINT`: the secret (32 hex digits) and the SHA-256 fingerprint of the
    /// server's CA certificate (64 hex digits), which the agent pins.
    pub code: String,
    pub expires_at: Timestamp,
    /// The CA's fingerprint, colon-separated upper-case hex as `openssl x509 -fingerprint
    /// -sha256` prints it.
    pub ca_fingerprint: String,
}

/// The SHA-256 fingerprint of the current CA certificate: (lower-case hex, openssl's form).
pub fn ca_fingerprint(ctx: &Context) -> Result<(String, String), ProcessError> {
    let info = pki(ctx)?
        .ca
        .info()
        .map_err(|e| ProcessError::failed("reading the CA certificate", e))?;
    Ok((
        info.fingerprint.replace(':', "").to_lowercase(),
        info.fingerprint,
    ))
}

/// Checks a station's name: 1 to 64 letters, digits, `.`, `_` or `-`.
pub fn check_name(name: &str) -> Result<(), ProcessError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(ProcessError::Invalid(format!(
            "station name '{}': use 1 to 64 letters, digits, '.', '_' or '-'",
            name.chars().take(80).collect::<String>()
        )));
    }
    Ok(())
}

async fn event(
    ctx: &Context,
    tx: &mut Conn,
    actor: String,
    kind: &str,
    details: serde_json::Value,
) -> Result<(), ProcessError> {
    audit::append(
        tx,
        &ctx.audit_key,
        NewEvent::admin(ctx.now(), actor, kind, details),
    )
    .await?;
    Ok(())
}

/// Registers a station and gives its enrolment code.
pub async fn register(
    ctx: &Context,
    operator: &Operator,
    name: &str,
    description: &str,
) -> Result<EnrollmentCode, ProcessError> {
    require_any(operator, &[Role::ProductionAdmin], "Registering a station")?;
    check_name(name)?;
    let description = FreeText::parse("description", DESCRIPTION_RULE, description)?;
    let description = description.as_str();
    if ctx.stations.local.iter().any(|local| local == name) {
        return Err(ProcessError::Conflict(format!(
            "station '{name}' is one of the server's own stations (its configuration); choose \
             another name"
        )));
    }
    let (code, hash) = new_code(ctx, name)?;
    let mut tx = ctx.store.begin().await?;
    if !stations::insert(
        &mut tx,
        name,
        description,
        &hash,
        code.expires_at,
        ctx.now(),
    )
    .await?
    {
        return Err(ProcessError::Conflict(format!(
            "station '{name}' exists already"
        )));
    }
    event(
        ctx,
        &mut tx,
        operator.username.as_str().to_owned(),
        "StationRegister",
        serde_json::json!({"station": name, "description": description, "code_expires_at": code.expires_at}),
    )
    .await?;
    Store::commit(tx).await?;
    Ok(code)
}

/// A new enrolment code for a registered station (a lost code, a new computer at the desk).
/// Its certificate keeps working until the agent enrols again.
pub async fn renew_code(
    ctx: &Context,
    operator: &Operator,
    name: &str,
) -> Result<EnrollmentCode, ProcessError> {
    require_any(
        operator,
        &[Role::ProductionAdmin],
        "A station's enrolment code",
    )?;
    let (code, hash) = new_code(ctx, name)?;
    let mut tx = ctx.store.begin().await?;
    if !stations::new_code(&mut tx, name, &hash, code.expires_at, ctx.now()).await? {
        return Err(ProcessError::NotFound(format!("no station '{name}'")));
    }
    event(
        ctx,
        &mut tx,
        operator.username.as_str().to_owned(),
        "StationEnrollmentCode",
        serde_json::json!({"station": name, "code_expires_at": code.expires_at}),
    )
    .await?;
    Store::commit(tx).await?;
    Ok(code)
}

/// Refuses server stations (the configuration's `[[stations]]`) named like a station
/// registered at a desk: a batch order names the station that produces it, so one name must
/// mean one station.
pub async fn check_local_names(ctx: &Context) -> Result<(), ProcessError> {
    let mut conn = ctx.store.reader().await?;
    for name in &ctx.stations.local {
        if stations::get(&mut conn, name, ctx.now()).await?.is_some() {
            return Err(ProcessError::Conflict(format!(
                "[[stations]] name '{name}' is the name of a station registered at a desk (the \
                 Stations page); give the server's station another name"
            )));
        }
    }
    Ok(())
}

/// Every station with its state.
pub async fn list(ctx: &Context, operator: &Operator) -> Result<Vec<StationView>, ProcessError> {
    require_any(
        operator,
        &[Role::ProductionAdmin, Role::RegistrationOfficer],
        "The list of stations",
    )?;
    let now = ctx.now();
    let mut conn = ctx.store.reader().await?;
    Ok(stations::list(&mut conn, start_of_day(now))
        .await?
        .into_iter()
        .map(|r| view(r, now))
        .collect())
}

/// One station with its state.
pub async fn get(
    ctx: &Context,
    operator: &Operator,
    name: &str,
) -> Result<StationView, ProcessError> {
    require_any(
        operator,
        &[Role::ProductionAdmin, Role::RegistrationOfficer],
        "A station",
    )?;
    let now = ctx.now();
    let mut conn = ctx.store.reader().await?;
    stations::get(&mut conn, name, start_of_day(now))
        .await?
        .map(|r| view(r, now))
        .ok_or_else(|| ProcessError::NotFound(format!("no station '{name}'")))
}

/// Disables (or enables) a station at once: its next call is refused, and its certificate is
/// put on hold (or released).
pub async fn set_disabled(
    ctx: &Context,
    operator: &Operator,
    name: &str,
    disabled: bool,
) -> Result<StationView, ProcessError> {
    require_any(
        operator,
        &[Role::ProductionAdmin],
        if disabled {
            "Disabling a station"
        } else {
            "Enabling a station"
        },
    )?;
    let now = ctx.now();
    let mut tx = ctx.store.begin().await?;
    let Some(before) = stations::get(&mut tx, name, start_of_day(now)).await? else {
        return Err(ProcessError::NotFound(format!("no station '{name}'")));
    };
    if stations::set_disabled(&mut tx, name, disabled, now).await? {
        event(
            ctx,
            &mut tx,
            operator.username.as_str().to_owned(),
            if disabled {
                "StationDisable"
            } else {
                "StationEnable"
            },
            serde_json::json!({"station": name, "certificate": before.cert_serial}),
        )
        .await?;
    }
    let after = stations::get(&mut tx, name, start_of_day(now))
        .await?
        .ok_or_else(|| ProcessError::NotFound(format!("no station '{name}'")))?;
    Store::commit(tx).await?;
    Ok(view(after, now))
}

/// A client certificate for station `name`, for the public key `spki`.
fn issue(
    ctx: &Context,
    pki: &crate::services::pki::Pki,
    name: &str,
    spki: &[u8],
    now: Timestamp,
) -> Result<(Vec<u8>, StationCertificate), ProcessError> {
    let mut serial = [0u8; 16];
    ctx.entropy.fill(&mut serial);
    let der = pki
        .ca
        .issue_tls(
            spki,
            name,
            &[],
            TlsRole::Client,
            &new_serial(serial),
            now.timestamp(),
            CERTIFICATE_DAYS,
        )
        .map_err(|e| ProcessError::failed("issuing the station's certificate", e))?;
    let (_, serial_der) = cardwright_pki::subject_and_serial(&der)
        .map_err(|e| ProcessError::failed("reading the station's certificate", e))?;
    let certificate = StationCertificate {
        serial: hex::encode(serial_der),
        station: name.to_owned(),
        der: hex::encode(&der),
        issued_at: now,
        not_after: now + chrono::Duration::days(i64::from(CERTIFICATE_DAYS)),
    };
    Ok((der, certificate))
}

/// Renews the certificate of the station calling with `certificate_der` (its current one): the
/// signing request (PEM) becomes its new certificate, pending until the station first calls with
/// it; then the old one is retired (the revocation list names it as superseded). The same key
/// asked again (an answer lost) gets the same certificate. A new key at most once an hour; a
/// disabled station is refused.
pub async fn renew(
    ctx: &Context,
    certificate_der: &[u8],
    request_pem: &str,
) -> Result<Enrolled, ProcessError> {
    let pki = pki(ctx)?;
    let spki = cardwright_pki::tls::request_public_key(request_pem)
        .map_err(|e| ProcessError::Invalid(crate::report(&e)))?;
    let station = authenticate(ctx, certificate_der).await?;
    let current = serial_of(certificate_der)?;
    let now = ctx.now();
    let mut tx = ctx.store.begin().await?;
    let mut latest = None;
    for serial in [Some(current.clone()), station.next_serial.clone()]
        .into_iter()
        .flatten()
    {
        let Some((der, issued)) = stations::certificate(&mut tx, &serial).await? else {
            continue;
        };
        latest = latest.max(Some(issued));
        if Some(&serial) != station.next_serial.as_ref() {
            continue;
        }
        let der = hex::decode(&der)
            .map_err(|e| ProcessError::Internal(format!("stored certificate {serial}: {e}")))?;
        let (key, _) = cardwright_pki::tls::public_key_and_end(&der)
            .map_err(|e| ProcessError::failed("reading the station's certificate", e))?;
        if key == spki {
            return Ok(Enrolled {
                station: station.name,
                certificate_pem: cardwright_pki::certificate_pem(&der),
                ca_pem: pki.ca.certificate_pem().to_owned(),
            });
        }
    }
    if let Some(latest) = latest.filter(|at| (now - *at).num_minutes() < RENEW_AFTER_MINUTES) {
        return Err(ProcessError::Conflict(format!(
            "station '{}' got a certificate at {}; a station renews at most once an hour",
            station.name,
            latest.format("%Y-%m-%d %H:%M UTC")
        )));
    }
    let (der, certificate) = issue(ctx, pki, &station.name, &spki, now)?;
    if !stations::renew(&mut tx, &current, &certificate, now).await? {
        return Err(ProcessError::Forbidden(format!(
            "station '{}' is disabled, or its certificate was replaced meanwhile",
            station.name
        )));
    }
    event(
        ctx,
        &mut tx,
        format!("station:{}", station.name),
        "StationRenew",
        serde_json::json!({
            "station": station.name,
            "certificate": certificate.serial,
            "previous": current,
            "not_after": certificate.not_after,
        }),
    )
    .await?;
    Store::commit(tx).await?;
    Ok(Enrolled {
        station: station.name,
        certificate_pem: cardwright_pki::certificate_pem(&der),
        ca_pem: pki.ca.certificate_pem().to_owned(),
    })
}

fn serial_of(certificate_der: &[u8]) -> Result<String, ProcessError> {
    let (_, serial) = cardwright_pki::subject_and_serial(certificate_der).map_err(|_| {
        ProcessError::Unauthenticated("the client certificate does not parse".into())
    })?;
    Ok(hex::encode(serial))
}

/// The station calling with the client certificate `certificate_der`, which must be its
/// current one; a disabled station is refused.
pub async fn authenticate(
    ctx: &Context,
    certificate_der: &[u8],
) -> Result<StationRecord, ProcessError> {
    let serial = serial_of(certificate_der)?;
    let mut record = {
        let mut conn = ctx.store.reader().await?;
        stations::identify(&mut conn, &serial).await?
    }
    .ok_or_else(|| {
        ProcessError::Forbidden("the client certificate is not a current station's".into())
    })?;
    if record.disabled {
        return Err(ProcessError::Forbidden(format!(
            "station '{}' is disabled",
            record.name
        )));
    }
    if record.next_serial.as_deref() == Some(serial.as_str()) {
        // The first call with a renewed certificate: it becomes the current one.
        let mut tx = ctx.store.begin().await?;
        if stations::promote(&mut tx, &record.name, &serial, ctx.now()).await? {
            Store::commit(tx).await?;
            tracing::info!(station = %record.name, certificate = %serial, "renewed station certificate in use");
        }
        record.cert_serial = Some(serial);
        record.next_serial = None;
    }
    Ok(record)
}

/// Notes that a station called about a card it holds (a station busy with one card after
/// another asks for none), at most every ten seconds.
pub async fn touch(ctx: &Context, station: &str) -> Result<(), ProcessError> {
    let now = ctx.now();
    let mut tx = ctx.store.begin().await?;
    stations::touch(&mut tx, station, now, now - chrono::Duration::seconds(10)).await?;
    Store::commit(tx).await?;
    Ok(())
}

/// Notes that a station called, with its version and devices. A station that polls is noted
/// at most every ten seconds, so polling costs no write while nothing changes.
pub async fn seen(
    ctx: &Context,
    station: &StationRecord,
    version: &str,
    printer_kind: &str,
    encoder_kind: &str,
) -> Result<(), ProcessError> {
    let clip = |s: &str| s.chars().take(64).collect::<String>();
    let (version, printer_kind, encoder_kind) =
        (clip(version), clip(printer_kind), clip(encoder_kind));
    let now = ctx.now();
    let fresh = station
        .last_seen
        .is_some_and(|seen| (now - seen).num_seconds().abs() < 10);
    if fresh
        && station.version.as_deref() == Some(version.as_str())
        && station.printer_kind.as_deref() == Some(printer_kind.as_str())
        && station.encoder_kind.as_deref() == Some(encoder_kind.as_str())
    {
        return Ok(());
    }
    let mut tx = ctx.store.begin().await?;
    stations::seen(
        &mut tx,
        &station.name,
        now,
        &version,
        &printer_kind,
        &encoder_kind,
    )
    .await?;
    Store::commit(tx).await?;
    Ok(())
}
