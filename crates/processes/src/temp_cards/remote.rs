//! Production at stations elsewhere (agents at operators' desks), over the same queue as the
//! server's own stations. An item is leased to the station that claims it; heartbeats move the
//! lease, and an item whose lease runs out fails as "production interrupted", ready for Repeat
//! production. The station draws PIN and PUK itself: the PIN never reaches the server, the PUK
//! only sealed to the escrow key, which the server opens to seal it under the master key as it
//! seals every PUK. What the server must know to record the outcome (the options, the
//! certificates it issued for the chip) is kept in the database, so a server restarted while a
//! station holds a card records its outcome all the same. Outcomes count once per attempt: a
//! report repeated after a network cut is answered as recorded, and a report for a lease that
//! ended changes nothing.

use cardwright_cardsdk::encoder::{CardCertificate, CardKey, KeyKind, KeySpec};
use cardwright_domain::temp_cards::ItemStatus;
use cardwright_domain::{BatchOrderId, CardId, Timestamp};
use cardwright_pki::escrow::EscrowKey;
use cardwright_pki::Subject;
use cardwright_storage::batch_orders::{self, Claim};
use cardwright_storage::certificates::{self, CertificateKind, CertificateRecord};
use cardwright_storage::stations::{self, StationJob};
use cardwright_storage::{cards, from_micros, to_micros, Conn, Store};

use super::production::{claim_in, record, settle_when_done, Recorded, INTERRUPTED};
use crate::pki::{new_serial, pki};
use crate::services::scripts::RunOptions;
use crate::{Context, ProcessError};

/// One card for a station elsewhere.
#[derive(Debug, Clone)]
pub struct RemoteJob {
    pub order: BatchOrderId,
    pub card: CardId,
    pub attempt: u32,
    pub serial: String,
    pub template: String,
    pub front_layout: Option<String>,
    pub back_layout: Option<String>,
    /// The date printed on the card, `YYYY-MM-DD`.
    pub issue_date: String,
    pub encoding: Option<RemoteEncoding>,
    /// Until when the item is the station's without a heartbeat.
    pub lease_until: Timestamp,
}

/// What a station elsewhere needs to encode a chip. PIN and PUK it draws itself.
#[derive(Clone)]
pub struct RemoteEncoding {
    pub pin_length: u32,
    pub puk_length: u32,
    /// The PUK of an earlier attempt, for a chip that was initialised already.
    pub old_puk: Option<String>,
    pub keys: Vec<KeySpec>,
    /// The escrow key (SEC1) the station seals the new PUK to.
    pub escrow_key: Vec<u8>,
}

impl std::fmt::Debug for RemoteEncoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteEncoding")
            .field("pin_length", &self.pin_length)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// The installation's escrow key as stored (public key in hex, private key sealed under the
/// master key), made at its first use.
async fn escrow_row(ctx: &Context, conn: &mut Conn) -> Result<(String, String), ProcessError> {
    if let Some(row) = stations::escrow(&mut *conn).await? {
        return Ok(row);
    }
    let entropy = ctx.entropy.clone();
    let key = EscrowKey::generate(&mut |bytes| entropy.fill(bytes));
    let mut nonce = [0u8; 12];
    ctx.entropy.fill(&mut nonce);
    let sealed = pki(ctx)?
        .seal_puk(&mut *conn, nonce, &hex::encode(key.secret_bytes()))
        .await?;
    stations::insert_escrow(&mut *conn, &hex::encode(key.public()), &sealed, ctx.now()).await?;
    // Two servers making one at once keep the first: read back what was kept.
    stations::escrow(&mut *conn)
        .await?
        .ok_or_else(|| ProcessError::Internal("the escrow key vanished".into()))
}

/// The escrow key's public half, as a job hands it to a station: read, not opened.
async fn escrow_public(ctx: &Context, conn: &mut Conn) -> Result<Vec<u8>, ProcessError> {
    let (public, _) = escrow_row(ctx, conn).await?;
    hex::decode(public)
        .map_err(|e| ProcessError::Internal(format!("the escrow public key is not hex: {e}")))
}

/// The escrow key, opened, to open the PUKs sealed to it.
async fn escrow_key(ctx: &Context, conn: &mut Conn) -> Result<EscrowKey, ProcessError> {
    let (_, sealed) = escrow_row(ctx, &mut *conn).await?;
    let secret = pki(ctx)?
        .open_puk(&mut *conn, &sealed)
        .await?
        .ok_or_else(|| ProcessError::Internal("the escrow key does not open".into()))?;
    let secret = hex::decode(secret)
        .map_err(|e| ProcessError::Internal(format!("the escrow key is not hex: {e}")))?;
    EscrowKey::from_bytes(&secret).map_err(|e| ProcessError::failed("the escrow key", e))
}

impl RemoteJob {
    /// The job as the station reads it.
    pub fn to_json(&self, lease_secs: i64) -> serde_json::Value {
        let kind = |k: KeyKind| match k {
            KeyKind::EcP256 => "ec-p256",
            KeyKind::Rsa2048 => "rsa-2048",
        };
        serde_json::json!({
            "order": self.order.to_string(),
            "card": self.card.to_string(),
            "attempt": self.attempt,
            "serial": self.serial,
            "template": self.template,
            "front_layout": self.front_layout,
            "back_layout": self.back_layout,
            "issue_date": self.issue_date,
            "lease_until": self.lease_until,
            "lease_secs": lease_secs,
            "encoding": self.encoding.as_ref().map(|e| serde_json::json!({
                "pin_length": e.pin_length,
                "puk_length": e.puk_length,
                "old_puk": e.old_puk,
                "keys": e.keys.iter().map(|k| serde_json::json!({"profile": k.profile, "kind": kind(k.kind)})).collect::<Vec<_>>(),
                "escrow_key": hex::encode(&e.escrow_key),
            })),
        })
    }
}

/// What handing out a claimed item gave.
struct Dispatched {
    /// The job, unless the server could not prepare it (then it failed at once).
    job: Option<RemoteJob>,
    /// The order whose last items were in other hands at the same time (see `record`).
    recheck: Option<BatchOrderId>,
}

/// Hands a claimed attempt to `station` in the caller's transaction: its job is kept in
/// `station_jobs` (with `after`, the report that handed it out). An attempt the server could not
/// prepare fails at once.
async fn dispatch(
    ctx: &Context,
    tx: &mut Conn,
    attempt: &super::production::Attempt,
    station: &str,
    lease_until: Timestamp,
    after: Option<AttemptRef>,
) -> Result<Dispatched, ProcessError> {
    let options = attempt.run.as_ref().map(RunOptions::to_json);
    let claim = &attempt.claim;
    if let Some(reason) = attempt.unprepared.as_deref() {
        let recorded = record(
            ctx,
            tx,
            claim,
            Recorded {
                status: ItemStatus::Failed,
                error: Some(reason),
                certificates: &[],
                puk_sealed: None,
                options,
                encoding: false,
            },
            None,
        )
        .await?;
        return Ok(Dispatched {
            job: None,
            recheck: recorded.recheck.then_some(claim.order),
        });
    }
    let encoding = match (&attempt.job.encoding, &attempt.run) {
        (Some(encoding), Some(run)) => Some(RemoteEncoding {
            pin_length: run.options.pin_length,
            puk_length: run.options.puk_length,
            old_puk: encoding.old_puk.clone(),
            keys: encoding.keys.clone(),
            escrow_key: escrow_public(ctx, &mut *tx).await?,
        }),
        _ => None,
    };
    let job = &attempt.job;
    let job = RemoteJob {
        order: claim.order,
        card: claim.card,
        attempt: claim.attempt,
        serial: job.serial.clone(),
        template: job.template.clone(),
        front_layout: job.front_layout.clone(),
        back_layout: job.back_layout.clone(),
        issue_date: job.issue_date.clone(),
        encoding,
        lease_until,
    };
    let mut kept = job.to_json(ctx.stations.lease.num_seconds());
    if let Some(encoding) = kept.get_mut("encoding").filter(|e| !e.is_null()) {
        // The earlier PUK is read again from the card when the job is handed out again.
        encoding["old_puk"] = serde_json::Value::Null;
    }
    stations::insert_job(
        &mut *tx,
        claim.order,
        claim.card,
        claim.attempt,
        station,
        &StationJob {
            options: options.unwrap_or_default().to_string(),
            encode: attempt.job.encoding.is_some(),
            issued: "[]".into(),
            job: kept.to_string(),
            after: after.map(AttemptRef::key),
        },
    )
    .await?;
    Ok(Dispatched {
        job: Some(job),
        recheck: None,
    })
}

/// Takes the next queued item for `station`, leased to it. Items the server cannot prepare
/// (encoding on without a CA, an unknown profile) fail at once and the next is taken.
pub async fn claim(
    ctx: &Context,
    caller: impl Into<Caller<'_>>,
) -> Result<Option<RemoteJob>, ProcessError> {
    let caller = caller.into();
    let station = caller.station;
    for _ in 0..32 {
        let lease_until = ctx.now() + ctx.stations.lease;
        let mut tx = ctx.store.begin().await?;
        check(ctx, &mut tx, caller).await?;
        let Some(attempt) = claim_in(ctx, &mut tx, station, Some(lease_until)).await? else {
            Store::commit(tx).await?;
            return Ok(None);
        };
        let dispatched = dispatch(ctx, &mut tx, &attempt, station, lease_until, None).await?;
        Store::commit(tx).await?;
        if let Some(order) = dispatched.recheck {
            settle_when_done(ctx, order).await?;
        }
        if dispatched.job.is_some() {
            return Ok(dispatched.job);
        }
    }
    Ok(None)
}

/// Who calls: a station, and the serial (hex) of the client certificate it called with.
/// `certificate` is `None` only for the server's own callers (benchmarks, tests), which are not
/// checked against a certificate.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub station: &'a str,
    pub certificate: Option<&'a str>,
}

impl<'a> From<&'a str> for Caller<'a> {
    fn from(station: &'a str) -> Self {
        Self {
            station,
            certificate: None,
        }
    }
}

/// Refuses, in the caller's transaction, a station that is disabled, not registered, or calling
/// with a certificate that is no longer its own.
async fn check(ctx: &Context, tx: &mut Conn, caller: Caller<'_>) -> Result<(), ProcessError> {
    let station = caller.station;
    match stations::standing(tx, ctx.store.dialect(), station).await? {
        None => Err(ProcessError::Forbidden(format!(
            "station '{station}' is not registered"
        ))),
        Some((true, _)) => Err(ProcessError::Forbidden(format!(
            "station '{station}' is disabled"
        ))),
        Some((false, current)) => match caller.certificate {
            Some(serial) if current.as_deref() != Some(serial) => Err(ProcessError::Forbidden(
                format!("the client certificate is no longer station '{station}''s"),
            )),
            _ => Ok(()),
        },
    }
}

/// Which attempt a station speaks of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptRef {
    pub order: BatchOrderId,
    pub card: CardId,
    pub attempt: u32,
}

impl AttemptRef {
    /// `order/card/attempt`, as `station_jobs.after` names it.
    fn key(self) -> String {
        format!("{}/{}/{}", self.order, self.card, self.attempt)
    }
}

async fn held(
    conn: &mut Conn,
    station: &str,
    at: AttemptRef,
) -> Result<Option<Claim>, ProcessError> {
    Ok(batch_orders::held_claim(conn, at.order, at.card, at.attempt, station).await?)
}

fn lost(station: &str, at: AttemptRef) -> ProcessError {
    ProcessError::Conflict(format!(
        "station {station} does not hold card {} in attempt {} any more (its lease ended)",
        at.card, at.attempt
    ))
}

/// Moves the lease of an item the station holds. Returns the new end, or a conflict when the
/// station no longer holds it.
pub async fn heartbeat(
    ctx: &Context,
    caller: impl Into<Caller<'_>>,
    at: AttemptRef,
) -> Result<Timestamp, ProcessError> {
    let caller = caller.into();
    let station = caller.station;
    let until = ctx.now() + ctx.stations.lease;
    let mut tx = ctx.store.begin().await?;
    check(ctx, &mut tx, caller).await?;
    let Some(claim) = held(&mut tx, station, at).await? else {
        return Err(lost(station, at));
    };
    if !batch_orders::extend_lease(&mut tx, &claim, until).await? {
        return Err(lost(station, at));
    }
    Store::commit(tx).await?;
    Ok(until)
}

fn record_json(r: &CertificateRecord) -> serde_json::Value {
    serde_json::json!({
        "serial": r.serial, "card": r.card.to_string(), "profile": r.profile,
        "key_id": r.key_id, "public_key": r.public_key, "subject": r.subject, "der": r.der,
        "issued_at": to_micros(r.issued_at), "not_after": to_micros(r.not_after),
    })
}

fn record_of(v: &serde_json::Value) -> Result<CertificateRecord, ProcessError> {
    let text = |key: &str| {
        v[key]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ProcessError::Internal(format!("issued certificate without {key}")))
    };
    let time = |key: &str| -> Result<Timestamp, ProcessError> {
        Ok(from_micros(v[key].as_i64().unwrap_or_default())?)
    };
    Ok(CertificateRecord {
        serial: text("serial")?,
        card: CardId::parse(&text("card")?)
            .map_err(|e| ProcessError::Internal(format!("issued certificate: {e}")))?,
        profile: text("profile")?,
        kind: CertificateKind::Card,
        key_id: text("key_id")?,
        public_key: text("public_key")?,
        subject: text("subject")?,
        holder: None,
        der: text("der")?,
        revoked: false,
        issued_at: time("issued_at")?,
        not_after: time("not_after")?,
        revoked_at: None,
    })
}

fn issued_of(job: &StationJob) -> Result<Vec<CertificateRecord>, ProcessError> {
    let list: Vec<serde_json::Value> = serde_json::from_str(&job.issued)
        .map_err(|e| ProcessError::Internal(format!("issued certificates: {e}")))?;
    list.iter().map(record_of).collect()
}

/// Certifies a key the chip of a held item generated, under one of the attempt's profiles.
pub async fn certify(
    ctx: &Context,
    caller: impl Into<Caller<'_>>,
    at: AttemptRef,
    key: &CardKey,
) -> Result<(CardCertificate, String), ProcessError> {
    let caller = caller.into();
    let station = caller.station;
    let pki = pki(ctx)?;
    let now = ctx.now();
    let mut tx = ctx.store.begin().await?;
    check(ctx, &mut tx, caller).await?;
    if held(&mut tx, station, at).await?.is_none() {
        return Err(lost(station, at));
    }
    let job = stations::job(&mut tx, at.order, at.card, at.attempt)
        .await?
        .ok_or_else(|| lost(station, at))?;
    let options: serde_json::Value = serde_json::from_str(&job.options).unwrap_or_default();
    let allowed = options["certificates"].as_array().is_some_and(|list| {
        list.iter()
            .any(|p| p.as_str() == Some(key.profile.as_str()))
    });
    // Each profile's key is certified once, and once more for a request sent again after a
    // lost answer; a station cannot mint certificates beyond that.
    let profiles = options["certificates"].as_array().map_or(0, Vec::len);
    let issued_so_far =
        serde_json::from_str::<Vec<serde_json::Value>>(&job.issued).map_or(0, |list| list.len());
    if issued_so_far >= 2 * profiles {
        return Err(ProcessError::Conflict(format!(
            "attempt {} of card {} has all the certificates it may get",
            at.attempt, at.card
        )));
    }
    if !job.encode || !allowed {
        return Err(ProcessError::Invalid(format!(
            "attempt {} of card {} asks for no '{}' certificate",
            at.attempt, at.card, key.profile
        )));
    }
    let card = cards::get(&mut tx, at.card)
        .await?
        .ok_or_else(|| ProcessError::NotFound(format!("no card {}", at.card)))?
        .card;
    let mut number = [0u8; 16];
    ctx.entropy.fill(&mut number);
    let subject = Subject {
        common_name: card.serial.to_string(),
        email: None,
    };
    let (on_card, record) = pki
        .issue(
            &card,
            key,
            CertificateKind::Card,
            &subject,
            None,
            new_serial(number),
            now,
        )
        .map_err(|e| ProcessError::Unprocessable(crate::report(&e)))?;
    let mut issued: Vec<serde_json::Value> = serde_json::from_str(&job.issued).unwrap_or_default();
    issued.push(record_json(&record));
    stations::set_issued(
        &mut tx,
        at.order,
        at.card,
        at.attempt,
        &serde_json::Value::Array(issued).to_string(),
    )
    .await?;
    Store::commit(tx).await?;
    Ok((on_card, record.serial))
}

/// How a station says an attempt ended.
#[derive(Clone)]
pub struct RemoteOutcome {
    pub produced: bool,
    /// Why it failed.
    pub error: Option<String>,
    /// The serials of the certificates on the chip.
    pub certificates: Vec<String>,
    /// The new PUK sealed to the escrow key (an encoded card that was produced).
    pub puk_sealed: Option<Vec<u8>>,
}

/// What became of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    /// The outcome was recorded now.
    Recorded,
    /// The same outcome was recorded before (a report sent again).
    AlreadyRecorded,
}

/// Records the outcome a station reports for an item it holds. With `next`, the same
/// transaction hands the station its next card, whose job comes back (JSON, as the station
/// reads it). A report sent again gets the same next card, while the station holds it.
pub async fn report(
    ctx: &Context,
    caller: impl Into<Caller<'_>>,
    at: AttemptRef,
    outcome: &RemoteOutcome,
    next: bool,
) -> Result<(Reported, Option<serde_json::Value>), ProcessError> {
    let caller = caller.into();
    let station = caller.station;
    let status = if outcome.produced {
        ItemStatus::Produced
    } else {
        ItemStatus::Failed
    };
    // One transaction: a station's card costs one turn at the database.
    let mut tx = ctx.store.begin().await?;
    check(ctx, &mut tx, caller).await?;
    let Some(claim) = held(&mut tx, station, at).await? else {
        return match batch_orders::recorded_attempt(&mut tx, at.order, at.card, at.attempt).await? {
            Some((by, recorded)) if by == station && recorded == status.as_str() => {
                let again = if next {
                    handed_again(ctx, &mut tx, station, at).await?
                } else {
                    None
                };
                Ok((Reported::AlreadyRecorded, again))
            }
            _ => Err(lost(station, at)),
        };
    };
    let job = stations::job(&mut tx, at.order, at.card, at.attempt)
        .await?
        .ok_or_else(|| lost(station, at))?;
    // Every certificate issued for the attempt is recorded: those the chip holds as they are,
    // any other (a request sent again after a lost answer) revoked; all revoked when the card
    // failed.
    let now = ctx.now();
    let certificates: Vec<CertificateRecord> = issued_of(&job)?
        .into_iter()
        .map(|mut r| {
            if outcome.produced && !outcome.certificates.contains(&r.serial) {
                r.revoked = true;
                r.revoked_at = Some(now);
            }
            r
        })
        .collect();
    let puk_sealed = match (&outcome.puk_sealed, outcome.produced && job.encode) {
        (Some(sealed), true) => Some(reseal_puk(ctx, &mut tx, sealed).await?),
        (None, true) => {
            return Err(ProcessError::Invalid(
                "an encoded card that was produced needs its PUK, sealed to the escrow key".into(),
            ))
        }
        _ => None,
    };
    let error = outcome
        .error
        .as_deref()
        .map(|e| e.chars().take(2000).collect::<String>());
    let lease_until = ctx.now() + ctx.stations.lease;
    let recorded = record(
        ctx,
        &mut tx,
        &claim,
        Recorded {
            status,
            error: if outcome.produced {
                None
            } else {
                Some(error.as_deref().unwrap_or("failed at the station"))
            },
            certificates: &certificates,
            puk_sealed: puk_sealed.as_deref(),
            options: serde_json::from_str(&job.options).ok(),
            encoding: job.encode,
        },
        next.then_some((station, Some(lease_until))),
    )
    .await?;
    if !recorded.current {
        return Err(lost(station, at));
    }
    let dispatched = match &recorded.next {
        Some(attempt) => {
            Some(dispatch(ctx, &mut tx, attempt, station, lease_until, Some(at)).await?)
        }
        None => None,
    };
    Store::commit(tx).await?;
    if recorded.recheck {
        settle_when_done(ctx, claim.order).await?;
    }
    let mut job = None;
    if let Some(dispatched) = dispatched {
        if let Some(order) = dispatched.recheck {
            settle_when_done(ctx, order).await?;
        }
        job = dispatched
            .job
            .map(|j| j.to_json(ctx.stations.lease.num_seconds()));
    }
    Ok((Reported::Recorded, job))
}

/// The job the report of `at` handed to `station`, again (its answer was lost), while the
/// station still holds it; the earlier PUK is read from the card again.
async fn handed_again(
    ctx: &Context,
    conn: &mut Conn,
    station: &str,
    at: AttemptRef,
) -> Result<Option<serde_json::Value>, ProcessError> {
    let Some(text) = stations::handed_after(&mut *conn, station, &at.key()).await? else {
        return Ok(None);
    };
    let mut job: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ProcessError::Internal(format!("a kept job: {e}")))?;
    if job["encoding"].is_object() {
        let card = job["card"]
            .as_str()
            .and_then(|c| CardId::parse(c).ok())
            .ok_or_else(|| ProcessError::Internal("a kept job without its card".into()))?;
        let old_puk = match certificates::sealed_puk(&mut *conn, card).await? {
            Some(sealed) => pki(ctx)?.open_puk(&mut *conn, &sealed).await?,
            None => None,
        };
        job["encoding"]["old_puk"] = serde_json::json!(old_puk);
    }
    job["lease_secs"] = serde_json::json!(ctx.stations.lease.num_seconds());
    Ok(Some(job))
}

/// Opens a PUK sealed to the escrow key and seals it under the master key.
async fn reseal_puk(ctx: &Context, tx: &mut Conn, sealed: &[u8]) -> Result<String, ProcessError> {
    let escrow = escrow_key(ctx, &mut *tx).await?;
    let puk = escrow.open(sealed).ok_or_else(|| {
        ProcessError::Invalid("the sealed PUK does not open with the escrow key".into())
    })?;
    let puk = String::from_utf8(puk)
        .ok()
        .filter(|p| (4..=32).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| ProcessError::Invalid("the sealed PUK is not 4 to 32 digits".into()))?;
    let mut nonce = [0u8; 12];
    ctx.entropy.fill(&mut nonce);
    Ok(pki(ctx)?.seal_puk(&mut *tx, nonce, &puk).await?)
}

/// Fails the items whose station's lease ran out ("production interrupted"); the certificates
/// issued for their chips are recorded revoked. Returns how many.
pub async fn expire_leases(ctx: &Context) -> Result<u64, ProcessError> {
    let found = {
        let mut conn = ctx.store.reader().await?;
        batch_orders::lease_expired(&mut conn, ctx.now()).await?
    };
    let mut failed = 0;
    for claim in found {
        let mut tx = ctx.store.begin().await?;
        let job = stations::job(&mut tx, claim.order, claim.card, claim.attempt).await?;
        let issued = match &job {
            Some(job) => issued_of(job)?,
            None => Vec::new(),
        };
        let recorded = record(
            ctx,
            &mut tx,
            &claim,
            Recorded {
                status: ItemStatus::Failed,
                error: Some(INTERRUPTED),
                certificates: &issued,
                puk_sealed: None,
                options: job.and_then(|j| serde_json::from_str(&j.options).ok()),
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
            tracing::warn!(station = %claim.station, serial = %claim.serial, "station's lease ran out: production interrupted");
            failed += 1;
        }
    }
    Ok(failed)
}
