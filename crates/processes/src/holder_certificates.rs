//! Holder certificates: at assignment and extension, the keys an encoded card carries are
//! certified again in the holder's name and the certificates written to the chip.
//!
//! The chip is written outside any transaction: the certificates are issued first (the CA signs,
//! nothing is stored), written to the chip, and recorded afterwards with the card's change. A chip
//! that refuses leaves the card as it was; certificates that reached a chip but whose step could
//! not be recorded are recorded revoked, so none is valid without a record.

use cardwright_cardsdk::encoder::{CardCertificate, CardKey};
use cardwright_domain::temp_cards::Card;
use cardwright_domain::Person;
use cardwright_pki::Subject;
use cardwright_storage::certificates::{self, CertificateKind, CertificateRecord};
use cardwright_storage::{Conn, Store};

use crate::pki::{new_serial, pki};
use crate::{Context, ProcessError};

/// Certificates issued for a card's holder, not yet recorded.
pub(crate) struct Issued {
    pub on_card: Vec<CardCertificate>,
    pub records: Vec<CertificateRecord>,
}

/// Issues holder certificates for the keys recorded at the card's production. Writes nothing.
pub(crate) async fn issue(
    ctx: &Context,
    conn: &mut Conn,
    card: &Card,
    holder: &Person,
) -> Result<Issued, ProcessError> {
    let pki = pki(ctx)?.clone();
    if pki.desk_encoder.is_none() {
        return Err(ProcessError::Conflict(format!(
            "card {} carries a chip but no station has a chip encoder to write the holder's certificates",
            card.serial
        )));
    }
    let card_certs: Vec<CertificateRecord> = certificates::of_card(&mut *conn, card.id, true)
        .await?
        .into_iter()
        .filter(|c| c.kind == CertificateKind::Card)
        .collect();
    let subject = Subject {
        common_name: holder.display_name(),
        email: holder.email.as_ref().map(|e| e.as_str().to_owned()),
    };
    let now = ctx.now();
    let mut issued = Issued {
        on_card: Vec::new(),
        records: Vec::new(),
    };
    for cert in &card_certs {
        let stored = |what: &str, e: hex::FromHexError| {
            ProcessError::failed(format!("stored {what} of certificate {}", cert.serial), e)
        };
        let key = CardKey {
            profile: cert.profile.clone(),
            id: hex::decode(&cert.key_id).map_err(|e| stored("key id", e))?,
            spki: hex::decode(&cert.public_key).map_err(|e| stored("public key", e))?,
        };
        let mut random = [0u8; 16];
        ctx.entropy.fill(&mut random);
        let (on_card, record) = pki
            .issue(
                card,
                &key,
                CertificateKind::Holder,
                &subject,
                Some(holder),
                new_serial(random),
                now,
            )
            .map_err(|e| ProcessError::failed("issuing the holder's certificate", e))?;
        issued.on_card.push(on_card);
        issued.records.push(record);
    }
    Ok(issued)
}

/// Writes issued certificates to the card's chip with the desk's encoder. On failure the chip
/// may hold some of them, so they are recorded revoked before the error is returned.
pub(crate) async fn write(ctx: &Context, card: &Card, issued: &Issued) -> Result<(), ProcessError> {
    let encoder = pki(ctx)?.desk_encoder.clone().ok_or_else(|| {
        ProcessError::Conflict(format!(
            "card {} carries a chip but no station has a chip encoder",
            card.serial
        ))
    })?;
    let serial = card.serial.to_string();
    let certs = issued.on_card.clone();
    let written = tokio::task::spawn_blocking(move || encoder.write_certificates(&serial, &certs))
        .await
        .map_err(|e| ProcessError::failed("writing the holder's certificates stopped", e))?;
    if let Err(e) = written {
        record_revoked(ctx, issued).await?;
        return Err(ProcessError::Device {
            message: format!(
                "the holder's certificates could not be written to card {}; the card is unchanged",
                card.serial
            ),
            source: e,
        });
    }
    Ok(())
}

/// Records certificates that may be on a chip but belong to no recorded step, revoked.
pub(crate) async fn record_revoked(ctx: &Context, issued: &Issued) -> Result<(), ProcessError> {
    let now = ctx.now();
    let mut tx = ctx.store.begin().await?;
    for record in &issued.records {
        let mut record = record.clone();
        record.revoked = true;
        record.revoked_at = Some(now);
        certificates::insert(&mut tx, &record).await?;
    }
    Store::commit(tx).await?;
    Ok(())
}
