//! Persons' photos. Whatever arrives (an upload, the directory's `jpegPhoto`) is hostile input:
//! it must be JPEG or PNG, at most [`MAX_BYTES`] and [`MAX_SIDE`] pixels a side, and it is
//! decoded within a memory budget and re-encoded as a JPEG of at most [`OUT_WIDTH`] ×
//! [`OUT_HEIGHT`] pixels, without any of the original's metadata. Only the re-encoded picture
//! is stored and served, and it fills the layouts' `data-cardwright="photo"` box.

use std::io::Cursor;
use std::sync::OnceLock;

use cardwright_domain::{Operator, PersonId, Role};
use cardwright_storage::audit::{self, NewEvent};
use cardwright_storage::photos::{self, PhotoSource, StoredPhoto};
use cardwright_storage::{persons, Store};
use image::{ImageFormat, ImageReader, Limits};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::{require_any, Context, ProcessError};

/// The most bytes a photo may have as received.
pub const MAX_BYTES: usize = 8 * 1024 * 1024;
/// The most pixels a received photo may have on a side.
pub const MAX_SIDE: u32 = 8000;
/// The stored photo's largest width.
pub const OUT_WIDTH: u32 = 600;
/// The stored photo's largest height.
pub const OUT_HEIGHT: u32 = 800;
/// The JPEG quality of stored photos.
const QUALITY: u8 = 85;
/// The most memory one decode may allocate.
const DECODE_BUDGET: u64 = 256 * 1024 * 1024;
/// Photos decoded at once; the others wait their turn.
const DECODERS: usize = 2;

/// A photo ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Photo {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// SHA-256 (hex) of the bytes as received.
    pub source_sha256: String,
}

/// The SHA-256 (hex) of received photo bytes.
pub fn source_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Checks, decodes and re-encodes a received photo. The error says what is wrong with it.
pub fn normalize(bytes: &[u8]) -> Result<Photo, String> {
    if bytes.is_empty() {
        return Err("the photo is empty".into());
    }
    if bytes.len() > MAX_BYTES {
        return Err(format!(
            "the photo has more than {} MiB",
            MAX_BYTES / (1024 * 1024)
        ));
    }
    let format = image::guess_format(bytes)
        .map_err(|_| "the photo is neither a JPEG nor a PNG image".to_owned())?;
    if !matches!(format, ImageFormat::Jpeg | ImageFormat::Png) {
        return Err("the photo is neither a JPEG nor a PNG image".into());
    }
    // The header alone gives the size, before anything of the picture is allocated; read it
    // without the size limits so that the refusal can name the size.
    let (width, height) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| format!("the photo cannot be read: {e}"))?;
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(format!(
            "the photo is {width} × {height} pixels; at most {MAX_SIDE} on a side are accepted"
        ));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(decode_limits());
    let picture = reader
        .decode()
        .map_err(|e| format!("the photo cannot be decoded: {e}"))?;
    let picture = if picture.width() > OUT_WIDTH || picture.height() > OUT_HEIGHT {
        picture.thumbnail(OUT_WIDTH, OUT_HEIGHT)
    } else {
        picture
    };
    let rgb = picture.to_rgb8();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, QUALITY)
        .encode_image(&rgb)
        .map_err(|e| format!("the photo cannot be re-encoded: {e}"))?;
    Ok(Photo {
        jpeg,
        width: rgb.width(),
        height: rgb.height(),
        source_sha256: source_hash(bytes),
    })
}

fn decode_limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(DECODE_BUDGET);
    limits
}

/// [`normalize`] off the async threads, at most [`DECODERS`] at once.
pub async fn normalize_async(bytes: Vec<u8>) -> Result<Result<Photo, String>, ProcessError> {
    static GATE: OnceLock<Semaphore> = OnceLock::new();
    let _turn = GATE
        .get_or_init(|| Semaphore::new(DECODERS))
        .acquire()
        .await
        .map_err(|_| ProcessError::Internal("the photo decoders stopped".into()))?;
    tokio::task::spawn_blocking(move || normalize(&bytes))
        .await
        .map_err(|e| ProcessError::failed("decoding a photo", e))
}

/// Sets a person's photo from uploaded bytes. Needs registration-officer; audited.
pub async fn upload(
    ctx: &Context,
    operator: &Operator,
    person: PersonId,
    bytes: Vec<u8>,
) -> Result<Photo, ProcessError> {
    require_any(operator, &[Role::RegistrationOfficer], "Changing photos")?;
    {
        let mut conn = ctx.store.reader().await?;
        persons::get(&mut conn, person)
            .await?
            .ok_or_else(|| ProcessError::NotFound(format!("person {person} not found")))?;
    }
    let photo = normalize_async(bytes)
        .await?
        .map_err(ProcessError::Unprocessable)?;
    let now = ctx.now();
    let mut tx = ctx.store.begin().await?;
    persons::get_for_update(&mut tx, ctx.store.dialect(), person)
        .await?
        .ok_or_else(|| ProcessError::NotFound(format!("person {person} not found")))?;
    photos::put(
        &mut tx,
        person,
        &StoredPhoto {
            jpeg: photo.jpeg.clone(),
            width: photo.width,
            height: photo.height,
            source: PhotoSource::Upload,
            source_sha256: photo.source_sha256.clone(),
        },
        now,
    )
    .await?;
    audit::append(
        &mut tx,
        &ctx.audit_key,
        NewEvent::admin(
            now,
            operator.username.as_str().to_owned(),
            "PersonPhotoSet",
            serde_json::json!({
                "person": person.to_string(),
                "source": "upload",
                "width": photo.width,
                "height": photo.height,
            }),
        ),
    )
    .await?;
    Store::commit(tx).await?;
    Ok(photo)
}

/// Removes a person's photo. Needs registration-officer; audited. A person without a photo is
/// a 404.
pub async fn remove(
    ctx: &Context,
    operator: &Operator,
    person: PersonId,
) -> Result<(), ProcessError> {
    require_any(operator, &[Role::RegistrationOfficer], "Changing photos")?;
    let now = ctx.now();
    let mut tx = ctx.store.begin().await?;
    persons::get_for_update(&mut tx, ctx.store.dialect(), person)
        .await?
        .ok_or_else(|| ProcessError::NotFound(format!("person {person} not found")))?;
    if !photos::delete(&mut tx, person).await? {
        return Err(ProcessError::NotFound(format!(
            "person {person} has no photo"
        )));
    }
    audit::append(
        &mut tx,
        &ctx.audit_key,
        NewEvent::admin(
            now,
            operator.username.as_str().to_owned(),
            "PersonPhotoRemove",
            serde_json::json!({ "person": person.to_string() }),
        ),
    )
    .await?;
    Store::commit(tx).await?;
    Ok(())
}

/// A person's photo (JPEG bytes). Needs registration-officer.
pub async fn get(
    ctx: &Context,
    operator: &Operator,
    person: PersonId,
) -> Result<Vec<u8>, ProcessError> {
    require_any(operator, &[Role::RegistrationOfficer], "Reading persons")?;
    let mut conn = ctx.store.reader().await?;
    persons::get(&mut conn, person)
        .await?
        .ok_or_else(|| ProcessError::NotFound(format!("person {person} not found")))?;
    photos::get(&mut conn, person)
        .await?
        .map(|p| p.jpeg)
        .ok_or_else(|| ProcessError::NotFound(format!("person {person} has no photo")))
}

/// Whether a person has a photo.
pub async fn exists(ctx: &Context, person: PersonId) -> Result<bool, ProcessError> {
    let mut conn = ctx.store.reader().await?;
    Ok(photos::exists(&mut conn, person).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let picture = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([
                u8::try_from(x % 256).unwrap(),
                u8::try_from(y % 256).unwrap(),
                90,
            ])
        });
        let mut out = Vec::new();
        picture
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn photos_are_re_encoded_as_small_jpegs() {
        let photo = normalize(&png(1200, 1600)).unwrap();
        assert_eq!((photo.width, photo.height), (600, 800));
        assert_eq!(image::guess_format(&photo.jpeg).unwrap(), ImageFormat::Jpeg);
        let small = normalize(&png(30, 40)).unwrap();
        assert_eq!((small.width, small.height), (30, 40));
        // the same input gives the same output, so a sync can compare hashes
        assert_eq!(normalize(&png(30, 40)).unwrap(), small);
    }

    #[test]
    fn bad_photos_are_refused_with_a_reason() {
        assert!(normalize(b"").unwrap_err().contains("empty"));
        assert!(normalize(b"GIF89a....")
            .unwrap_err()
            .contains("neither a JPEG nor a PNG"));
        let mut cut = png(100, 100);
        cut.truncate(cut.len() / 2);
        assert!(normalize(&cut).is_err());
        assert!(normalize(&vec![0xFF; MAX_BYTES + 1])
            .unwrap_err()
            .contains("MiB"));
        // A PNG whose header (with a valid checksum) claims 100,000 pixels a side is refused by
        // its size, before anything is allocated; one pixel over the limit too.
        for (width, height) in [(100_000, 100_000), (MAX_SIDE + 1, 1), (1, MAX_SIDE + 1)] {
            let error = normalize(&png_claiming(width, height)).unwrap_err();
            assert!(
                error.contains(&format!(
                    "{width} × {height} pixels; at most {MAX_SIDE} on a side"
                )),
                "{error}"
            );
        }
    }

    #[test]
    fn photos_at_the_size_limit_are_taken() {
        let photo = normalize(&png(MAX_SIDE, 1)).unwrap();
        assert_eq!(photo.width, OUT_WIDTH);
        let photo = normalize(&png(1, MAX_SIDE)).unwrap();
        assert_eq!(photo.height, OUT_HEIGHT);
    }

    /// A one-pixel PNG whose header claims `width` × `height`, with the header's checksum
    /// computed anew, so a decoder reads the header as valid.
    fn png_claiming(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = png(1, 1);
        bytes[16..20].copy_from_slice(&width.to_be_bytes());
        bytes[20..24].copy_from_slice(&height.to_be_bytes());
        let crc = crc32(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        bytes
    }

    /// CRC-32 as PNG chunks carry it (ISO 3309).
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFF_u32;
        for byte in data {
            crc ^= u32::from(*byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
