//! Reading and checking the audit log.

use cardwright_domain::Timestamp;
use cardwright_domain::{Operator, Role};
use cardwright_storage::audit::{
    self, Adoption, Checkpoint, Event, EventFilter, NewEvent, Verification,
};
use cardwright_storage::Store;
use serde_json::json;

use crate::paging::bad_cursor;
use crate::paging::{next_cursor, page_limit};
use crate::{require_any, Actor, Context, ProcessError};

/// A page of events for a card and/or an order, oldest first.
pub async fn events(
    ctx: &Context,
    operator: &Operator,
    card: Option<String>,
    order: Option<String>,
    cursor: Option<&str>,
    limit: Option<i64>,
) -> Result<(Vec<Event>, Option<String>), ProcessError> {
    require_any(
        operator,
        &[Role::ServiceAdmin, Role::PolicyAdmin],
        "Reading the audit log",
    )?;
    let limit = page_limit(limit)?;
    let after = cursor
        .filter(|c| !c.is_empty())
        .map(str::parse::<i64>)
        .transpose()
        .map_err(|_| bad_cursor())?;
    let filter = EventFilter {
        card: card.filter(|c| !c.is_empty()),
        order: order.filter(|o| !o.is_empty()),
        after,
    };
    let mut conn = ctx.store.reader().await?;
    let mut page = audit::list(&mut conn, &filter, limit + 1).await?;
    let next = next_cursor(&mut page, limit, |e| e.seq.to_string());
    Ok((page, next))
}

/// Checks the whole hash chain and its signatures.
pub async fn verify(ctx: &Context) -> Result<Verification, ProcessError> {
    let mut conn = ctx.store.reader().await?;
    Ok(audit::verify(&mut conn, &ctx.audit_key).await?)
}

/// Refuses to go on with a log that does not verify, naming the problem and the command that
/// tells more. A server runs this before it writes anything; an installation whose keys were made
/// before the empty log's head was signed has that head signed first.
pub async fn require_intact(ctx: &Context) -> Result<(), ProcessError> {
    let mut tx = ctx.store.begin().await?;
    audit::sign_empty(&mut tx, &ctx.audit_key).await?;
    Store::commit(tx).await?;
    let verification = verify(ctx).await?;
    match verification.first_bad {
        None => Ok(()),
        Some((seq, reason)) => Err(ProcessError::Conflict(format!(
            "the audit log does not verify (event {seq}: {reason}); nothing was started. Run \
             `cardwright audit verify` for details"
        ))),
    }
}

/// Takes over a log written before the log was signed (`cardwright audit adopt`): signs every
/// event and the head once its chain is found whole, and records the adoption as an event
/// (`AuditAdopt`), all in one transaction. Refused, changing nothing, for a log that was written
/// with signing.
pub async fn adopt(ctx: &Context, actor: &Actor) -> Result<i64, ProcessError> {
    let mut tx = ctx.store.begin().await?;
    match audit::adopt(&mut tx, &ctx.audit_key).await? {
        Adoption::Refused(reason) => Err(ProcessError::Conflict(format!(
            "the audit log was not adopted: {reason}"
        ))),
        Adoption::Adopted { events } => {
            audit::append(
                &mut tx,
                &ctx.audit_key,
                NewEvent::admin(
                    ctx.now(),
                    actor.audit_name(),
                    "AuditAdopt",
                    json!({ "events": events }),
                ),
            )
            .await?;
            Store::commit(tx).await?;
            tracing::warn!(
                events,
                "audit log adopted: events up to {events} were written before signing and are \
                 signed now"
            );
            Ok(events)
        }
    }
}

/// The signed head to publish as a checkpoint, with the time it was read; `None` when the head
/// does not verify (a server whose log broke while it ran publishes nothing it cannot vouch for,
/// and says so).
pub async fn checkpoint(ctx: &Context) -> Result<Option<(Checkpoint, Timestamp)>, ProcessError> {
    let mut conn = ctx.store.reader().await?;
    let head = audit::head(&mut conn).await?;
    match head {
        Some(head) if head.is_signed(&ctx.audit_key) => Ok(Some((
            Checkpoint {
                seq: head.seq,
                hash: head.hash,
                signature: head.signature,
            },
            ctx.now(),
        ))),
        _ => {
            tracing::error!(
                "the audit log's head is missing or not signed: no checkpoint published; run \
                 `cardwright audit verify`"
            );
            Ok(None)
        }
    }
}

/// Publishes the signed head outside the database: a line in the server's log
/// ([`checkpoint_line`]) and an `audit.checkpoint` webhook delivery for each subscription that
/// lists it. Returns what was published; nothing when the head does not verify.
pub async fn publish_checkpoint(ctx: &Context) -> Result<Option<Checkpoint>, ProcessError> {
    let Some((checkpoint, at)) = checkpoint(ctx).await? else {
        return Ok(None);
    };
    tracing::info!("{}", checkpoint_line(&checkpoint, at));
    crate::notify::webhooks::publish_checkpoint(
        ctx,
        &crate::notify::webhooks::AuditCheckpoint {
            seq: checkpoint.seq,
            hash: checkpoint.hash.clone(),
            signature: checkpoint.signature.clone().unwrap_or_default(),
            at,
        },
    )
    .await?;
    Ok(Some(checkpoint))
}

/// What marks a checkpoint in the server's log.
const CHECKPOINT_MARK: &str = "audit checkpoint:";

/// A checkpoint as the server writes it to its log, one line that `audit verify --checkpoint`
/// reads back: `audit checkpoint: seq=812 hash=... signature=... at=2026-12-08T09:00:00Z`.
pub fn checkpoint_line(checkpoint: &Checkpoint, at: Timestamp) -> String {
    format!(
        "{CHECKPOINT_MARK} seq={} hash={} signature={} at={}",
        checkpoint.seq,
        checkpoint.hash,
        checkpoint.signature.as_deref().unwrap_or("-"),
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// The checkpoints in `text` with their line numbers: lines of the server's log (text or JSON)
/// holding a checkpoint line, and the bodies of `audit.checkpoint` webhook deliveries, one per
/// line. Other lines are skipped; a line that looks like a checkpoint but does not read as one is
/// an error naming it.
pub fn parse_checkpoints(text: &str) -> Result<Vec<(usize, Checkpoint)>, String> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        if let Some(at) = line.find(CHECKPOINT_MARK) {
            let fields = &line[at + CHECKPOINT_MARK.len()..];
            let checkpoint = checkpoint_of_fields(fields)
                .ok_or_else(|| format!("line {number} names a checkpoint but does not hold one"))?;
            found.push((number, checkpoint));
        } else if let Ok(serde_json::Value::Object(body)) = serde_json::from_str(line.trim()) {
            if body.get("type").and_then(serde_json::Value::as_str) == Some("audit.checkpoint") {
                let checkpoint =
                    body.get("data")
                        .and_then(checkpoint_of_json)
                        .ok_or_else(|| {
                            format!(
                                "line {number} is an audit.checkpoint delivery without its head"
                            )
                        })?;
                found.push((number, checkpoint));
            }
        }
    }
    Ok(found)
}

/// `seq=.. hash=.. signature=..` of a checkpoint line; the value of each ends where a
/// character that none of them holds begins (a JSON log line's closing quote).
fn checkpoint_of_fields(fields: &str) -> Option<Checkpoint> {
    let value = |name: &str| {
        let key = format!(" {name}=");
        let start = fields.find(&key)? + key.len();
        let rest = &fields[start..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .unwrap_or(rest.len());
        Some(&rest[..end])
    };
    let hash = value("hash")?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(Checkpoint {
        seq: value("seq")?.parse().ok().filter(|seq| *seq >= 0)?,
        hash: hash.to_ascii_lowercase(),
        signature: value("signature")
            .filter(|s| *s != "-" && !s.is_empty())
            .map(str::to_owned),
    })
}

fn checkpoint_of_json(data: &serde_json::Value) -> Option<Checkpoint> {
    Some(Checkpoint {
        seq: data.get("seq")?.as_i64().filter(|seq| *seq >= 0)?,
        hash: data.get("hash")?.as_str()?.to_ascii_lowercase(),
        signature: data
            .get("signature")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned),
    })
}

/// Checks `checkpoints` against the log: the problem with each that fails, with its line.
pub async fn check_checkpoints(
    store: &Store,
    key: &audit::AuditKey,
    checkpoints: &[(usize, Checkpoint)],
) -> Result<Vec<(usize, String)>, ProcessError> {
    let list: Vec<Checkpoint> = checkpoints.iter().map(|(_, c)| c.clone()).collect();
    let mut conn = store.reader().await?;
    let problems = audit::check_checkpoints(&mut conn, key, &list).await?;
    Ok(problems
        .into_iter()
        .map(|(i, problem)| (checkpoints[i].0, problem))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            seq: 812,
            hash: "ab".repeat(32),
            signature: Some("cd".repeat(32)),
        }
    }

    #[test]
    fn a_checkpoint_line_reads_back_from_text_and_json_logs() {
        let at = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let line = checkpoint_line(&sample(), at);
        let text_log = format!("2026-12-08T09:00:00Z  INFO cardwright::app: {line}");
        let json_log =
            serde_json::json!({"level": "INFO", "fields": {"message": line}}).to_string();
        let webhook = serde_json::json!({
            "type": "audit.checkpoint",
            "data": {"seq": 812, "hash": "ab".repeat(32), "signature": "cd".repeat(32)}
        })
        .to_string();
        let file = format!("{text_log}\nsomething else\n{json_log}\n{webhook}\n");
        let found = parse_checkpoints(&file).unwrap();
        assert_eq!(
            found,
            vec![(1, sample()), (3, sample()), (4, sample())],
            "{file}"
        );
    }

    #[test]
    fn a_broken_checkpoint_line_is_named() {
        let error = parse_checkpoints("x\naudit checkpoint: seq=abc hash=00\n").unwrap_err();
        assert!(error.contains("line 2"), "{error}");
        assert_eq!(parse_checkpoints("no checkpoints here\n").unwrap(), vec![]);
    }
}
