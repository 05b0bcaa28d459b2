//! The OpenAPI document, health and metrics.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

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
        ("/api/v1/webhooks", "get"),
        ("/api/v1/webhooks", "post"),
        ("/api/v1/webhooks/{id}", "get"),
        ("/api/v1/webhooks/{id}", "delete"),
        ("/api/v1/webhooks/{id}/enable", "post"),
        ("/api/v1/webhooks/{id}/deliveries", "get"),
        ("/api/v1/webhooks/{id}/deliveries/{delivery}/resend", "post"),
        ("/api/v1/mail-templates", "get"),
        ("/api/v1/mail-templates/{kind}/{language}", "put"),
        ("/api/v1/mail-templates/{kind}/{language}", "delete"),
        ("/api/v1/mails", "get"),
        ("/api/v1/auth/password", "post"),
        ("/api/v1/operators", "get"),
        ("/api/v1/operators", "post"),
        ("/api/v1/operators/{username}", "get"),
        ("/api/v1/operators/{username}", "patch"),
        ("/api/v1/operators/{username}/reset-password", "post"),
        ("/api/v1/operators/{username}/unlock", "post"),
        ("/api/v1/persons/import", "post"),
        ("/api/v1/persons/{id}/photo", "get"),
        ("/api/v1/persons/{id}/photo", "put"),
        ("/api/v1/persons/{id}/photo", "delete"),
        ("/api/v1/stations", "post"),
        ("/api/v1/stations", "get"),
        ("/api/v1/stations/{name}", "get"),
        ("/api/v1/stations/{name}/disable", "post"),
        ("/api/v1/stations/{name}/enable", "post"),
        ("/api/v1/stations/{name}/enrollment", "post"),
    ];
    for (path, method) in expected {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from the spec"
        );
    }
    assert_eq!(
        paths.len(),
        46,
        "unexpected paths: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    every_operation_is_served(&app, paths).await;
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

/// The generated document, as served.
fn document() -> Value {
    serde_json::from_str(&cardwright::http::openapi_json()).expect("the document is JSON")
}

/// Every operation of the document with its method and path.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut all = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("operations") {
            all.push((method.to_uppercase(), path.clone(), op.clone()));
        }
    }
    all
}

fn statuses(op: &Value) -> Vec<&str> {
    op["responses"]
        .as_object()
        .expect("responses")
        .keys()
        .map(String::as_str)
        .collect()
}

#[test]
fn every_operation_documents_the_answers_every_request_can_get() {
    let doc = document();
    for (method, path, op) in operations(&doc) {
        let documented = statuses(&op);
        if op.get("security").is_some() {
            assert!(
                documented.contains(&"401"),
                "{method} {path}: {documented:?}"
            );
        }
        if op.get("requestBody").is_some() {
            for status in ["400", "413", "415"] {
                assert!(
                    documented.contains(&status),
                    "{method} {path} lacks {status}: {documented:?}"
                );
            }
        }
        let names_an_id = op["parameters"].as_array().is_some_and(|all| {
            all.iter()
                .any(|p| p["schema"]["$ref"] == "#/components/schemas/Id")
        });
        if names_an_id {
            assert!(
                documented.contains(&"400"),
                "{method} {path}: {documented:?}"
            );
        }
    }
}

#[test]
fn every_operation_has_an_id_of_its_own() {
    let doc = document();
    let mut seen = std::collections::HashMap::new();
    for (method, path, op) in operations(&doc) {
        let id = op["operationId"]
            .as_str()
            .expect("an operationId")
            .to_owned();
        if let Some(other) = seen.insert(id.clone(), format!("{method} {path}")) {
            panic!("{method} {path} and {other} share the operationId {id}");
        }
    }
}

#[test]
fn every_card_process_of_the_catalog_has_its_operation() {
    use cardwright_domain::temp_cards::{Input, ProcessScope, CATALOG};
    let doc = document();
    for def in CATALOG.iter().filter(|d| d.scope == ProcessScope::Card) {
        let path = format!("/api/v1/cards/{{id}}/{}", def.action);
        let op = &doc["paths"][&path]["post"];
        assert_eq!(op["operationId"], def.action, "{path}: {op}");
        assert_eq!(op["summary"], def.title, "{path}");
        let description = op["description"].as_str().expect("a description");
        assert!(description.contains(def.summary), "{path}: {description}");
        let role = def.role.expect("a card process has a role");
        assert!(description.contains(role.as_str()), "{path}: {description}");
        for state in def.from {
            assert!(
                op["responses"]["409"]["description"]
                    .as_str()
                    .unwrap()
                    .contains(state.as_str()),
                "{path}: {op}"
            );
        }
        let body = &op["requestBody"]["content"]["application/json"]["schema"]["$ref"];
        match def.input {
            Input::None => assert!(op.get("requestBody").is_none(), "{path}"),
            Input::Person => assert_eq!(body, "#/components/schemas/AssignBody", "{path}"),
            Input::Reason => {
                assert_eq!(body, "#/components/schemas/ReasonBody", "{path}");
                assert_eq!(op["requestBody"]["required"], false, "{path}");
            }
        }
    }
}

/// The schema a parameter of an operation has, with a `$ref` followed.
fn parameter_schema<'a>(doc: &'a Value, op: &'a Value, name: &str) -> &'a Value {
    let parameter = op["parameters"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no parameter {name}"));
    resolve(doc, &parameter["schema"])
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.rsplit('/').next().expect("a schema name");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

#[test]
fn the_document_states_the_limits_the_server_enforces() {
    let doc = document();
    let id = &doc["components"]["schemas"]["Id"];
    assert_eq!(id["format"], "uuid");
    assert!(id["pattern"].is_string(), "{id}");
    for (method, path, op) in operations(&doc) {
        // Templates are named by id or by name where they are read; everything else by id.
        let by_name = method == "GET" && path.starts_with("/api/v1/card-templates/");
        if path.contains("{id}") && !by_name {
            assert_eq!(
                parameter_schema(&doc, &op, "id"),
                id,
                "{method} {path}: the id is not typed"
            );
        }
        if let Some(limit) = op["parameters"]
            .as_array()
            .and_then(|all| all.iter().find(|p| p["name"] == "limit"))
        {
            assert_eq!(limit["schema"]["minimum"], 1, "{method} {path}");
            assert_eq!(
                limit["schema"]["maximum"],
                cardwright_processes::MAX_PAGE,
                "{method} {path}"
            );
        }
    }
    let schemas = &doc["components"]["schemas"];
    let amount = &schemas["RequestCardsBody"]["properties"]["amount"];
    assert_eq!(amount["minimum"], 1);
    assert_eq!(
        amount["maximum"],
        cardwright_domain::temp_cards::Amount::MAX
    );
    for body in ["NewOrderBody", "RepeatBody"] {
        let cards = &schemas[body]["properties"]["cards"];
        assert_eq!(cards["minItems"], 1, "{body}");
        assert_eq!(
            cards["maxItems"],
            cardwright_domain::batch_order::MAX_ORDER_CARDS,
            "{body}"
        );
        assert_eq!(cards["uniqueItems"], true, "{body}");
    }
    for (schema, field) in [
        ("NewPersonBody", "employee_number"),
        ("NewPersonBody", "given_name"),
        ("NewPersonBody", "family_name"),
        ("TemplateBody", "name"),
        ("TemplateBody", "serial_prefix"),
    ] {
        let rule = resolve(&doc, &schemas[schema]["properties"][field]);
        assert!(rule["pattern"].is_string(), "{schema}.{field}: {rule}");
    }
    assert_eq!(
        schemas["TemplateBody"]["properties"]["description"]["maxLength"],
        500
    );
}

/// Every body that is neither JSON nor text (photos, previews) is a string of bytes of its
/// media type, which a client or Schemathesis can check an answer against; none is an array of
/// numbers.
#[test]
fn binary_bodies_are_strings_of_their_media_type() {
    let doc = document();
    let mut binary = Vec::new();
    for (method, path, op) in operations(&doc) {
        let mut contents: Vec<(String, &Value)> = Vec::new();
        if let Some(request) = op["requestBody"]["content"].as_object() {
            contents.extend(request.iter().map(|(m, c)| (format!("{m} request"), c)));
        }
        for (status, response) in op["responses"].as_object().expect("responses") {
            if let Some(content) = response["content"].as_object() {
                contents.extend(content.iter().map(|(m, c)| (format!("{m} {status}"), c)));
            }
        }
        for (what, content) in contents {
            let media = what.split(' ').next().unwrap();
            let schema = resolve(&doc, &content["schema"]);
            assert_ne!(schema["type"], "array", "{method} {path} {what}: {schema}");
            if media == "application/json" || media.starts_with("text/") {
                continue;
            }
            assert_eq!(schema["type"], "string", "{method} {path} {what}: {schema}");
            assert_eq!(
                schema["format"], "binary",
                "{method} {path} {what}: {schema}"
            );
            assert_eq!(
                schema["contentMediaType"], media,
                "{method} {path} {what}: {schema}"
            );
            binary.push(format!("{method} {path} {what}"));
        }
    }
    binary.sort();
    assert_eq!(
        binary,
        [
            "GET /api/v1/card-templates/{id}/preview image/png 200",
            "GET /api/v1/cards/{id}/preview image/png 200",
            "GET /api/v1/persons/{id}/photo image/jpeg 200",
            "PUT /api/v1/persons/{id}/photo image/jpeg request",
            "PUT /api/v1/persons/{id}/photo image/png request",
        ]
    );
}

/// Whether `pattern` (anchored, as the document's are) matches all of `value`.
fn pattern_matches(pattern: &str, value: &str) -> bool {
    use regex_automata::nfa::thompson::pikevm::PikeVM;
    let vm = PikeVM::new(pattern).expect("the pattern compiles");
    vm.is_match(&mut vm.create_cache(), value)
}

/// Every free-text field of a request states one rule: its length, and a pattern that bars
/// control and invisible formatting characters anywhere; the operations that take one document
/// the 422 such a character gets.
#[test]
fn every_free_text_field_states_the_rule_of_free_text() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let fields = [
        ("NewPersonBody", "given_name", false),
        ("NewPersonBody", "family_name", false),
        ("TemplateBody", "name", false),
        ("TemplateBody", "description", false),
        ("NewStationBody", "description", false),
        ("ReasonBody", "comment", true),
        ("MailTemplateBody", "subject", false),
        ("MailTemplateBody", "body", true),
        ("NewWebhookBody", "url", false),
    ];
    for (body, field, lines) in fields {
        let rule = resolve(&doc, &schemas[body]["properties"][field]);
        assert!(rule["maxLength"].is_u64(), "{body}.{field}: {rule}");
        let pattern = rule["pattern"]
            .as_str()
            .unwrap_or_else(|| panic!("{body}.{field}: {rule}"));
        let admits = |value: &str| pattern_matches(pattern, value);
        assert!(admits("front desk"), "{body}.{field}");
        assert!(admits(" front desk "), "{body}.{field}");
        for refused in [
            "\u{b}front desk",
            "front desk\u{b}",
            "\tfront",
            "front\u{0}",
            "front\u{7f}",
            "front\u{85}",
            "front\u{202A}",
            "\u{202E}front",
            "front\u{2066}desk",
            "front\u{2069}",
            "\u{200E}front",
            "front\u{200F}",
            "front\u{061C}desk",
            "front\u{2028}desk",
        ] {
            assert!(!admits(refused), "{body}.{field} admits {refused:?}");
        }
        assert_eq!(admits("front\ndesk"), lines, "{body}.{field}");
        assert_eq!(admits("front\r\ndesk"), lines, "{body}.{field}");
    }
    let bodies: Vec<String> = fields
        .iter()
        .map(|(body, _, _)| format!("#/components/schemas/{body}"))
        .collect();
    let mut takers = 0;
    for (method, path, op) in operations(&doc) {
        let schema = &op["requestBody"]["content"]["application/json"]["schema"]["$ref"];
        if schema
            .as_str()
            .is_some_and(|s| bodies.iter().any(|b| b == s))
        {
            takers += 1;
            assert!(
                statuses(&op).contains(&"422"),
                "{method} {path} takes free text but does not document 422"
            );
        }
    }
    // Persons, templates (create, update), stations, withdraw, lock, mail texts, webhooks.
    assert_eq!(takers, 8);
}

#[tokio::test]
async fn the_api_takes_what_its_document_admits_and_refuses_the_rest() {
    let app = spawn_app(Db::Sqlite).await;
    // JSON Schema's `integer` includes 2.0.
    let cards = app
        .post(
            "/api/v1/temporary-cards",
            &app.officer,
            json!({"template": "Temporary card", "amount": 2.0}),
        )
        .await;
    assert_eq!(cards.status, StatusCode::CREATED, "{cards:?}");
    let limit = app.get("/api/v1/cards?limit=1.0", &app.officer).await;
    assert_eq!(limit.status, StatusCode::OK, "{limit:?}");
    assert_eq!(limit.body["cards"].as_array().map(Vec::len), Some(1));

    // An id has one spelling; an empty cursor or state is not one of the documented values.
    let id = cards.body["cards"][0]["id"].as_str().unwrap().to_owned();
    let upper = app
        .get(
            &format!("/api/v1/cards/{}", id.to_uppercase()),
            &app.officer,
        )
        .await;
    assert_eq!(upper.status, StatusCode::BAD_REQUEST, "{upper:?}");
    for query in ["cursor=", "state=", "cursor=%20{id}"] {
        let answer = app
            .get(
                &format!("/api/v1/cards?{}", query.replace("{id}", &id)),
                &app.officer,
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{query}: {answer:?}"
        );
    }
    let side = app
        .get(&format!("/api/v1/cards/{id}/preview?side="), &app.officer)
        .await;
    assert_eq!(side.status, StatusCode::BAD_REQUEST, "{side:?}");

    // A template that does not exist is not found, in a search as anywhere else.
    let unknown = app
        .get("/api/v1/cards?template=Nothing", &app.officer)
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{unknown:?}");

    // The email limit counts what was sent, blank or not.
    let blank = app
        .post(
            "/api/v1/persons",
            &app.officer,
            json!({"employee_number": "E-9", "given_name": "Ann", "family_name": "Lee",
                   "email": " ".repeat(255)}),
        )
        .await;
    assert_eq!(blank.status, StatusCode::BAD_REQUEST, "{blank:?}");
}

/// PostgreSQL refuses a NUL character in text, so one sent anywhere must be answered before it
/// reaches a query: as the empty result it finds, or as the refusal the document states.
async fn a_nul_character_is_answered_without_a_server_error(db: Db) {
    let app = spawn_app(db).await;
    let login = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "a\u{0}b", "password": "secret-enough"})),
        )
        .await;
    assert_eq!(login.status, StatusCode::UNAUTHORIZED, "{login:?}");
    for path in ["/api/v1/persons?q=%00", "/api/v1/cards?serial=A%00"] {
        let found = app.get(path, &app.officer).await;
        assert_eq!(found.status, StatusCode::OK, "{path}: {found:?}");
    }
    for path in ["/api/v1/card-templates/%00", "/api/v1/cards?template=%00"] {
        let found = app.get(path, &app.officer).await;
        assert_eq!(found.status, StatusCode::NOT_FOUND, "{path}: {found:?}");
    }
    let request = app
        .post(
            "/api/v1/temporary-cards",
            &app.officer,
            json!({"template": "\u{0}", "amount": 1}),
        )
        .await;
    assert_eq!(request.status, StatusCode::NOT_FOUND, "{request:?}");
    let template = app
        .post(
            "/api/v1/card-templates",
            &app.policy,
            json!({"name": "Guest", "serial_prefix": "GST-", "description": "a\u{0}"}),
        )
        .await;
    assert_eq!(
        template.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{template:?}"
    );
    let script = app
        .call(
            Method::PUT,
            "/api/v1/scripts/TempCardsScriptOptions",
            Some(&app.policy),
            Some(json!({"source": "validity_days = 7; // \u{0}"})),
        )
        .await;
    assert_eq!(script.status, StatusCode::BAD_REQUEST, "{script:?}");
}

crate::on_both_databases!(a_nul_character_is_answered_without_a_server_error);

/// Every documented operation is really served (never 404 or 405 for the method).
async fn every_operation_is_served(
    app: &crate::helpers::TestApp,
    paths: &serde_json::Map<String, serde_json::Value>,
) {
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
}
