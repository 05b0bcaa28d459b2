//! The OpenAPI document, health and metrics.

use reqwest::{Method, StatusCode};

use crate::helpers::{spawn_app, Db};

#[tokio::test]
async fn openapi_describes_every_api_route() {
    let app = spawn_app(Db::Sqlite).await;
    let answer = app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let paths = answer.body["paths"].as_object().expect("paths");
    let expected = [
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/temporary-cards", "post"),
        ("/api/v1/cards", "get"),
        ("/api/v1/cards/{id}", "get"),
        ("/api/v1/cards/{id}/abort", "post"),
        ("/api/v1/cards/{id}/assign", "post"),
        ("/api/v1/cards/{id}/withdraw", "post"),
        ("/api/v1/cards/{id}/extend", "post"),
        ("/api/v1/cards/{id}/lock", "post"),
        ("/api/v1/cards/{id}/preview", "get"),
        ("/api/v1/persons", "get"),
        ("/api/v1/persons", "post"),
        ("/api/v1/persons/{id}", "get"),
        ("/api/v1/card-templates", "get"),
        ("/api/v1/card-templates", "post"),
        ("/api/v1/card-templates/{id}", "get"),
        ("/api/v1/card-templates/{id}", "put"),
        ("/api/v1/card-templates/{id}/preview", "get"),
        ("/api/v1/batch-orders", "get"),
        ("/api/v1/batch-orders", "post"),
        ("/api/v1/batch-orders/{id}", "get"),
        ("/api/v1/batch-orders/{id}/next", "post"),
        ("/api/v1/batch-orders/{id}/repeat", "post"),
        ("/api/v1/batch-orders/{id}/complete", "post"),
        ("/api/v1/batch-orders/{id}/cancel", "post"),
        ("/api/v1/scripts/{name}", "get"),
        ("/api/v1/scripts/{name}", "put"),
        ("/api/v1/scripts/{name}/versions", "get"),
        ("/api/v1/scripts/{name}/versions/{version}/restore", "post"),
        ("/api/v1/audit", "get"),
    ];
    for (path, method) in expected {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from the spec"
        );
    }
    assert_eq!(
        paths.len(),
        26,
        "unexpected paths: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    // Every documented operation is really served (never 404 or 405 for the method).
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let concrete = path
                .replace("{id}", "01890a5d-ac96-774b-bcce-b302099a8057")
                .replace("{name}", "TempCardsScriptOptions")
                .replace("{version}", "1");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let res = app
                .client
                .request(m, format!("{}{concrete}", app.base))
                .send()
                .await
                .unwrap();
            assert!(
                ![StatusCode::NOT_FOUND, StatusCode::METHOD_NOT_ALLOWED].contains(&res.status()),
                "{method} {path} is documented but not served: {}",
                res.status()
            );
        }
    }
    let schemas = &answer.body["components"]["schemas"];
    assert!(schemas["CardView"]["properties"]["serial"].is_object());
    assert!(answer.body["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn health_and_metrics_answer() {
    let app = spawn_app(Db::Sqlite).await;
    app.request_cards(3).await;
    let health = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .bearer_auth(&app.auditor)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("cardwright_cards{state=\"requested\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cardwright_http_requests_total{method=\"POST\",route=\"/api/v1/temporary-cards\",status=\"201\"} 1"),
        "{metrics}"
    );
    let unknown = app.call(Method::GET, "/api/v1/nothing", None, None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.body["error"]["code"], "not_found");
}

#[test]
fn committed_openapi_document_is_current() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/openapi.json"
    ))
    .expect("docs/openapi.json exists");
    assert_eq!(
        committed.trim_end(),
        cardwright::http::openapi_json().trim_end(),
        "docs/openapi.json is stale: run `cargo run -- openapi > docs/openapi.json`"
    );
}
