//! Production stations at work on the batch order queue, as a protocol: [`claim`] hands out an
//! [`Attempt`] whose [`Job`] a station turns into an [`Outcome`] (the `cardwright-station` crate,
//! which has no database), and [`finish`] records the outcome. Recording an outcome and claiming
//! the station's next item share one transaction, so a station costs one commit per card; no
//! transaction is open while a card is in the printer, and a crash leaves an item `producing`
//! that recovery marks failed.

use cardwright_domain::temp_cards::{processes, states};
use std::sync::{Arc, Mutex};

use cardwright_cardsdk::encoder::{CardCertificate, CardKey};
use cardwright_domain::batch_order::settle;
use cardwright_domain::temp_cards::{Card, ItemStatus, OrderState, ProcessName};
use cardwright_domain::Timestamp;
use cardwright_pki::Subject;
pub use cardwright_station::{Encoding, Issuer, Job, Outcome, ProductionError, Station};
use cardwright_storage::batch_orders::{self, Claim};
use cardwright_storage::certificates::{self, CertificateKind, CertificateRecord};
use cardwright_storage::{cards, Conn, Store};

use super::issue_multiple::order_event;
use crate::card_process::{load_for_update, save_transition};
use crate::pki::{new_serial, random_digits};
use crate::services::pki::Pki;
use crate::services::scripts::RunOptions;
use crate::{Actor, Context, Entropy, ProcessError};

const PROCESS: ProcessName = processes::ISSUE_MULTIPLE;

/// The failure reason of an item whose station stopped while it was in the printer.
pub const INTERRUPTED: &str = "production interrupted";

/// One claimed item: the job for the station and what the server keeps until the outcome is
/// recorded (the options in force, the sealed PUK, the certificates issued for the chip).
#[derive(Debug)]
pub struct Attempt {
    pub claim: Claim,
    pub job: Job,
    pub(super) run: Option<RunOptions>,
    puk_sealed: Option<String>,
    issuer: Option<Arc<CardIssuer>>,
    /// Why the server could not prepare the job (encoding on without a certificate authority,
    /// an unknown certificate profile): the attempt fails without reaching a station.
    pub(super) unprepared: Option<String>,
}

impl Attempt {
    /// The certificate signer the station calls while the chip's session is open.
    pub fn issuer(&self) -> Arc<dyn Issuer> {
        match &self.issuer {
            Some(issuer) => issuer.clone(),
            None => Arc::new(NoIssuer),
        }
    }
}

/// Signs a card's keys with the built-in CA and keeps the records of what it signed, so the
/// outcome can name certificates by serial.
struct CardIssuer {
    pki: Arc<Pki>,
    card: Card,
    now: Timestamp,
    entropy: Arc<dyn Entropy>,
    issued: Mutex<Vec<CertificateRecord>>,
}

impl std::fmt::Debug for CardIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardIssuer")
            .field("card", &self.card.serial)
            .finish_non_exhaustive()
    }
}

impl Issuer for CardIssuer {
    fn certify(
        &self,
        serial: &str,
        key: &CardKey,
    ) -> Result<(CardCertificate, String), Box<dyn std::error::Error + Send + Sync>> {
        let mut number = [0u8; 16];
        self.entropy.fill(&mut number);
        let subject = Subject {
            common_name: serial.to_owned(),
            email: None,
        };
        let (on_card, record) = self.pki.issue(
            &self.card,
            key,
            CertificateKind::Card,
            &subject,
            None,
            new_serial(number),
            self.now,
        )?;
        let serial = record.serial.clone();
        self.issued
            .lock()
            .map_err(|_| "certificate records lock poisoned")?
            .push(record);
        Ok((on_card, serial))
    }
}

/// The signer of a job without encoding: it is never asked.
struct NoIssuer;

impl Issuer for NoIssuer {
    fn certify(
        &self,
        _serial: &str,
        _key: &CardKey,
    ) -> Result<(CardCertificate, String), Box<dyn std::error::Error + Send + Sync>> {
        Err("this job has no certificate authority".into())
    }
}

/// Takes the next queued item for `station`, if any, with its job.
pub async fn claim(ctx: &Context, station: &str) -> Result<Option<Attempt>, ProcessError> {
    let mut tx = ctx.store.begin().await?;
    let attempt = claim_in(ctx, &mut tx, station, None).await?;
    Store::commit(tx).await?;
    Ok(attempt)
}

/// Claims the next item in the caller's transaction and prepares its job. With `lease_until`
/// the station is elsewhere: the item is leased to it, and the station draws PIN and PUK itself.
pub(super) async fn claim_in(
    ctx: &Context,
    conn: &mut Conn,
    station: &str,
    lease_until: Option<Timestamp>,
) -> Result<Option<Attempt>, ProcessError> {
    let now = ctx.now();
    let Some(claim) = batch_orders::claim_next_leased(
        &mut *conn,
        ctx.store.dialect(),
        station,
        now,
        cardwright_domain::temp_cards::OPTION_SCRIPT,
        lease_until,
    )
    .await?
    else {
        return Ok(None);
    };
    let run = ctx
        .scripts
        .for_run(
            &mut *conn,
            &claim.template,
            PROCESS.as_str(),
            &claim.operator,
        )
        .await?;
    let mut attempt = Attempt {
        job: Job {
            card_id: claim.card.to_string(),
            serial: claim.serial.clone(),
            template: claim.template.clone(),
            order_id: claim.order.to_string(),
            attempt: claim.attempt,
            front_layout: claim.front_layout.clone(),
            back_layout: claim.back_layout.clone(),
            issue_date: now.format("%Y-%m-%d").to_string(),
            encoding: None,
        },
        claim,
        run: None,
        puk_sealed: None,
        issuer: None,
        unprepared: None,
    };
    let remote = lease_until.is_some();
    if run.options.encode {
        if let Err(reason) = prepare_encoding(ctx, conn, &mut attempt, &run, now, remote).await? {
            attempt.unprepared = Some(reason);
        }
    }
    attempt.run = Some(run);
    Ok(Some(attempt))
}

/// Fills in what the chip gets: new PIN and PUK, the earlier PUK for a chip initialised before,
/// the keys of the options' certificate profiles, and the signer. `Ok(Err(reason))` when the
/// job cannot be made. A station elsewhere (`remote`) draws PIN and PUK itself: they stay empty.
async fn prepare_encoding(
    ctx: &Context,
    conn: &mut Conn,
    attempt: &mut Attempt,
    run: &RunOptions,
    now: Timestamp,
    remote: bool,
) -> Result<Result<(), String>, ProcessError> {
    let Some(pki) = ctx.pki.clone() else {
        return Ok(Err(
            "encoding is on, but no certificate authority is configured".into(),
        ));
    };
    let keys = match pki.key_specs(&run.options.certificates) {
        Ok(keys) => keys,
        Err(e) => return Ok(Err(crate::report(&e))),
    };
    let card = cards::get(&mut *conn, attempt.claim.card)
        .await?
        .ok_or_else(|| ProcessError::Internal(format!("card {} vanished", attempt.claim.serial)))?
        .card;
    let old_puk = match certificates::sealed_puk(&mut *conn, card.id).await? {
        Some(sealed) => pki.open_puk(&mut *conn, &sealed).await?,
        None => None,
    };
    let (pin, puk) = if remote {
        (String::new(), String::new())
    } else {
        let pin = random_digits(ctx, run.options.pin_length);
        let puk = random_digits(ctx, run.options.puk_length);
        let mut nonce = [0u8; 12];
        ctx.entropy.fill(&mut nonce);
        attempt.puk_sealed = Some(pki.seal_puk(&mut *conn, nonce, &puk).await?);
        (pin, puk)
    };
    attempt.job.encoding = Some(Encoding {
        pin,
        puk,
        old_puk,
        keys,
    });
    attempt.issuer = Some(Arc::new(CardIssuer {
        pki,
        card,
        now,
        entropy: ctx.entropy.clone(),
        issued: Mutex::new(Vec::new()),
    }));
    Ok(Ok(()))
}

/// Records how an attempt ended: the item, the card's state, its certificates and the audit
/// event, and the order becomes produced when nothing is left to do. A claim that is no longer
/// current (recovered as interrupted meanwhile) changes nothing, so no card is ever counted
/// produced twice. With `next`, the same transaction claims that station's next item.
pub async fn finish(
    ctx: &Context,
    attempt: &Attempt,
    outcome: &Outcome,
    next: Option<&str>,
) -> Result<(bool, Option<Attempt>), ProcessError> {
    let issued: Vec<CertificateRecord> = attempt
        .issuer
        .as_ref()
        .and_then(|i| i.issued.lock().ok().map(|records| records.clone()))
        .unwrap_or_default();
    let (status, reason, on_chip): (ItemStatus, Option<String>, &[String]) = match outcome {
        Outcome::Produced { certificates } => (ItemStatus::Produced, None, certificates),
        Outcome::Failed {
            error,
            certificates,
        } => (
            ItemStatus::Failed,
            Some(cardwright_station::reason(error)),
            certificates,
        ),
        Outcome::Interrupted => (ItemStatus::Failed, Some(INTERRUPTED.to_owned()), &[]),
    };
    let certificates: Vec<CertificateRecord> = issued
        .into_iter()
        .filter(|r| on_chip.contains(&r.serial))
        .collect();
    let mut tx = ctx.store.begin().await?;
    let recorded = record(
        ctx,
        &mut tx,
        &attempt.claim,
        Recorded {
            status,
            error: reason.as_deref(),
            certificates: &certificates,
            puk_sealed: if status == ItemStatus::Produced {
                attempt.puk_sealed.as_deref()
            } else {
                None
            },
            options: attempt.run.as_ref().map(RunOptions::to_json),
            encoding: attempt.job.encoding.is_some(),
        },
        next.map(|station| (station, None)),
    )
    .await?;
    Store::commit(tx).await?;
    if recorded.recheck {
        settle_when_done(ctx, attempt.claim.order).await?;
    }
    Ok((recorded.current, recorded.next))
}

/// What an outcome writes.
pub(super) struct Recorded<'a> {
    pub status: ItemStatus,
    pub error: Option<&'a str>,
    pub certificates: &'a [CertificateRecord],
    pub puk_sealed: Option<&'a str>,
    /// The options the attempt ran with, for its audit event.
    pub options: Option<serde_json::Value>,
    pub encoding: bool,
}

/// What recording an outcome gave.
pub(super) struct RecordResult {
    /// The claim was current and the outcome counted.
    pub current: bool,
    /// The station's next item, when it asked for one.
    pub next: Option<Attempt>,
    /// The order's last items were in other printers at the same time: whether it is done is
    /// known only once they are recorded too.
    pub recheck: bool,
}

/// The outcome's writes and the next claim, in the caller's transaction.
///
/// Stations hold the order's shared lock, so two stations record cards of one order at once.
/// The one that sees nothing left queued or producing marks the order produced; when the last
/// items of an order finish in two printers at the same moment, neither sees the other's
/// outcome, so each checks again after its commit ([`settle_when_done`]). The order's state
/// changes before the card's, and the audit head is locked last, held only for the events.
pub(super) async fn record(
    ctx: &Context,
    tx: &mut Conn,
    claim: &Claim,
    outcome: Recorded<'_>,
    next: Option<(&str, Option<Timestamp>)>,
) -> Result<RecordResult, ProcessError> {
    let now = ctx.now();
    let Recorded {
        status,
        error,
        certificates: issued,
        puk_sealed,
        options,
        encoding,
    } = outcome;
    // Lock order: the batch order, then the items, then the card, then the audit head.
    let (order, queued, producing) =
        batch_orders::lock_shared(&mut *tx, ctx.store.dialect(), claim.order)
            .await?
            .ok_or_else(|| {
                ProcessError::Internal(format!("batch order {} vanished", claim.order))
            })?;
    let current = batch_orders::finish(&mut *tx, claim, status, error, now).await?;
    let next = match next {
        Some((station, lease_until)) => claim_in(ctx, tx, station, lease_until).await?,
        None => None,
    };
    if !current {
        return Ok(RecordResult {
            current: false,
            next,
            recheck: false,
        });
    }
    // Counted before this item was finished, which was one of those producing.
    let producing = producing.saturating_sub(1);
    let settled = settle(order.state, queued + producing);
    let settled = settled != order.state
        && batch_orders::set_state(&mut *tx, claim.order, order.state, settled, now).await?;
    let before = load_for_update(&mut *tx, ctx, claim.card).await?;
    let actor = Actor::System("production");
    let serials = record_certificates(tx, claim, status, issued, puk_sealed, now).await?;
    if PROCESS.def().from.contains(&before.state) {
        let after = Card {
            encoded: before.encoded || (encoding && status == ItemStatus::Produced),
            state: if status == ItemStatus::Produced {
                PROCESS.transition(before.state)?
            } else {
                states::FAILED
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
            &mut *tx,
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
                "certificates": serials,
                "options": options,
            }),
        )
        .await?;
    } else {
        // Orders keep their cards from other processes, so this means the data was changed
        // behind Cardwright's back: the item ends failed and the card is left as it is.
        tracing::error!(card = %before.serial, state = %before.state, "card in production is not requested or failed");
        batch_orders::finish_anyway(
            &mut *tx,
            claim,
            &format!("card is {}; not produced", before.state),
        )
        .await?;
    }
    if settled {
        produced_event(ctx, tx, claim.order).await?;
    }
    Ok(RecordResult {
        current: true,
        next,
        recheck: !settled && queued == 0 && producing > 0 && order.state == OrderState::Producing,
    })
}

/// The certificates an attempt put on the chip (revoked when the card failed) and, for a produced
/// card, its sealed PUK. Returns the certificates' serials.
async fn record_certificates(
    tx: &mut Conn,
    claim: &Claim,
    status: ItemStatus,
    issued: &[CertificateRecord],
    puk_sealed: Option<&str>,
    now: Timestamp,
) -> Result<Vec<String>, ProcessError> {
    let mut serials = Vec::new();
    // Certificates of an attempt that failed after encoding are on the chip: recorded revoked.
    for record in issued {
        let mut record = record.clone();
        if status != ItemStatus::Produced {
            record.revoked = true;
            record.revoked_at = Some(now);
        }
        certificates::insert(&mut *tx, &record).await?;
        serials.push(record.serial);
    }
    if let Some(sealed) = puk_sealed {
        certificates::set_sealed_puk(&mut *tx, claim.card, sealed).await?;
    }
    Ok(serials)
}

/// The audit event of an order whose cards are all done.
async fn produced_event(
    ctx: &Context,
    tx: &mut Conn,
    order: cardwright_domain::BatchOrderId,
) -> Result<(), ProcessError> {
    let counts = batch_orders::get(&mut *tx, order)
        .await?
        .map(|r| r.counts)
        .unwrap_or_default();
    order_event(
        tx,
        ctx,
        &Actor::System("production"),
        order,
        Some(OrderState::Producing),
        OrderState::Produced,
        serde_json::json!({ "action": "produced", "produced": counts.produced, "failed": counts.failed }),
    )
    .await
}

/// Marks the order produced if none of its items is queued or in a printer any more, under the
/// order's own lock (so it waits for stations still recording cards of it).
pub(super) async fn settle_when_done(
    ctx: &Context,
    order: cardwright_domain::BatchOrderId,
) -> Result<(), ProcessError> {
    let now = ctx.now();
    let mut tx = ctx.store.begin().await?;
    let Some(locked) = batch_orders::lock(&mut tx, ctx.store.dialect(), order).await? else {
        return Ok(());
    };
    let (queued, producing) = batch_orders::in_progress(&mut tx, order).await?;
    let settled = settle(locked.state, queued + producing);
    if settled != locked.state
        && batch_orders::set_state(&mut tx, order, locked.state, settled, now).await?
    {
        produced_event(ctx, &mut tx, order).await?;
    }
    Store::commit(tx).await?;
    Ok(())
}

/// Hands an attempt to the station and returns its outcome (a job the server could not prepare
/// fails without reaching the devices).
pub async fn run_job(station: &Station, attempt: &Attempt) -> Outcome {
    if let Some(reason) = &attempt.unprepared {
        return Outcome::Failed {
            error: ProductionError::Unprepared(reason.clone()),
            certificates: Vec::new(),
        };
    }
    let outcome = station.produce(&attempt.job, attempt.issuer()).await;
    if let Outcome::Failed { error, .. } = &outcome {
        let reason = cardwright_station::reason(error);
        tracing::warn!(station = %station.name, serial = %attempt.job.serial, %reason, "production failed");
    }
    outcome
}

/// Claims, produces and records one card. Returns false when the queue was empty.
pub async fn produce_one(ctx: &Context, station: &Station) -> Result<bool, ProcessError> {
    let Some(attempt) = claim(ctx, &station.name).await? else {
        return Ok(false);
    };
    let outcome = run_job(station, &attempt).await;
    finish(ctx, &attempt, &outcome, None).await?;
    Ok(true)
}

/// Produces cards while the queue has work: each outcome is recorded in the transaction that
/// claims the next item. Returns how many cards were worked on; `stop` is asked before each
/// claim, so a card in hand is always finished and recorded.
pub async fn produce_while_queued(
    ctx: &Context,
    station: &Station,
    stop: impl Fn() -> bool,
) -> Result<u64, ProcessError> {
    let mut worked = 0;
    let mut next = claim(ctx, &station.name).await?;
    while let Some(attempt) = next {
        let outcome = run_job(station, &attempt).await;
        worked += 1;
        let again = (!stop()).then_some(station.name.as_str());
        next = finish(ctx, &attempt, &outcome, again).await?.1;
    }
    Ok(worked)
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
    for claim in found {
        let mut tx = ctx.store.begin().await?;
        let recorded = record(
            ctx,
            &mut tx,
            &claim,
            Recorded {
                status: ItemStatus::Failed,
                error: Some(INTERRUPTED),
                certificates: &[],
                puk_sealed: None,
                options: None,
                encoding: false,
            },
            None,
        )
        .await?;
        Store::commit(tx).await?;
        if recorded.recheck {
            settle_when_done(ctx, claim.order).await?;
        }
        if recorded.current {
            recovered += 1;
        }
    }
    Ok(recovered)
}
