//! Certificates issued for cards, and the sealed PUK of each encoded card.

use cardwright_domain::{CardId, PersonId, Timestamp};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::sql::opt_from_micros;
use crate::{from_micros, to_micros, Conn, StoreError};

/// Whom a certificate names: the card (at issue) or its holder (at assignment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateKind {
    Card,
    Holder,
}

impl CertificateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateKind::Card => "card",
            CertificateKind::Holder => "holder",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "card" => Ok(Self::Card),
            "holder" => Ok(Self::Holder),
            other => Err(StoreError::Corrupt(format!("certificate kind '{other}'"))),
        }
    }
}

/// A certificate as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRecord {
    /// Hex of the certificate's serial number.
    pub serial: String,
    pub card: CardId,
    pub profile: String,
    pub kind: CertificateKind,
    /// Hex of the key's `CKA_ID` on the card.
    pub key_id: String,
    /// Hex of the DER SubjectPublicKeyInfo.
    pub public_key: String,
    /// The subject's common name.
    pub subject: String,
    pub holder: Option<PersonId>,
    /// Hex of the certificate.
    pub der: String,
    pub revoked: bool,
    pub issued_at: Timestamp,
    pub not_after: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

fn record(row: &AnyRow) -> Result<CertificateRecord, StoreError> {
    let holder: Option<String> = row.try_get("holder_id")?;
    Ok(CertificateRecord {
        serial: row.try_get("serial")?,
        card: CardId::parse(&row.try_get::<String, _>("card_id")?)?,
        profile: row.try_get("profile")?,
        kind: CertificateKind::parse(&row.try_get::<String, _>("kind")?)?,
        key_id: row.try_get("key_id")?,
        public_key: row.try_get("public_key")?,
        subject: row.try_get("subject")?,
        holder: holder.as_deref().map(PersonId::parse).transpose()?,
        der: row.try_get("der")?,
        revoked: row.try_get::<String, _>("status")? == "revoked",
        issued_at: from_micros(row.try_get("issued_at")?)?,
        not_after: from_micros(row.try_get("not_after")?)?,
        revoked_at: opt_from_micros(row.try_get("revoked_at")?)?,
    })
}

const SELECT: &str =
    "SELECT serial, card_id, profile, kind, key_id, public_key, subject, holder_id, der, status, \
    issued_at, not_after, revoked_at FROM certificates";

pub async fn insert(conn: &mut Conn, c: &CertificateRecord) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO certificates (serial, card_id, profile, kind, key_id, public_key, subject, holder_id, der, \
         status, issued_at, not_after, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(c.serial.as_str())
    .bind(c.card.to_string())
    .bind(c.profile.as_str())
    .bind(c.kind.as_str())
    .bind(c.key_id.as_str())
    .bind(c.public_key.as_str())
    .bind(c.subject.as_str())
    .bind(c.holder.map(|h| h.to_string()))
    .bind(c.der.as_str())
    .bind(if c.revoked { "revoked" } else { "valid" })
    .bind(to_micros(c.issued_at))
    .bind(to_micros(c.not_after))
    .bind(c.revoked_at.map(to_micros))
    .execute(conn)
    .await?;
    Ok(())
}

/// A card's certificates, oldest first; only valid ones when `valid_only`.
pub async fn of_card(
    conn: &mut Conn,
    card: CardId,
    valid_only: bool,
) -> Result<Vec<CertificateRecord>, StoreError> {
    let filter = if valid_only {
        " AND status = 'valid'"
    } else {
        ""
    };
    let rows = sqlx::query(&format!(
        "{SELECT} WHERE card_id = $1{filter} ORDER BY issued_at, serial"
    ))
    .bind(card.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter().map(record).collect()
}

/// Revokes a card's valid certificates (of one kind, or all); returns their serials.
pub async fn revoke(
    conn: &mut Conn,
    card: CardId,
    kind: Option<CertificateKind>,
    at: Timestamp,
) -> Result<Vec<String>, StoreError> {
    let valid = of_card(&mut *conn, card, true).await?;
    let serials: Vec<String> = valid
        .into_iter()
        .filter(|c| kind.is_none_or(|k| c.kind == k))
        .map(|c| c.serial)
        .collect();
    for serial in &serials {
        sqlx::query("UPDATE certificates SET status = 'revoked', revoked_at = $1 WHERE serial = $2 AND status = 'valid'")
            .bind(to_micros(at))
            .bind(serial.as_str())
            .execute(&mut *conn)
            .await?;
    }
    Ok(serials)
}

/// Every revoked certificate's serial (hex) and revocation time, for the revocation list.
pub async fn revoked(conn: &mut Conn) -> Result<Vec<(String, Timestamp)>, StoreError> {
    let rows = sqlx::query("SELECT serial, revoked_at FROM certificates WHERE status = 'revoked' ORDER BY revoked_at, serial")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("serial")?,
                from_micros(row.try_get::<Option<i64>, _>("revoked_at")?.unwrap_or(0))?,
            ))
        })
        .collect()
}

/// The revocation list last issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCrl {
    /// 0 before the first list.
    pub number: i64,
    /// Of the revocations it lists, as the caller computes it.
    pub fingerprint: String,
    pub issued_at: Timestamp,
    /// Hex of the list.
    pub der: String,
}

pub async fn issued_crl(conn: &mut Conn) -> Result<IssuedCrl, StoreError> {
    let row =
        sqlx::query("SELECT number, fingerprint, issued_at, der FROM crl_issued WHERE id = 1")
            .fetch_one(conn)
            .await?;
    Ok(IssuedCrl {
        number: row.try_get("number")?,
        fingerprint: row.try_get("fingerprint")?,
        issued_at: from_micros(row.try_get("issued_at")?)?,
        der: row.try_get("der")?,
    })
}

/// Takes the next revocation list number. The row stays locked until the transaction ends, so
/// lists signed at once by several servers get distinct, growing numbers.
pub async fn next_crl_number(conn: &mut Conn) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "UPDATE crl_issued SET number = number + 1 WHERE id = 1 RETURNING number",
    )
    .fetch_one(conn)
    .await?)
}

/// Records the list signed with `crl.number` (taken in the same transaction).
pub async fn record_crl(conn: &mut Conn, crl: &IssuedCrl) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE crl_issued SET fingerprint = $2, issued_at = $3, der = $4 WHERE id = 1 AND number = $1",
    )
    .bind(crl.number)
    .bind(&crl.fingerprint)
    .bind(to_micros(crl.issued_at))
    .bind(&crl.der)
    .execute(conn)
    .await?;
    Ok(())
}

/// The sealed PUK of a card, if it was ever encoded.
pub async fn sealed_puk(conn: &mut Conn, card: CardId) -> Result<Option<String>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT puk_sealed FROM cards WHERE id = $1")
            .bind(card.to_string())
            .fetch_optional(conn)
            .await?
            .flatten(),
    )
}

pub async fn set_sealed_puk(conn: &mut Conn, card: CardId, sealed: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE cards SET puk_sealed = $1 WHERE id = $2")
        .bind(sealed)
        .bind(card.to_string())
        .execute(conn)
        .await?;
    Ok(())
}
