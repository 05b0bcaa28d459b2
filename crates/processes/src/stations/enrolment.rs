//! Enrolment: the agent at a desk trades a station's single-use code and a signing request for
//! the station's client certificate. Wrong codes are counted, per station and in all, and each is
//! an audit event.

use cardwright_domain::Timestamp;
use cardwright_storage::{rate_limits, stations, Store};
use sha2::{Digest as _, Sha256};

use super::{ca_fingerprint, event, issue, EnrollmentCode, CODE_VALID_MINUTES};
use crate::pki::pki;
use crate::{Context, ProcessError};

/// Enrolment attempts a minute aimed at one station: past this its enrolment is refused (429)
/// until the minute is over.
pub const ENROLL_FAILURES_PER_STATION: i64 = 10;
/// Enrolment attempts a minute in all.
pub const ENROLL_FAILURES_IN_ALL: i64 = 60;

/// The window both limits count in.
fn window() -> chrono::Duration {
    chrono::Duration::minutes(1)
}

/// The first four bytes of a station's codes: they tell which station a code is meant for, so a
/// wrong code is counted against that station (the other twelve bytes are the secret).
fn code_tag(name: &str) -> [u8; 4] {
    let digest = Sha256::digest(format!("cardwright enrolment code\0{name}").as_bytes());
    [digest[0], digest[1], digest[2], digest[3]]
}

fn code_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new enrolment code for station `name`, and the hash of its secret part to store.
pub(super) fn new_code(
    ctx: &Context,
    name: &str,
) -> Result<(EnrollmentCode, String), ProcessError> {
    let (fingerprint, openssl) = ca_fingerprint(ctx)?;
    let mut secret = [0u8; 16];
    secret[..4].copy_from_slice(&code_tag(name));
    ctx.entropy.fill(&mut secret[4..]);
    let secret = hex::encode(secret);
    let hash = code_hash(&secret);
    Ok((
        EnrollmentCode {
            station: name.to_owned(),
            code: format!("{secret}-{fingerprint}"),
            expires_at: ctx.now() + chrono::Duration::minutes(CODE_VALID_MINUTES),
            ca_fingerprint: openssl,
        },
        hash,
    ))
}

/// What an enrolment gives the agent.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub station: String,
    /// The station's client certificate (PEM).
    pub certificate_pem: String,
    /// The CA certificate (PEM) the agent trusts from now on.
    pub ca_pem: String,
}

/// Enrols the agent that holds `code`: its signing request (PEM) becomes the station's client
/// certificate. The code works once, until it expires, and only with the CA it names.
///
/// Every attempt is counted first against the limits of the station the code is meant for (or,
/// for a code that names none, of every station awaiting its agent) and of all stations, and
/// refused with a time to wait once they are reached. A wrong code is an audit event
/// (`StationEnrollFailed`) naming the station.
pub async fn enroll(
    ctx: &Context,
    code: &str,
    request_pem: &str,
) -> Result<Enrolled, ProcessError> {
    let pki = pki(ctx)?;
    let code = code.trim();
    let spki = cardwright_pki::tls::request_public_key(request_pem)
        .map_err(|e| ProcessError::Invalid(crate::report(&e)))?;
    let now = ctx.now();
    let aimed = aimed_at(ctx, code, now).await?;
    take_turn(ctx, &aimed, now).await?;
    match check_and_enroll(ctx, code, &spki, now).await? {
        Ok((name, der)) => Ok(Enrolled {
            station: name,
            certificate_pem: cardwright_pki::certificate_pem(&der),
            ca_pem: pki.ca.certificate_pem().to_owned(),
        }),
        Err(wrong) => {
            record_failure(ctx, &aimed, &wrong).await?;
            Err(wrong.into())
        }
    }
}

/// Why a code was refused.
enum WrongCode {
    /// Not a code Cardwright gives.
    Malformed,
    /// A code that does not work here, and why.
    Refused(String),
}

impl WrongCode {
    fn reason(&self) -> &str {
        match self {
            WrongCode::Malformed => {
                "the enrolment code is not one Cardwright gave (SECRET-FINGERPRINT)"
            }
            WrongCode::Refused(reason) => reason,
        }
    }
}

impl From<WrongCode> for ProcessError {
    fn from(wrong: WrongCode) -> Self {
        match wrong {
            WrongCode::Malformed => ProcessError::Invalid(wrong.reason().to_owned()),
            WrongCode::Refused(reason) => ProcessError::Forbidden(reason),
        }
    }
}

/// The stations `code` is meant for: the one its tag names among those awaiting their agent,
/// else all of them.
async fn aimed_at(ctx: &Context, code: &str, now: Timestamp) -> Result<Vec<String>, ProcessError> {
    let mut conn = ctx.store.reader().await?;
    let awaiting = stations::awaiting_enrolment(&mut conn, now).await?;
    let tag = code
        .split_once('-')
        .and_then(|(secret, _)| hex::decode(secret).ok())
        .filter(|secret| secret.len() == 16)
        .map(|secret| [secret[0], secret[1], secret[2], secret[3]]);
    let named = tag.and_then(|tag| awaiting.iter().find(|name| code_tag(name) == tag));
    Ok(match named {
        Some(name) => vec![name.clone()],
        None => awaiting,
    })
}

/// Counts the attempt against the limits of all stations and of each station in `aimed`;
/// refused with the time to wait when one of them is reached.
async fn take_turn(ctx: &Context, aimed: &[String], now: Timestamp) -> Result<(), ProcessError> {
    let mut tx = ctx.store.begin().await?;
    let mut full: Option<(Timestamp, String)> = None;
    let mut note = |taken: Result<(), Timestamp>, what: String| {
        if let Err(until) = taken {
            if full.as_ref().is_none_or(|(later, _)| until > *later) {
                full = Some((until, what));
            }
        }
    };
    let taken = rate_limits::take(&mut tx, "enroll", ENROLL_FAILURES_IN_ALL, now, window()).await?;
    note(
        taken,
        format!("more than {ENROLL_FAILURES_IN_ALL} enrolment attempts in a minute"),
    );
    for name in aimed {
        let taken = rate_limits::take(
            &mut tx,
            &format!("enroll:{name}"),
            ENROLL_FAILURES_PER_STATION,
            now,
            window(),
        )
        .await?;
        note(
            taken,
            format!(
                "more than {ENROLL_FAILURES_PER_STATION} enrolment attempts in a minute for \
                 station '{name}'"
            ),
        );
    }
    Store::commit(tx).await?;
    match full {
        None => Ok(()),
        Some((until, what)) => {
            let wait = u64::try_from((until - now).num_seconds())
                .unwrap_or(0)
                .max(1);
            Err(ProcessError::Limited {
                message: format!("{what}; try again in {wait} seconds"),
                retry_after: std::time::Duration::from_secs(wait),
            })
        }
    }
}

/// Checks the code and enrols its station; the station's name and its new certificate (DER), or
/// why the code is wrong.
async fn check_and_enroll(
    ctx: &Context,
    code: &str,
    spki: &[u8],
    now: Timestamp,
) -> Result<Result<(String, Vec<u8>), WrongCode>, ProcessError> {
    let pki = pki(ctx)?;
    let Some((secret, fingerprint)) = code.split_once('-') else {
        return Ok(Err(WrongCode::Malformed));
    };
    let (current, _) = ca_fingerprint(ctx)?;
    if !fingerprint.eq_ignore_ascii_case(&current) {
        return Ok(Err(WrongCode::Refused(
            "the enrolment code names another certificate authority than this server's".into(),
        )));
    }
    let hash = code_hash(&secret.to_ascii_lowercase());
    let mut tx = ctx.store.begin().await?;
    let Some(name) = stations::by_code(&mut tx, &hash).await? else {
        return Ok(Err(WrongCode::Refused(
            "the enrolment code is not valid: unknown, or used already".into(),
        )));
    };
    let record = stations::get(&mut tx, &name, now)
        .await?
        .ok_or_else(|| ProcessError::Internal(format!("station {name} vanished")))?;
    if record.disabled {
        return Ok(Err(WrongCode::Refused(format!(
            "station '{name}' is disabled"
        ))));
    }
    if record.code_expires_at.is_none_or(|at| at < now) {
        return Ok(Err(WrongCode::Refused(format!(
            "the enrolment code of station '{name}' has expired; register a new code"
        ))));
    }
    let (der, certificate) = issue(ctx, pki, &name, spki, now)?;
    if !stations::enroll(&mut tx, &hash, &certificate, now).await? {
        return Ok(Err(WrongCode::Refused(
            "the enrolment code is not valid: unknown, used already or expired".into(),
        )));
    }
    event(
        ctx,
        &mut tx,
        format!("station:{name}"),
        "StationEnroll",
        serde_json::json!({"station": name, "certificate": certificate.serial}),
    )
    .await?;
    Store::commit(tx).await?;
    Ok(Ok((name, der)))
}

/// The audit event of a wrong code: the station it was meant for, or the stations awaiting
/// their agent when it names none.
async fn record_failure(
    ctx: &Context,
    aimed: &[String],
    wrong: &WrongCode,
) -> Result<(), ProcessError> {
    let station = match aimed {
        [one] => serde_json::Value::from(one.as_str()),
        _ => serde_json::Value::Null,
    };
    let mut tx = ctx.store.begin().await?;
    event(
        ctx,
        &mut tx,
        "anonymous".to_owned(),
        "StationEnrollFailed",
        serde_json::json!({
            "station": station,
            "awaiting": aimed,
            "reason": wrong.reason(),
        }),
    )
    .await?;
    Store::commit(tx).await?;
    tracing::warn!(station = ?aimed, reason = wrong.reason(), "wrong enrolment code");
    Ok(())
}
