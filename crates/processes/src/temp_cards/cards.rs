//! Reading temporary cards: search, the card profile (processes allowed now, history) and the
//! card's preview.

use cardwright_cardsdk::{CardArtwork, CardFace, Side};
use cardwright_domain::temp_cards::{CardState, ProcessDef};
use cardwright_domain::{CardId, Operator};
use cardwright_storage::audit::{self, Event, EventFilter};
use cardwright_storage::cards::{self, CardFilter, CardRecord};
use cardwright_storage::templates;

use crate::paging::{bad_cursor, next_cursor, page_limit, MAX_PAGE};
use crate::{Context, ProcessError};

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
        serial_contains: q
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
        .serial_contains
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
    /// The card's area (its template's kind).
    pub area: &'static cardwright_domain::Area,
    /// The processes of the card's area the operator may start on it now.
    pub processes: Vec<&'static ProcessDef>,
    pub history: Vec<Event>,
    /// Every certificate issued for the card's chip, oldest first.
    pub certificates: Vec<cardwright_storage::certificates::CertificateRecord>,
}

pub async fn profile(
    ctx: &Context,
    operator: &Operator,
    id: CardId,
) -> Result<CardProfile, ProcessError> {
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
    let area = crate::card_process::area_of_card(&mut conn, id).await?;
    Ok(CardProfile {
        certificates,
        processes: area.card_processes_allowed(record.card.state, &operator.roles),
        area,
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

/// A PNG of one side of a card as it prints (or printed), with its holder and validity.
/// Previews come from the preview cache, keyed by what they show, and are limited per
/// operator ([`crate::services::previews`]).
pub async fn preview(
    ctx: &Context,
    operator: &Operator,
    id: CardId,
    side: Side,
) -> Result<Vec<u8>, ProcessError> {
    let (record, template, photo) = {
        let mut conn = ctx.store.reader().await?;
        let record = cards::get(&mut conn, id)
            .await?
            .ok_or_else(|| ProcessError::NotFound(format!("card {id} not found")))?;
        let template = templates::get(&mut conn, record.card.template)
            .await?
            .ok_or_else(|| ProcessError::Internal(format!("template of card {id} vanished")))?;
        // The holder's photo fills the layout's photo box.
        let photo = match &record.holder {
            Some(holder) => cardwright_storage::photos::get(&mut conn, holder.id)
                .await?
                .map(|p| ("image/jpeg".to_owned(), p.jpeg)),
            None => None,
        };
        (record, template, photo)
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
        photo,
    };
    let (front, back) = crate::templates::effective_layouts(&template);
    let artwork = CardArtwork::new(front, back, face);
    ctx.previews
        .png(operator, artwork, side, crate::templates::PREVIEW_WIDTH)
        .await
}
