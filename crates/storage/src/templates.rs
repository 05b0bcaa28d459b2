//! Card templates.

use cardwright_domain::{CardTemplate, SerialPrefix, TemplateId, TemplateName, Timestamp};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{to_micros, Conn, StoreError};

const SELECT: &str =
    "SELECT id, name, kind, serial_prefix, description, front_svg, back_svg FROM card_templates";

fn template(row: &AnyRow) -> Result<CardTemplate, StoreError> {
    Ok(CardTemplate {
        id: TemplateId::parse(&row.try_get::<String, _>("id")?)?,
        name: TemplateName::parse(&row.try_get::<String, _>("name")?)?,
        kind: row.try_get::<String, _>("kind")?.parse()?,
        serial_prefix: SerialPrefix::parse(&row.try_get::<String, _>("serial_prefix")?)?,
        description: row.try_get("description")?,
        front_layout: row.try_get("front_svg")?,
        back_layout: row.try_get("back_svg")?,
    })
}

/// Stores a new template; a taken name or prefix is a unique violation. Returns false when
/// `if_absent` is set and the name exists already.
pub async fn insert(
    conn: &mut Conn,
    t: &CardTemplate,
    now: Timestamp,
    if_absent: bool,
) -> Result<bool, StoreError> {
    let conflict = if if_absent {
        " ON CONFLICT DO NOTHING"
    } else {
        ""
    };
    let result = sqlx::query(&format!(
        "INSERT INTO card_templates (id, name, kind, serial_prefix, description, next_serial, \
         created_at, updated_at, front_svg, back_svg) VALUES ($1, $2, $3, $4, $5, 1, $6, $6, $7, $8){conflict}"
    ))
    .bind(t.id.to_string())
    .bind(t.name.as_str())
    .bind(t.kind.as_str())
    .bind(t.serial_prefix.as_str())
    .bind(t.description.as_str())
    .bind(to_micros(now))
    .bind(t.front_layout.clone())
    .bind(t.back_layout.clone())
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Replaces a template's name, prefix, description and layouts.
pub async fn update(conn: &mut Conn, t: &CardTemplate, now: Timestamp) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "UPDATE card_templates SET name = $1, serial_prefix = $2, description = $3, \
         updated_at = $4, front_svg = $6, back_svg = $7 WHERE id = $5",
    )
    .bind(t.name.as_str())
    .bind(t.serial_prefix.as_str())
    .bind(t.description.as_str())
    .bind(to_micros(now))
    .bind(t.id.to_string())
    .bind(t.front_layout.clone())
    .bind(t.back_layout.clone())
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn get(conn: &mut Conn, id: TemplateId) -> Result<Option<CardTemplate>, StoreError> {
    let row = sqlx::query(&format!("{SELECT} WHERE id = $1"))
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(template).transpose()
}

pub async fn get_by_name(conn: &mut Conn, name: &str) -> Result<Option<CardTemplate>, StoreError> {
    let row = sqlx::query(&format!("{SELECT} WHERE name = $1"))
        .bind(name)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(template).transpose()
}

/// Finds a template by its id or, failing that, its name.
pub async fn resolve(
    conn: &mut Conn,
    name_or_id: &str,
) -> Result<Option<CardTemplate>, StoreError> {
    // No template is named with a NUL character, and PostgreSQL refuses one in a text argument.
    if name_or_id.contains('\0') {
        return Ok(None);
    }
    if let Ok(id) = TemplateId::parse(name_or_id) {
        if let Some(t) = get(&mut *conn, id).await? {
            return Ok(Some(t));
        }
    }
    get_by_name(conn, name_or_id.trim()).await
}

pub async fn list(conn: &mut Conn) -> Result<Vec<CardTemplate>, StoreError> {
    let rows = sqlx::query(&format!("{SELECT} ORDER BY name"))
        .fetch_all(conn)
        .await?;
    rows.iter().map(template).collect()
}

/// Reserves `count` running numbers of a template's serials and returns the first. The row
/// update serialises concurrent requests, so no two cards get the same number.
pub async fn reserve_serial_numbers(
    conn: &mut Conn,
    id: TemplateId,
    count: u32,
) -> Result<u64, StoreError> {
    let next: i64 = sqlx::query_scalar(
        "UPDATE card_templates SET next_serial = next_serial + $1 WHERE id = $2 RETURNING next_serial",
    )
    .bind(i64::from(count))
    .bind(id.to_string())
    .fetch_one(conn)
    .await?;
    u64::try_from(next - i64::from(count))
        .map_err(|_| StoreError::Corrupt(format!("serial counter of template {id} is negative")))
}
