//! Reading and checking the audit log.

use cardwright_domain::{Operator, Role};
use cardwright_storage::audit::{self, Adoption, Event, EventFilter, Verification};
use cardwright_storage::Store;

use crate::paging::bad_cursor;
use crate::paging::{next_cursor, page_limit};
use crate::{require_any, Context, ProcessError};

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

/// Signs the head of a log that was written before the log was signed (once, when the server
/// starts), and says so in the log.
pub async fn adopt(ctx: &Context) -> Result<Adoption, ProcessError> {
    let mut tx = ctx.store.begin().await?;
    let adoption = audit::adopt(&mut tx, &ctx.audit_key).await?;
    Store::commit(tx).await?;
    match adoption {
        Adoption::Signed | Adoption::Adopted { seq: 0 } => {}
        Adoption::Adopted { seq } => {
            tracing::warn!(
                seq,
                "audit log adopted: events up to {seq} were written before signing and are \
                 vouched for by the head signed now"
            );
        }
        Adoption::Refused { seq } => {
            tracing::error!(
                seq,
                "the audit log's head lost its signature although events are signed: not \
                 signing it again; run `cardwright audit verify`"
            );
        }
    }
    Ok(adoption)
}
