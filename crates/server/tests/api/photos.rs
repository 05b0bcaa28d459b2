//! Persons' photos: uploaded JPEG or PNG, checked and re-encoded, served as JPEG, filling the
//! photo box of a layout in the holder's card preview; bad files are refused and change nothing.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{spawn_app, Db, TestApp};
use crate::on_both_databases;

on_both_databases!(
    a_photo_is_re_encoded_served_and_fills_the_card_layout,
    bad_photos_are_refused_and_change_nothing,
);

/// A picture of one colour, encoded as `format`.
fn picture(width: u32, height: u32, rgb: [u8; 3], format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(width, height, image::Rgb(rgb));
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), format)
        .unwrap();
    out
}

async fn put_photo(
    app: &TestApp,
    token: &str,
    person: &str,
    media: &str,
    body: Vec<u8>,
) -> (StatusCode, String) {
    let res = app
        .client
        .put(format!("{}/api/v1/persons/{person}/photo", app.base))
        .bearer_auth(token)
        .header("content-type", media)
        .body(body)
        .send()
        .await
        .unwrap();
    (res.status(), res.text().await.unwrap())
}

async fn get_bytes(app: &TestApp, path: &str) -> (StatusCode, Option<String>, Vec<u8>) {
    let res = app
        .client
        .get(format!("{}{path}", app.base))
        .bearer_auth(&app.officer)
        .send()
        .await
        .unwrap();
    let media = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    (res.status(), media, res.bytes().await.unwrap().to_vec())
}

const LAYOUT: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" width="85.6mm" height="53.98mm" viewBox="0 0 856 540">
  <rect width="856" height="540" fill="#ffffff"/>
  <text x="40" y="120" font-size="50" font-family="DejaVu Sans">{{holder}}</text>
  <rect data-cardwright="photo" x="600" y="40" width="200" height="240"/>
</svg>"##;

async fn a_photo_is_re_encoded_served_and_fills_the_card_layout(db: Db) {
    let app = spawn_app(db).await;
    let person = app.person("E-1").await;
    let detail = app
        .get(&format!("/api/v1/persons/{person}"), &app.officer)
        .await;
    assert_eq!(detail.body["has_photo"], false, "{detail:?}");
    let (status, _, _) = get_bytes(&app, &format!("/api/v1/persons/{person}/photo")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A card of a template whose layout has a photo box, assigned to the person.
    let created = app
        .post(
            "/api/v1/card-templates",
            &app.policy,
            json!({"name": "Photo card", "serial_prefix": "PHO-", "front_svg": LAYOUT}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let cards = app
        .post(
            "/api/v1/temporary-cards",
            &app.officer,
            json!({"template": "Photo card", "amount": 1}),
        )
        .await;
    let card = cards.body["cards"][0]["id"].as_str().unwrap().to_owned();
    app.produce(&card).await;
    let assigned = app
        .post(
            &format!("/api/v1/cards/{card}/assign"),
            &app.officer,
            json!({"person": person}),
        )
        .await;
    assert_eq!(assigned.status, StatusCode::OK, "{assigned:?}");
    let preview = format!("/api/v1/cards/{card}/preview");
    let (_, _, without) = get_bytes(&app, &preview).await;

    // A large red PNG becomes a JPEG of at most 600 × 800.
    let (status, text) = put_photo(
        &app,
        &app.officer,
        &person,
        "image/png",
        picture(1500, 2000, [220, 20, 20], image::ImageFormat::Png),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
    let (status, media, jpeg) = get_bytes(&app, &format!("/api/v1/persons/{person}/photo")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(media.as_deref(), Some("image/jpeg"));
    let stored = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg).unwrap();
    assert_eq!((stored.width(), stored.height()), (600, 800));
    let detail = app
        .get(&format!("/api/v1/persons/{person}"), &app.officer)
        .await;
    assert_eq!(detail.body["has_photo"], true);

    photo_fills_the_box(&app, &preview, &without).await;

    // A new photo replaces it; a JPEG is taken as well.
    let (status, _) = put_photo(
        &app,
        &app.officer,
        &person,
        "image/jpeg",
        picture(60, 80, [20, 20, 220], image::ImageFormat::Jpeg),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, _, jpeg) = get_bytes(&app, &format!("/api/v1/persons/{person}/photo")).await;
    let stored = image::load_from_memory(&jpeg).unwrap();
    assert_eq!((stored.width(), stored.height()), (60, 80));

    // Each change is an audit event.
    let events = app.get("/api/v1/audit?limit=500", &app.policy).await;
    let sets = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["process"] == "PersonPhotoSet")
        .count();
    assert_eq!(sets, 2, "{:?}", events.body);

    // Removing it: gone, and a second removal is a 404.
    let url = format!("{}/api/v1/persons/{person}/photo", app.base);
    let res = app
        .client
        .delete(&url)
        .bearer_auth(&app.officer)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let (status, _, _) = get_bytes(&app, &format!("/api/v1/persons/{person}/photo")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let res = app
        .client
        .delete(&url)
        .bearer_auth(&app.officer)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

/// The holder's red photo fills the photo box of the card's preview, and only that box.
async fn photo_fills_the_box(app: &TestApp, preview: &str, without: &[u8]) {
    // The holder's photo fills the photo box of the card's preview.
    let (status, _, with) = get_bytes(app, preview).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(with, without);
    let png = image::load_from_memory_with_format(&with, image::ImageFormat::Png)
        .unwrap()
        .to_rgb8();
    let scale = f64::from(png.width()) / 856.0;
    let at = |x: f64, y: f64| {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let pixel = *png.get_pixel((x * scale) as u32, (y * scale) as u32);
        pixel
    };
    let inside = at(700.0, 160.0);
    assert!(
        inside[0] > 180 && inside[1] < 80 && inside[2] < 80,
        "the photo box shows the photo: {inside:?}"
    );
    let outside = at(500.0, 400.0);
    assert!(outside[0] > 230 && outside[1] > 230, "{outside:?}");
}

async fn bad_photos_are_refused_and_change_nothing(db: Db) {
    let app = spawn_app(db).await;
    let person = app.person("E-1").await;
    let good = picture(30, 40, [0, 128, 0], image::ImageFormat::Png);
    let (status, _) = put_photo(&app, &app.officer, &person, "image/png", good).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, _, before) = get_bytes(&app, &format!("/api/v1/persons/{person}/photo")).await;

    // A PNG header claiming 100,000 pixels a side (a decompression bomb), its checksum valid so
    // that only the size refuses it.
    let bomb = png_claiming(100_000, 100_000);
    let mut cut = picture(200, 200, [1, 2, 3], image::ImageFormat::Jpeg);
    cut.truncate(100);
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "text/plain",
            b"hello".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "image/jpeg",
        ),
        (
            "image/jpeg",
            b"GIF89a not a jpeg".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "neither a JPEG nor a PNG",
        ),
        (
            "image/png",
            Vec::new(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty",
        ),
        (
            "image/png",
            bomb,
            StatusCode::UNPROCESSABLE_ENTITY,
            "100000 × 100000 pixels; at most 8000 on a side",
        ),
        ("image/jpeg", cut, StatusCode::UNPROCESSABLE_ENTITY, "photo"),
    ];
    for (media, body, expected, says) in cases {
        let (status, text) = put_photo(&app, &app.officer, &person, media, body).await;
        assert_eq!(status, expected, "{media}: {text}");
        assert!(text.contains(says), "{media}: {text}");
    }
    // One byte over the photo body's limit (8 MiB and a little): 413.
    app.send_too_large(
        Method::PUT,
        &format!("/api/v1/persons/{person}/photo"),
        &app.officer,
        "image/jpeg",
        vec![0xFF; cardwright::state::PHOTO_BODY_LIMIT + 1],
    )
    .await;
    // Only registration officers change photos; unknown persons are 404.
    let png = picture(30, 40, [9, 9, 9], image::ImageFormat::Png);
    let (status, _) = put_photo(&app, &app.producer, &person, "image/png", png.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = put_photo(
        &app,
        &app.officer,
        "0190d6a5-7c4e-7000-8000-000000000000",
        "image/png",
        png,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, _, after) = get_bytes(&app, &format!("/api/v1/persons/{person}/photo")).await;
    assert_eq!(after, before, "refused uploads change nothing");
}

/// A one-pixel PNG whose header claims `width` × `height`, the header's checksum computed anew.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = picture(1, 1, [0, 0, 0], image::ImageFormat::Png);
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let mut crc = 0xFFFF_FFFF_u32;
    for byte in &bytes[12..29] {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    bytes[29..33].copy_from_slice(&(!crc).to_be_bytes());
    bytes
}
