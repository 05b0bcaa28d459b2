//! Persons' photos: one re-encoded JPEG per person, with where it came from.

use std::collections::HashMap;

use base64::Engine as _;
use cardwright_domain::{PersonId, Timestamp};
use sqlx::Row;

use crate::{to_micros, Conn, StoreError};

/// Where a photo came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhotoSource {
    /// The directory's photo attribute (`jpegPhoto`).
    Directory,
    /// An operator uploaded it.
    Upload,
}

impl PhotoSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PhotoSource::Directory => "directory",
            PhotoSource::Upload => "upload",
        }
    }

    fn parse(text: &str) -> Self {
        if text == "directory" {
            PhotoSource::Directory
        } else {
            PhotoSource::Upload
        }
    }
}

/// A stored photo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPhoto {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub source: PhotoSource,
    /// SHA-256 (hex) of the bytes as received, before re-encoding.
    pub source_sha256: String,
}

/// Stores (or replaces) a person's photo.
pub async fn put(
    conn: &mut Conn,
    person: PersonId,
    photo: &StoredPhoto,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO person_photos (person_id, jpeg, width, height, source, source_sha256, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (person_id) DO UPDATE SET jpeg = excluded.jpeg, width = excluded.width, \
         height = excluded.height, source = excluded.source, \
         source_sha256 = excluded.source_sha256, updated_at = excluded.updated_at",
    )
    .bind(person.to_string())
    .bind(base64::engine::general_purpose::STANDARD.encode(&photo.jpeg))
    .bind(i64::from(photo.width))
    .bind(i64::from(photo.height))
    .bind(photo.source.as_str())
    .bind(&photo.source_sha256)
    .bind(to_micros(now))
    .execute(conn)
    .await?;
    Ok(())
}

/// A person's photo, if they have one.
pub async fn get(conn: &mut Conn, person: PersonId) -> Result<Option<StoredPhoto>, StoreError> {
    let row = sqlx::query(
        "SELECT jpeg, width, height, source, source_sha256 FROM person_photos \
         WHERE person_id = $1",
    )
    .bind(person.to_string())
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let jpeg = base64::engine::general_purpose::STANDARD
        .decode(row.try_get::<String, _>("jpeg")?)
        .map_err(|e| StoreError::Corrupt(format!("photo of person {person}: {e}")))?;
    Ok(Some(StoredPhoto {
        jpeg,
        width: u32::try_from(row.try_get::<i64, _>("width")?).unwrap_or(0),
        height: u32::try_from(row.try_get::<i64, _>("height")?).unwrap_or(0),
        source: PhotoSource::parse(&row.try_get::<String, _>("source")?),
        source_sha256: row.try_get("source_sha256")?,
    }))
}

/// Whether a person has a photo.
pub async fn exists(conn: &mut Conn, person: PersonId) -> Result<bool, StoreError> {
    Ok(
        sqlx::query("SELECT 1 AS one FROM person_photos WHERE person_id = $1")
            .bind(person.to_string())
            .fetch_optional(conn)
            .await?
            .is_some(),
    )
}

/// Removes a person's photo; whether there was one.
pub async fn delete(conn: &mut Conn, person: PersonId) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM person_photos WHERE person_id = $1")
        .bind(person.to_string())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Where each stored photo came from and the hash of what was received, by person id (for a
/// sync to see what changed without reading the pictures).
pub async fn sources(
    conn: &mut Conn,
) -> Result<HashMap<String, (PhotoSource, String)>, StoreError> {
    let rows = sqlx::query("SELECT person_id, source, source_sha256 FROM person_photos")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get::<String, _>("person_id")?,
                (
                    PhotoSource::parse(&row.try_get::<String, _>("source")?),
                    row.try_get::<String, _>("source_sha256")?,
                ),
            ))
        })
        .collect()
}
