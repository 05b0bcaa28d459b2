//! Card templates (policy administrators' master data).

use cardwright_cardsdk::{check_layout, CardArtwork, CardFace, Side};
use cardwright_domain::template::{
    DEFAULT_TEMPLATE_NAME, DEFAULT_TEMPLATE_PREFIX, DESCRIPTION_RULE,
};
use cardwright_domain::{
    CardTemplate, FreeText, Operator, Role, SerialPrefix, TemplateId, TemplateKind, TemplateName,
};
use cardwright_storage::audit::{self, NewEvent};
use cardwright_storage::{templates, Conn, Store, StoreError};

use crate::{require_any, Actor, Context, ProcessError};

/// The fields of a template, as received.
#[derive(Debug, Clone, Default)]
pub struct TemplateInput {
    pub name: String,
    pub kind: Option<String>,
    pub serial_prefix: String,
    pub description: Option<String>,
    /// Layouts (SVG); `None` keeps the current one (the shipped layout for a new template).
    pub front_svg: Option<String>,
    pub back_svg: Option<String>,
}

/// Checks an uploaded layout; refusals are 422 with what is wrong.
fn layout(
    side: Side,
    svg: Option<&String>,
    current: Option<String>,
) -> Result<Option<String>, ProcessError> {
    match svg.map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(current),
        Some(svg) => {
            check_layout(side, svg).map_err(|e| ProcessError::Unprocessable(e.to_string()))?;
            Ok(Some(svg.to_owned()))
        }
    }
}

fn build(
    id: TemplateId,
    input: &TemplateInput,
    current: Option<CardTemplate>,
) -> Result<CardTemplate, ProcessError> {
    let description = FreeText::parse(
        "description",
        DESCRIPTION_RULE,
        input.description.as_deref().unwrap_or_default(),
    )?
    .into_string();
    Ok(CardTemplate {
        id,
        name: TemplateName::parse(&input.name)?,
        kind: input
            .kind
            .as_deref()
            .map_or(Ok(TemplateKind::Temporary), str::parse)?,
        serial_prefix: SerialPrefix::parse(&input.serial_prefix)?,
        description,
        front_layout: layout(
            Side::Front,
            input.front_svg.as_ref(),
            current.as_ref().and_then(|t| t.front_layout.clone()),
        )?,
        back_layout: layout(
            Side::Back,
            input.back_svg.as_ref(),
            current.and_then(|t| t.back_layout),
        )?,
    })
}

fn taken(e: StoreError, t: &CardTemplate) -> ProcessError {
    if e.is_unique_violation() {
        ProcessError::Conflict(format!(
            "a template named '{}' or with serial prefix '{}' exists already",
            t.name.as_str(),
            t.serial_prefix.as_str()
        ))
    } else {
        e.into()
    }
}

async fn audit_template(
    conn: &mut Conn,
    ctx: &Context,
    actor: &Actor,
    process: &str,
    t: &CardTemplate,
) -> Result<(), ProcessError> {
    audit::append(
        conn,
        &ctx.audit_key,
        NewEvent::admin(
            ctx.now(),
            actor.audit_name(),
            process,
            serde_json::json!({
                "template": t.id.to_string(),
                "name": t.name.as_str(),
                "serial_prefix": t.serial_prefix.as_str(),
            }),
        ),
    )
    .await?;
    Ok(())
}

pub async fn create(
    ctx: &Context,
    operator: &Operator,
    input: &TemplateInput,
) -> Result<CardTemplate, ProcessError> {
    require_any(operator, &[Role::PolicyAdmin], "Editing card templates")?;
    let (millis, random) = ctx.id_parts();
    let template = build(TemplateId::new(millis, random), input, None)?;
    check_render_time(ctx, operator, input, &template).await?;
    let mut tx = ctx.store.begin().await?;
    templates::insert(&mut tx, &template, ctx.now(), false)
        .await
        .map_err(|e| taken(e, &template))?;
    audit_template(
        &mut tx,
        ctx,
        &Actor::Operator(operator.clone()),
        "TemplateCreate",
        &template,
    )
    .await?;
    Store::commit(tx).await?;
    Ok(template)
}

pub async fn update(
    ctx: &Context,
    operator: &Operator,
    id: TemplateId,
    input: &TemplateInput,
) -> Result<CardTemplate, ProcessError> {
    require_any(operator, &[Role::PolicyAdmin], "Editing card templates")?;
    let not_found = || ProcessError::NotFound(format!("card template {id} not found"));
    // The layouts are measured before the transaction: rendering takes up to seconds.
    let changed = |existing: CardTemplate| {
        let template = build(id, input, Some(existing.clone()))?;
        if existing.kind == template.kind {
            Ok(template)
        } else {
            Err(ProcessError::Invalid(
                "kind: a template's kind cannot change".into(),
            ))
        }
    };
    let measured = {
        let mut conn = ctx.store.reader().await?;
        changed(templates::get(&mut conn, id).await?.ok_or_else(not_found)?)?
    };
    check_render_time(ctx, operator, input, &measured).await?;
    let mut tx = ctx.store.begin().await?;
    let template = changed(templates::get(&mut tx, id).await?.ok_or_else(not_found)?)?;
    if effective_layouts(&template) != effective_layouts(&measured) {
        return Err(ProcessError::Conflict(
            "the template's layouts were changed meanwhile; load it again and repeat the change"
                .into(),
        ));
    }
    templates::update(&mut tx, &template, ctx.now())
        .await
        .map_err(|e| taken(e, &template))?;
    audit_template(
        &mut tx,
        ctx,
        &Actor::Operator(operator.clone()),
        "TemplateUpdate",
        &template,
    )
    .await?;
    Store::commit(tx).await?;
    Ok(template)
}

pub async fn list(ctx: &Context) -> Result<Vec<CardTemplate>, ProcessError> {
    let mut conn = ctx.store.reader().await?;
    Ok(templates::list(&mut conn).await?)
}

pub async fn get(ctx: &Context, name_or_id: &str) -> Result<CardTemplate, ProcessError> {
    let mut conn = ctx.store.reader().await?;
    templates::resolve(&mut conn, name_or_id)
        .await?
        .ok_or_else(|| ProcessError::NotFound(format!("card template '{name_or_id}' not found")))
}

/// Makes sure the shipped temporary card template exists; run at every start.
pub async fn ensure_default(ctx: &Context) -> Result<(), ProcessError> {
    let (millis, random) = ctx.id_parts();
    let template = build(
        TemplateId::new(millis, random),
        &TemplateInput {
            name: DEFAULT_TEMPLATE_NAME.into(),
            kind: None,
            serial_prefix: DEFAULT_TEMPLATE_PREFIX.into(),
            description: Some("Spare badge for an employee who forgot theirs".into()),
            front_svg: None,
            back_svg: None,
        },
        None,
    )?;
    let mut tx = ctx.store.begin().await?;
    let exists = templates::get_by_name(&mut tx, template.name.as_str())
        .await?
        .is_some();
    if !exists && templates::insert(&mut tx, &template, ctx.now(), true).await? {
        audit_template(
            &mut tx,
            ctx,
            &Actor::System("system"),
            "TemplateCreate",
            &template,
        )
        .await?;
    }
    Store::commit(tx).await?;
    Ok(())
}

/// The layouts a template prints with: its own, or the shipped temporary card layout.
pub fn effective_layouts(t: &CardTemplate) -> (&str, &str) {
    (
        t.front_layout
            .as_deref()
            .unwrap_or(cardwright_cardsdk::layout::TEMPORARY_FRONT),
        t.back_layout
            .as_deref()
            .unwrap_or(cardwright_cardsdk::layout::TEMPORARY_BACK),
    )
}

/// The side of a card a preview shows, as asked for.
pub fn parse_side(side: &str) -> Result<Side, ProcessError> {
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

/// Refuses uploaded layouts whose card takes longer to render than a card may, measured with
/// sample values. Nothing is measured when no layout was uploaded.
async fn check_render_time(
    ctx: &Context,
    operator: &Operator,
    input: &TemplateInput,
    template: &CardTemplate,
) -> Result<(), ProcessError> {
    let uploaded = |svg: &Option<String>| svg.as_deref().is_some_and(|s| !s.trim().is_empty());
    if !uploaded(&input.front_svg) && !uploaded(&input.back_svg) {
        return Ok(());
    }
    let (front, back) = effective_layouts(template);
    let artwork = CardArtwork::new(front, back, CardFace::sample(template.name.as_str()));
    ctx.previews
        .check_render_time(operator, artwork, PREVIEW_WIDTH)
        .await
}

/// A PNG of one side of a template, filled with sample values. Previews are rendered once per
/// template version and side, and are limited per operator ([`crate::services::previews`]).
pub async fn template_preview(
    ctx: &Context,
    operator: &Operator,
    name_or_id: &str,
    side: Side,
) -> Result<Vec<u8>, ProcessError> {
    let template = get(ctx, name_or_id).await?;
    let (front, back) = effective_layouts(&template);
    let artwork = CardArtwork::new(front, back, CardFace::sample(template.name.as_str()));
    ctx.previews
        .png(operator, artwork, side, PREVIEW_WIDTH)
        .await
}
