//! Stations elsewhere: their registration, enrolment, client certificates and leases, the
//! escrow key they seal PUKs to, and what the server keeps of the jobs they hold.

use cardwright_domain::{BatchOrderId, CardId, Timestamp};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::sql::opt_from_micros;
use crate::{from_micros, to_micros, Conn, StoreError};

/// A station as recorded, with what the Stations page shows beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationRecord {
    pub name: String,
    pub description: String,
    pub disabled: bool,
    /// SHA-256 (hex) of the enrolment code's secret, while the station has not enrolled.
    pub code_sha256: Option<String>,
    pub code_expires_at: Option<Timestamp>,
    /// The serial (hex) of the station's current client certificate.
    pub cert_serial: Option<String>,
    /// The serial of a renewed certificate the station has not called with yet.
    pub next_serial: Option<String>,
    /// When the current certificate ends.
    pub cert_not_after: Option<Timestamp>,
    pub created_at: Timestamp,
    pub enrolled_at: Option<Timestamp>,
    pub last_seen: Option<Timestamp>,
    pub version: Option<String>,
    pub printer_kind: Option<String>,
    pub encoder_kind: Option<String>,
    /// The serial of the card the station holds now.
    pub current_card: Option<String>,
    /// Cards it produced since `since` (see [`list`]).
    pub produced_today: u64,
}

fn record(row: &AnyRow) -> Result<StationRecord, StoreError> {
    Ok(StationRecord {
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        code_sha256: row.try_get("code_sha256")?,
        code_expires_at: opt_from_micros(row.try_get("code_expires_at")?)?,
        cert_serial: row.try_get("cert_serial")?,
        next_serial: row.try_get("next_serial")?,
        cert_not_after: opt_from_micros(row.try_get("cert_not_after")?)?,
        created_at: from_micros(row.try_get("created_at")?)?,
        enrolled_at: opt_from_micros(row.try_get("enrolled_at")?)?,
        last_seen: opt_from_micros(row.try_get("last_seen")?)?,
        version: row.try_get("version")?,
        printer_kind: row.try_get("printer_kind")?,
        encoder_kind: row.try_get("encoder_kind")?,
        current_card: row.try_get("current_card")?,
        produced_today: u64::try_from(row.try_get::<i64, _>("produced_today")?).unwrap_or(0),
    })
}

/// Every station's columns, the card it holds and what it produced since `$1`.
const SELECT: &str = "SELECT s.name, s.description, s.disabled, s.code_sha256, s.code_expires_at, \
    s.cert_serial, s.next_serial, s.created_at, s.enrolled_at, s.last_seen, s.version, s.printer_kind, \
    s.encoder_kind, \
    (SELECT k.not_after FROM station_certificates k WHERE k.serial = s.cert_serial) \
     AS cert_not_after, \
    (SELECT MIN(c.serial) FROM batch_order_items i JOIN cards c ON c.id = i.card_id \
     WHERE i.status = 'producing' AND i.station = s.name) AS current_card, \
    (SELECT COUNT(*) FROM production_attempts a WHERE a.station = s.name \
     AND a.outcome = 'produced' AND a.finished_at >= $1) AS produced_today \
    FROM stations s";

/// A new station waiting for its enrolment. False when the name is taken.
pub async fn insert(
    conn: &mut Conn,
    name: &str,
    description: &str,
    code_sha256: &str,
    code_expires_at: Timestamp,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO stations (name, description, disabled, code_sha256, code_expires_at, \
         created_at, updated_at) VALUES ($1, $2, 0, $3, $4, $5, $5) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(description)
    .bind(code_sha256)
    .bind(to_micros(code_expires_at))
    .bind(to_micros(now))
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Every station, by name; `produced_today` counts from `since`.
pub async fn list(conn: &mut Conn, since: Timestamp) -> Result<Vec<StationRecord>, StoreError> {
    let rows = sqlx::query(&format!("{SELECT} ORDER BY s.name"))
        .bind(to_micros(since))
        .fetch_all(conn)
        .await?;
    rows.iter().map(record).collect()
}

/// One station.
pub async fn get(
    conn: &mut Conn,
    name: &str,
    since: Timestamp,
) -> Result<Option<StationRecord>, StoreError> {
    let row = sqlx::query(&format!("{SELECT} WHERE s.name = $2"))
        .bind(to_micros(since))
        .bind(name)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(record).transpose()
}

/// The station's standing for a call it makes: whether it is disabled, and the serial of its
/// current certificate (`None`: no such station). The row stays locked (shared) until the
/// transaction ends, so a disable waits for a call under way and the calls after it see it.
pub async fn standing(
    conn: &mut Conn,
    dialect: crate::Dialect,
    name: &str,
) -> Result<Option<(bool, Option<String>)>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT disabled, cert_serial FROM stations WHERE name = $1{}",
        dialect.for_share()
    ))
    .bind(name)
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        Ok((
            row.try_get::<i64, _>("disabled")? != 0,
            row.try_get("cert_serial")?,
        ))
    })
    .transpose()
}

/// What a call with a client certificate needs of its station: the columns of the station whose
/// current (or renewed, pending) certificate has serial `serial`, without the counts [`get`]
/// adds.
pub async fn identify(conn: &mut Conn, serial: &str) -> Result<Option<StationRecord>, StoreError> {
    let row = sqlx::query(
        "SELECT name, description, disabled, code_sha256, code_expires_at, cert_serial, \
         next_serial, created_at, enrolled_at, last_seen, version, printer_kind, encoder_kind, \
         NULL AS cert_not_after, NULL AS current_card, 0 AS produced_today FROM stations \
         WHERE cert_serial = $1 OR next_serial = $1",
    )
    .bind(serial)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(record).transpose()
}

/// The station waiting for the enrolment code whose secret hashes to `code_sha256`.
pub async fn by_code(conn: &mut Conn, code_sha256: &str) -> Result<Option<String>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT name FROM stations WHERE code_sha256 = $1")
            .bind(code_sha256)
            .fetch_optional(conn)
            .await?,
    )
}

/// The stations whose enrolment code still works at `now`, by name.
pub async fn awaiting_enrolment(
    conn: &mut Conn,
    now: Timestamp,
) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT name FROM stations WHERE code_sha256 IS NOT NULL AND code_expires_at >= $1 \
         ORDER BY name",
    )
    .bind(crate::to_micros(now))
    .fetch_all(conn)
    .await?)
}

/// A client certificate issued to a station.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationCertificate {
    /// Hex of the certificate's serial number.
    pub serial: String,
    pub station: String,
    /// Hex of the certificate.
    pub der: String,
    pub issued_at: Timestamp,
    pub not_after: Timestamp,
}

/// Completes an enrolment: the code is used up and `certificate` becomes the station's. False
/// (and nothing written) when the code is no longer the station's, has expired or the station
/// is disabled.
pub async fn enroll(
    conn: &mut Conn,
    code_sha256: &str,
    certificate: &StationCertificate,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let updated = sqlx::query(
        "UPDATE stations SET code_sha256 = NULL, code_expires_at = NULL, cert_serial = $1, \
         next_serial = NULL, enrolled_at = $2, updated_at = $2 WHERE name = $3 AND code_sha256 = $4 \
         AND code_expires_at >= $2 AND disabled = 0",
    )
    .bind(&certificate.serial)
    .bind(to_micros(now))
    .bind(&certificate.station)
    .bind(code_sha256)
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() != 1 {
        return Ok(false);
    }
    add_certificate(conn, certificate, now).await?;
    Ok(true)
}

/// Retires the station's certificates so far and adds `certificate`.
async fn add_certificate(
    conn: &mut Conn,
    certificate: &StationCertificate,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE station_certificates SET retired_at = $1 WHERE station = $2 AND retired_at IS NULL",
    )
    .bind(to_micros(now))
    .bind(&certificate.station)
    .execute(&mut *conn)
    .await?;
    insert_certificate(conn, certificate).await
}

async fn insert_certificate(
    conn: &mut Conn,
    certificate: &StationCertificate,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO station_certificates (serial, station, der, issued_at, not_after) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&certificate.serial)
    .bind(&certificate.station)
    .bind(&certificate.der)
    .bind(to_micros(certificate.issued_at))
    .bind(to_micros(certificate.not_after))
    .execute(conn)
    .await?;
    Ok(())
}

/// A station's certificate by serial: its DER (hex) and when it was issued.
pub async fn certificate(
    conn: &mut Conn,
    serial: &str,
) -> Result<Option<(String, Timestamp)>, StoreError> {
    let row = sqlx::query("SELECT der, issued_at FROM station_certificates WHERE serial = $1")
        .bind(serial)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|row| Ok((row.try_get("der")?, from_micros(row.try_get("issued_at")?)?)))
        .transpose()
}

/// Renews a station's certificate: `certificate` becomes pending beside the current one with
/// serial `current` (an earlier pending one is retired). False (and nothing written) when
/// `current` is no longer the station's, or the station is disabled.
pub async fn renew(
    conn: &mut Conn,
    current: &str,
    certificate: &StationCertificate,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let earlier: Option<Option<String>> = sqlx::query_scalar(
        "SELECT next_serial FROM stations WHERE name = $1 AND cert_serial = $2 AND disabled = 0",
    )
    .bind(&certificate.station)
    .bind(current)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(earlier) = earlier else {
        return Ok(false);
    };
    let updated = sqlx::query(
        "UPDATE stations SET next_serial = $1, updated_at = $2 WHERE name = $3 \
         AND cert_serial = $4 AND disabled = 0",
    )
    .bind(&certificate.serial)
    .bind(to_micros(now))
    .bind(&certificate.station)
    .bind(current)
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() != 1 {
        return Ok(false);
    }
    if let Some(earlier) = earlier {
        retire(conn, &earlier, now).await?;
    }
    insert_certificate(conn, certificate).await?;
    Ok(true)
}

async fn retire(conn: &mut Conn, serial: &str, now: Timestamp) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE station_certificates SET retired_at = $1 WHERE serial = $2 AND retired_at IS NULL",
    )
    .bind(to_micros(now))
    .bind(serial)
    .execute(conn)
    .await?;
    Ok(())
}

/// The station called with its pending certificate `serial`: it becomes the current one, and
/// the one before is retired. False when `serial` is not the station's pending certificate.
pub async fn promote(
    conn: &mut Conn,
    name: &str,
    serial: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let before: Option<Option<String>> =
        sqlx::query_scalar("SELECT cert_serial FROM stations WHERE name = $1 AND next_serial = $2")
            .bind(name)
            .bind(serial)
            .fetch_optional(&mut *conn)
            .await?;
    let Some(before) = before else {
        return Ok(false);
    };
    let updated = sqlx::query(
        "UPDATE stations SET cert_serial = $1, next_serial = NULL, updated_at = $2 \
         WHERE name = $3 AND next_serial = $1",
    )
    .bind(serial)
    .bind(to_micros(now))
    .bind(name)
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() != 1 {
        return Ok(false);
    }
    if let Some(before) = before {
        retire(conn, &before, now).await?;
    }
    Ok(true)
}

/// A new enrolment code for a station (its earlier certificate stays until the new one comes).
pub async fn new_code(
    conn: &mut Conn,
    name: &str,
    code_sha256: &str,
    expires_at: Timestamp,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let updated = sqlx::query(
        "UPDATE stations SET code_sha256 = $1, code_expires_at = $2, updated_at = $3 WHERE name = $4",
    )
    .bind(code_sha256)
    .bind(to_micros(expires_at))
    .bind(to_micros(now))
    .bind(name)
    .execute(conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Disables or enables a station. Disabling puts its certificates on hold (on the revocation
/// list); enabling releases them. False when nothing changed.
pub async fn set_disabled(
    conn: &mut Conn,
    name: &str,
    disabled: bool,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let updated = sqlx::query(
        "UPDATE stations SET disabled = $1, updated_at = $2 WHERE name = $3 AND disabled = $4",
    )
    .bind(i64::from(disabled))
    .bind(to_micros(now))
    .bind(name)
    .bind(i64::from(!disabled))
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() != 1 {
        return Ok(false);
    }
    if disabled {
        sqlx::query(
            "UPDATE station_certificates SET held_at = $1 WHERE station = $2 AND held_at IS NULL",
        )
        .bind(to_micros(now))
        .bind(name)
        .execute(conn)
        .await?;
    } else {
        sqlx::query("UPDATE station_certificates SET held_at = NULL WHERE station = $1")
            .bind(name)
            .execute(conn)
            .await?;
    }
    Ok(true)
}

/// Notes that a station called: when, its version and its devices.
pub async fn seen(
    conn: &mut Conn,
    name: &str,
    now: Timestamp,
    version: &str,
    printer_kind: &str,
    encoder_kind: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE stations SET last_seen = $1, version = $2, printer_kind = $3, encoder_kind = $4 \
         WHERE name = $5",
    )
    .bind(to_micros(now))
    .bind(version)
    .bind(printer_kind)
    .bind(encoder_kind)
    .bind(name)
    .execute(conn)
    .await?;
    Ok(())
}

/// Notes that a station called at `now`, when it was last noted before `stale_before`.
pub async fn touch(
    conn: &mut Conn,
    name: &str,
    now: Timestamp,
    stale_before: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE stations SET last_seen = $1 WHERE name = $2 \
         AND (last_seen IS NULL OR last_seen < $3)",
    )
    .bind(to_micros(now))
    .bind(name)
    .bind(to_micros(stale_before))
    .execute(conn)
    .await?;
    Ok(())
}

/// Station certificates for the revocation list: those on hold (a disabled station's) and those
/// retired (replaced by a newer one): serial hex, since when, and whether it is only on hold.
pub async fn listed(conn: &mut Conn) -> Result<Vec<(String, Timestamp, bool)>, StoreError> {
    let rows = sqlx::query(
        "SELECT serial, COALESCE(retired_at, held_at) AS since, \
         CASE WHEN retired_at IS NULL THEN 1 ELSE 0 END AS hold FROM station_certificates \
         WHERE held_at IS NOT NULL OR retired_at IS NOT NULL ORDER BY since, serial",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("serial")?,
                from_micros(row.try_get("since")?)?,
                row.try_get::<i64, _>("hold")? != 0,
            ))
        })
        .collect()
}

/// Replaces the escrow key's sealed private key `old` with `new` (the same key sealed under
/// another master key). False when it was not `old` any more.
pub async fn reseal_escrow(conn: &mut Conn, old: &str, new: &str) -> Result<bool, StoreError> {
    let updated = sqlx::query(
        "UPDATE station_escrow SET private_sealed = $1 WHERE id = 1 AND private_sealed = $2",
    )
    .bind(new)
    .bind(old)
    .execute(conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// The escrow key: its public key (hex SubjectPublicKeyInfo) and its sealed private key.
pub async fn escrow(conn: &mut Conn) -> Result<Option<(String, String)>, StoreError> {
    let row = sqlx::query("SELECT public_key, private_sealed FROM station_escrow WHERE id = 1")
        .fetch_optional(conn)
        .await?;
    row.map(|row| Ok((row.try_get("public_key")?, row.try_get("private_sealed")?)))
        .transpose()
}

/// Stores the escrow key unless one exists (two servers making one at once keep the first).
pub async fn insert_escrow(
    conn: &mut Conn,
    public_key: &str,
    private_sealed: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO station_escrow (id, public_key, private_sealed, created_at) \
         VALUES (1, $1, $2, $3) ON CONFLICT (id) DO NOTHING",
    )
    .bind(public_key)
    .bind(private_sealed)
    .bind(to_micros(now))
    .execute(conn)
    .await?;
    Ok(())
}

/// What the server keeps of a job a station elsewhere holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationJob {
    /// The options the attempt ran with (JSON), for its audit event.
    pub options: String,
    /// Whether the chip is encoded.
    pub encode: bool,
    /// The certificates issued for the chip so far (JSON array).
    pub issued: String,
    /// The job as handed out (JSON, without the earlier PUK).
    pub job: String,
    /// The attempt whose report handed it out (`order/card/attempt`).
    pub after: Option<String>,
}

/// Records a job handed to `station`.
pub async fn insert_job(
    conn: &mut Conn,
    order: BatchOrderId,
    card: CardId,
    attempt: u32,
    station: &str,
    job: &StationJob,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO station_jobs (order_id, card_id, attempt, station, options, encode, issued, \
         job, after) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(order.to_string())
    .bind(card.to_string())
    .bind(i64::from(attempt))
    .bind(station)
    .bind(&job.options)
    .bind(i64::from(job.encode))
    .bind(&job.issued)
    .bind(&job.job)
    .bind(job.after.clone())
    .execute(conn)
    .await?;
    Ok(())
}

/// The job of an attempt, as handed out.
pub async fn job(
    conn: &mut Conn,
    order: BatchOrderId,
    card: CardId,
    attempt: u32,
) -> Result<Option<StationJob>, StoreError> {
    let row = sqlx::query(
        "SELECT options, encode, issued, job, after FROM station_jobs WHERE order_id = $1 \
         AND card_id = $2 AND attempt = $3",
    )
    .bind(order.to_string())
    .bind(card.to_string())
    .bind(i64::from(attempt))
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        Ok(StationJob {
            options: row.try_get("options")?,
            encode: row.try_get::<i64, _>("encode")? != 0,
            issued: row.try_get("issued")?,
            job: row.try_get("job")?,
            after: row.try_get("after")?,
        })
    })
    .transpose()
}

/// The job a report (`after`, `order/card/attempt`) handed to `station`, while the station
/// still holds it in that attempt: its JSON.
pub async fn handed_after(
    conn: &mut Conn,
    station: &str,
    after: &str,
) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT j.job FROM station_jobs j JOIN batch_order_items i ON i.order_id = j.order_id \
         AND i.card_id = j.card_id AND i.attempts = j.attempt AND i.station = j.station \
         WHERE j.after = $1 AND j.station = $2 AND i.status = 'producing'",
    )
    .bind(after)
    .bind(station)
    .fetch_optional(conn)
    .await?)
}

/// Replaces the certificates recorded as issued for an attempt's chip.
pub async fn set_issued(
    conn: &mut Conn,
    order: BatchOrderId,
    card: CardId,
    attempt: u32,
    issued: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE station_jobs SET issued = $1 WHERE order_id = $2 AND card_id = $3 AND attempt = $4",
    )
    .bind(issued)
    .bind(order.to_string())
    .bind(card.to_string())
    .bind(i64::from(attempt))
    .execute(conn)
    .await?;
    Ok(())
}
