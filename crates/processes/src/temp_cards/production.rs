//! Production stations at work on the batch order queue: claim an item, print it, record the
//! outcome. Each step is its own transaction, so no transaction is open while a card is in the
//! printer, and a crash leaves an item `producing` that recovery marks failed.

use std::sync::Arc;

use cardwright_cardsdk::encoder::{EncodeError, Pkcs11Encoder};
use cardwright_cardsdk::layout::pin_letter_pdf;
use cardwright_cardsdk::{layout, CardArtwork, CardFace, PrintJob, Printer};
use cardwright_domain::temp_cards::batch_order::settle;
use cardwright_domain::temp_cards::{Card, CardState, ItemStatus, OrderState, ProcessName};
use cardwright_pki::Subject;
use cardwright_scripts::ScriptOptions;
use cardwright_storage::batch_orders::{self, Claim};
use cardwright_storage::cards;
use cardwright_storage::certificates::{self, CertificateKind, CertificateRecord};
use cardwright_storage::Store;

use super::issue_multiple::order_event;
use super::{load_for_update, save_transition};
use crate::pki::{new_serial, random_digits};
use crate::services::scripts::RunOptions;
use crate::{Actor, Context, ProcessError};

const PROCESS: ProcessName = ProcessName::TempCardsBoProcIssueMultiple;

/// The failure reason of an item whose station stopped while it was in the printer.
pub const INTERRUPTED: &str = "production interrupted";

/// A printer and, optionally, a chip encoder that produce one card at a time.
#[derive(Debug, Clone)]
pub struct Station {
    pub name: String,
    pub printer: Arc<dyn Printer>,
    pub encoder: Option<Arc<Pkcs11Encoder>>,
}

/// Takes the next queued item for `station`, if any.
pub async fn claim(ctx: &Context, station: &str) -> Result<Option<Claim>, ProcessError> {
    let mut tx = ctx.store.begin().await?;
    let claim = batch_orders::claim_next(&mut tx, ctx.store.dialect(), station, ctx.now()).await?;
    Store::commit(tx).await?;
    Ok(claim)
}

/// Records how an attempt ended: the item, the card's state and the audit event, and the order
/// becomes produced when nothing is left to do. A claim that is no longer current (recovered as
/// interrupted meanwhile) changes nothing, so no card is ever counted produced twice.
pub async fn finish(
    ctx: &Context,
    claim: &Claim,
    outcome: Result<(), String>,
    encoded: Option<&Encoded>,
    options: Option<&RunOptions>,
) -> Result<bool, ProcessError> {
    let now = ctx.now();
    let mut tx = ctx.store.begin().await?;
    let order = batch_orders::lock(&mut tx, ctx.store.dialect(), claim.order)
        .await?
        .ok_or_else(|| ProcessError::Internal(format!("batch order {} vanished", claim.order)))?;
    let (status, error) = match &outcome {
        Ok(()) => (ItemStatus::Produced, None),
        Err(reason) => (ItemStatus::Failed, Some(reason.as_str())),
    };
    if !batch_orders::finish(&mut tx, claim, status, error, now).await? {
        return Ok(false);
    }
    let before = load_for_update(&mut tx, ctx, claim.card).await?;
    let actor = Actor::System("production");
    let mut issued = Vec::new();
    if let Some(encoded) = encoded {
        // Certificates of an attempt that failed after encoding are recorded as revoked.
        for record in &encoded.certificates {
            let mut record = record.clone();
            if status != ItemStatus::Produced {
                record.revoked = true;
                record.revoked_at = Some(now);
            }
            certificates::insert(&mut tx, &record).await?;
            issued.push(record.serial);
        }
        if status == ItemStatus::Produced {
            certificates::set_sealed_puk(&mut tx, claim.card, &encoded.puk_sealed).await?;
        }
    }
    if PROCESS.def().from.contains(&before.state) {
        let after = Card {
            encoded: before.encoded || (encoded.is_some() && status == ItemStatus::Produced),
            state: if status == ItemStatus::Produced {
                PROCESS.transition(before.state)?
            } else {
                CardState::Failed
            },
            // A card whose order was cancelled while it was in the printer leaves the order now.
            batch_order: if order.state.is_closed() {
                None
            } else {
                before.batch_order
            },
            updated_at: now,
            ..before.clone()
        };
        save_transition(
            &mut tx,
            ctx,
            &actor,
            PROCESS,
            &before,
            &after,
            serde_json::json!({
                "action": "produce",
                "station": claim.station,
                "attempt": claim.attempt,
                "outcome": status.as_str(),
                "error": error,
                "certificates": issued,
                "options": options.map(RunOptions::to_json),
            }),
        )
        .await?;
    } else {
        // Orders keep their cards from other processes, so this means the data was changed
        // behind Cardwright's back: the item ends failed and the card is left as it is.
        tracing::error!(card = %before.serial, state = %before.state, "card in production is not requested or failed");
        batch_orders::finish_anyway(
            &mut tx,
            claim,
            &format!("card is {}; not produced", before.state),
        )
        .await?;
    }
    let unfinished = batch_orders::unfinished(&mut tx, claim.order).await?;
    let settled = settle(order.state, unfinished);
    if settled != order.state
        && batch_orders::set_state(&mut tx, claim.order, order.state, settled, now).await?
    {
        let counts = batch_orders::get(&mut tx, claim.order)
            .await?
            .map(|r| r.counts)
            .unwrap_or_default();
        order_event(
            &mut tx,
            ctx,
            &actor,
            claim.order,
            Some(OrderState::Producing),
            settled,
            serde_json::json!({ "action": "produced", "produced": counts.produced, "failed": counts.failed }),
        )
        .await?;
    }
    Store::commit(tx).await?;
    Ok(true)
}

/// What encoding a card gave: its PIN letter, its sealed PUK and its certificates.
pub struct Encoded {
    /// The PIN letter (PDF); the PIN exists nowhere else.
    pub pin_letter: Vec<u8>,
    pub puk_sealed: String,
    pub certificates: Vec<CertificateRecord>,
}

/// Why encoding failed, with the certificates issued before it did (they are on the chip and
/// are recorded revoked).
struct EncodeFailure {
    reason: String,
    certificates: Vec<CertificateRecord>,
}

impl From<String> for EncodeFailure {
    fn from(reason: String) -> Self {
        Self {
            reason,
            certificates: Vec::new(),
        }
    }
}

impl From<&str> for EncodeFailure {
    fn from(reason: &str) -> Self {
        reason.to_owned().into()
    }
}

/// Initialises the card's chip: PUK and PIN from the options' lengths, one key and one
/// certificate naming the card per selected profile.
async fn encode(
    ctx: &Context,
    station: &Station,
    claim: &Claim,
    options: &ScriptOptions,
) -> Result<Encoded, EncodeFailure> {
    let pki = ctx
        .pki
        .clone()
        .ok_or("encoding is on, but no certificate authority is configured")?;
    let encoder = station.encoder.clone().ok_or_else(|| {
        format!(
            "encoding is on, but station {} has no chip encoder",
            station.name
        )
    })?;
    let specs = pki
        .key_specs(&options.certificates)
        .map_err(|e| crate::report(&e))?;
    let (card, sealed) = {
        let mut conn = ctx.store.reader().await.map_err(|e| e.to_string())?;
        let card = cards::get(&mut conn, claim.card)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the card vanished")?
            .card;
        (
            card,
            certificates::sealed_puk(&mut conn, claim.card)
                .await
                .map_err(|e| e.to_string())?,
        )
    };
    let old_puk = sealed.as_deref().and_then(|s| pki.open_puk(s));
    let pin = random_digits(ctx, options.pin_length);
    let puk = random_digits(ctx, options.puk_length);
    let mut nonce = [0u8; 12];
    ctx.entropy.fill(&mut nonce);
    let serials: Vec<[u8; 16]> = specs.iter().map(|_| new_serial(ctx)).collect();
    let now = ctx.now();
    let issue_date = now.format("%Y-%m-%d").to_string();
    let puk_sealed = pki.seal_puk(nonce, &puk);
    let serial = claim.serial.clone();
    let certificates = tokio::task::spawn_blocking(move || {
        let mut records = Vec::new();
        let mut serials = serials.into_iter();
        let subject = Subject {
            common_name: serial.clone(),
            email: None,
        };
        let result = encoder.encode(
            &serial,
            &puk,
            &pin,
            old_puk.as_deref(),
            &specs,
            &mut |key| {
                let (on_card, record) = pki
                    .issue(
                        &card,
                        key,
                        CertificateKind::Card,
                        &subject,
                        None,
                        serials.next().unwrap_or([1; 16]),
                        now,
                    )
                    .map_err(|e| EncodeError::Certificate(crate::report(&e)))?;
                records.push(record);
                Ok(on_card)
            },
        );
        let letter = result.map_err(|e| e.to_string()).and_then(|_| {
            pin_letter_pdf(&serial, &pin, &issue_date).map_err(|e| format!("PIN letter: {e}"))
        });
        (letter, records)
    })
    .await
    .map_err(|e| format!("encoding stopped: {e}"))?;
    match certificates {
        (Ok(pin_letter), certificates) => Ok(Encoded {
            pin_letter,
            puk_sealed,
            certificates,
        }),
        (Err(reason), certificates) => Err(EncodeFailure {
            reason,
            certificates,
        }),
    }
}

/// Claims, encodes (when the options say so), prints and records one card. Returns false when
/// the queue was empty.
pub async fn produce_one(ctx: &Context, station: &Station) -> Result<bool, ProcessError> {
    let Some(claim) = claim(ctx, &station.name).await? else {
        return Ok(false);
    };
    let run = {
        let mut conn = ctx.store.reader().await?;
        ctx.scripts
            .for_run(
                &mut conn,
                &claim.template,
                PROCESS.as_str(),
                &claim.operator,
            )
            .await?
    };
    let encoded = if run.options.encode {
        match encode(ctx, station, &claim, &run.options).await {
            Ok(encoded) => Some(encoded),
            Err(EncodeFailure {
                reason,
                certificates,
            }) => {
                tracing::warn!(station = %station.name, serial = %claim.serial, %reason, "encoding failed");
                // Certificates already on the chip are recorded, revoked, with the failure.
                let partial = Encoded {
                    pin_letter: Vec::new(),
                    puk_sealed: String::new(),
                    certificates,
                };
                finish(ctx, &claim, Err(reason), Some(&partial), Some(&run)).await?;
                return Ok(true);
            }
        }
    } else {
        None
    };
    let face = CardFace {
        serial: claim.serial.clone(),
        template: claim.template.clone(),
        issue_date: ctx.now().format("%Y-%m-%d").to_string(),
        ..CardFace::default()
    };
    let artwork = CardArtwork::new(
        claim
            .front_layout
            .as_deref()
            .unwrap_or(layout::TEMPORARY_FRONT),
        claim
            .back_layout
            .as_deref()
            .unwrap_or(layout::TEMPORARY_BACK),
        face,
    );
    let job = PrintJob {
        card_id: claim.card.to_string(),
        serial: claim.serial.clone(),
        template: claim.template.clone(),
        order_id: claim.order.to_string(),
        attempt: claim.attempt,
        station: station.name.clone(),
        artwork,
        pin_letter: encoded.as_ref().map(|e| e.pin_letter.clone()),
    };
    let outcome = station.printer.print(&job).await.map_err(|e| e.to_string());
    if let Err(reason) = &outcome {
        tracing::warn!(station = %station.name, serial = %claim.serial, %reason, "production failed");
    }
    finish(ctx, &claim, outcome, encoded.as_ref(), Some(&run)).await?;
    Ok(true)
}

/// Marks items left in a printer as failed ("production interrupted"): those of this station
/// (after a restart) and those of any station that has held one longer than `stale_after`.
pub async fn recover(
    ctx: &Context,
    station: &str,
    stale_after: chrono::Duration,
) -> Result<u64, ProcessError> {
    let found = {
        let mut conn = ctx.store.reader().await?;
        batch_orders::interrupted(&mut conn, station, ctx.now() - stale_after).await?
    };
    let mut recovered = 0;
    for claim in &found {
        if finish(ctx, claim, Err(INTERRUPTED.to_owned()), None, None).await? {
            recovered += 1;
        }
    }
    Ok(recovered)
}
