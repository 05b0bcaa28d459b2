//! Reading cards: search and the card profile (processes allowed now, history).

use cardwright_cardsdk::{CardArtwork, CardFace, LayoutError, Side};
use cardwright_domain::catalog::card_processes_allowed;
use cardwright_domain::{CardId, CardState, Operator, ProcessDef};
use cardwright_storage::audit::{self, Event, EventFilter};
use cardwright_storage::cards::{self, CardFilter, CardRecord};
use cardwright_storage::templates;

use crate::{Context, ProcessError};

/// The largest page any list returns.
pub const MAX_PAGE: u32 = 500;
/// The page size when none is asked for.
pub const DEFAULT_PAGE: u32 = 50;

/// Checks a requested page size.
pub fn page_limit(limit: Option<i64>) -> Result<u32, ProcessError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=i64::from(MAX_PAGE)).contains(&n) => Ok(u32::try_from(n).expect("bounded")),
        Some(n) => Err(ProcessError::Invalid(format!(
            "limit must be between 1 and {MAX_PAGE}, got {n}"
        ))),
    }
}

/// The refusal of a cursor that no list of this kind gave out.
pub(crate) fn bad_cursor() -> ProcessError {
    ProcessError::Invalid("cursor: not a cursor returned by this list".into())
}

/// Trims a page read with one extra row and returns the next page's cursor if there is one.
pub(crate) fn next_cursor<T>(
    page: &mut Vec<T>,
    limit: u32,
    key: impl Fn(&T) -> String,
) -> Option<String> {
    if page.len() > limit as usize {
        page.truncate(limit as usize);
        page.last().map(key)
    } else {
        None
    }
}

/// Search criteria as received.
#[derive(Debug, Clone, Default)]
pub struct CardQuery {
    pub state: Option<String>,
    pub template: Option<String>,
    pub serial: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<i64>,
}

/// A page of cards and the cursor of the next one. Any logged-in operator may search.
pub async fn search(
    ctx: &Context,
    q: &CardQuery,
) -> Result<(Vec<CardRecord>, Option<String>), ProcessError> {
    let limit = page_limit(q.limit)?;
    let mut conn = ctx.store.reader().await?;
    let template = match q.template.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => Some(
            templates::resolve(&mut conn, t)
                .await?
                .ok_or_else(|| ProcessError::NotFound(format!("no card template '{t}'")))?
                .id,
        ),
        None => None,
    };
    let filter = CardFilter {
        state: q
            .state
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(str::parse::<CardState>)
            .transpose()?,
        template,
        serial_prefix: q
            .serial
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        holder: None,
        after: q
            .cursor
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(CardId::parse)
            .transpose()
            .map_err(|_| bad_cursor())?,
    };
    // No serial has a NUL character, and PostgreSQL refuses one in a text argument.
    if filter
        .serial_prefix
        .as_deref()
        .is_some_and(|s| s.contains('\0'))
    {
        return Ok((Vec::new(), None));
    }
    let mut page = cards::list(&mut conn, &filter, limit + 1).await?;
    let next = next_cursor(&mut page, limit, |r| r.card.id.to_string());
    Ok((page, next))
}

/// A card with what the operator may do with it now and what happened to it.
#[derive(Debug, Clone)]
pub struct CardProfile {
    pub record: CardRecord,
    pub processes: Vec<&'static ProcessDef>,
    pub history: Vec<Event>,
    /// Every certificate issued for the card's chip, oldest first.
    pub certificates: Vec<cardwright_storage::certificates::CertificateRecord>,
}

pub async fn profile(
    ctx: &Context,
    operator: &Operator,
    id: &str,
) -> Result<CardProfile, ProcessError> {
    let id = CardId::parse(id)?;
    let mut conn = ctx.store.reader().await?;
    let record = cards::get(&mut conn, id)
        .await?
        .ok_or_else(|| ProcessError::NotFound(format!("card {id} not found")))?;
    let history = audit::list(
        &mut conn,
        &EventFilter {
            card: Some(id.to_string()),
            ..EventFilter::default()
        },
        MAX_PAGE,
    )
    .await?;
    let certificates = cardwright_storage::certificates::of_card(&mut conn, id, false).await?;
    Ok(CardProfile {
        certificates,
        processes: card_processes_allowed(record.card.state, &operator.roles),
        record,
        history,
    })
}

/// Cards a person holds or held, newest last.
pub async fn of_person(
    ctx: &Context,
    person: cardwright_domain::PersonId,
) -> Result<Vec<CardRecord>, ProcessError> {
    let mut conn = ctx.store.reader().await?;
    Ok(cards::list(
        &mut conn,
        &CardFilter {
            holder: Some(person),
            ..CardFilter::default()
        },
        MAX_PAGE,
    )
    .await?)
}

/// The side of a card a preview shows, as asked for.
fn side(side: &str) -> Result<Side, ProcessError> {
    match side {
        "front" | "" => Ok(Side::Front),
        "back" => Ok(Side::Back),
        other => Err(ProcessError::Invalid(format!(
            "side: use front or back, not '{other}'"
        ))),
    }
}

/// Width of API previews, in pixels.
pub const PREVIEW_WIDTH: u32 = 640;

async fn render_png(artwork: CardArtwork, side: Side) -> Result<Vec<u8>, ProcessError> {
    tokio::task::spawn_blocking(move || artwork.png(side, PREVIEW_WIDTH))
        .await
        .map_err(|e| ProcessError::Internal(e.to_string()))?
        .map_err(|e| match e {
            // A layout over the renderer's limits is the administrator's to fix, not a fault.
            LayoutError::Budget(_)
            | LayoutError::Forbidden { .. }
            | LayoutError::TooLarge { .. } => {
                ProcessError::Unprocessable(format!("the card's layout cannot be previewed: {e}"))
            }
            other => ProcessError::Internal(format!("rendering the preview failed: {other}")),
        })
}

/// A PNG of one side of a card as it prints (or printed), with its holder and validity.
pub async fn preview(ctx: &Context, id: &str, side_name: &str) -> Result<Vec<u8>, ProcessError> {
    let side = side(side_name)?;
    let id = CardId::parse(id)?;
    let (record, template) = {
        let mut conn = ctx.store.reader().await?;
        let record = cards::get(&mut conn, id)
            .await?
            .ok_or_else(|| ProcessError::NotFound(format!("card {id} not found")))?;
        let template = templates::get(&mut conn, record.card.template)
            .await?
            .ok_or_else(|| ProcessError::Internal(format!("template of card {id} vanished")))?;
        (record, template)
    };
    let face = CardFace {
        serial: record.card.serial.to_string(),
        template: record.template_name,
        holder: record.holder.map(|h| h.name),
        valid_until: record
            .card
            .valid_until
            .map(|t| t.format("%Y-%m-%d").to_string()),
        issue_date: ctx.now().format("%Y-%m-%d").to_string(),
        photo: None,
    };
    let (front, back) = crate::templates::effective_layouts(&template);
    let artwork = CardArtwork::new(front, back, face);
    render_png(artwork, side).await
}

/// A PNG of one side of a template, filled with sample values.
pub async fn template_preview(
    ctx: &Context,
    name_or_id: &str,
    side_name: &str,
) -> Result<Vec<u8>, ProcessError> {
    let side = side(side_name)?;
    let template = crate::templates::get(ctx, name_or_id).await?;
    let (front, back) = crate::templates::effective_layouts(&template);
    let artwork = CardArtwork::new(front, back, CardFace::sample(template.name.as_str()));
    render_png(artwork, side).await
}
