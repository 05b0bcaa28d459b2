//! The whole application: the REST API, the operator web UI and the server's own documents
//! (`/healthz`, `/metrics`, `/pki/*`), with the layers every request passes and the answer to a
//! path that names nothing.

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use cardwright_processes::Context;

use crate::state::{AppState, HttpOptions, Metrics, PHOTO_BODY_LIMIT};
use crate::{error, http, layers, ui};

/// The application's router, ready to serve.
pub fn router(ctx: Context, options: &HttpOptions) -> anyhow::Result<Router> {
    let (api, spec) = http::api().split_for_parts();
    let oidc = if options.oidc.enabled() {
        Some(Arc::new(crate::oidc::Provider::new(&options.oidc)?))
    } else {
        None
    };
    let state = AppState {
        ctx,
        metrics: Arc::new(Metrics::default()),
        openapi: Arc::new(
            spec.to_pretty_json()
                .expect("the OpenAPI document serialises"),
        ),
        metrics_token: Some(options.metrics_token.as_str())
            .filter(|t| !t.is_empty())
            .map(Arc::from),
        oidc,
        shutdown: options.shutdown.clone(),
        station_certificates: Arc::default(),
        station_touched: Arc::default(),
    };
    Ok(api
        .merge(ui::router())
        .route("/api/v1/openapi.json", get(http::openapi::serve))
        .route("/healthz", get(http::metrics::healthz))
        .route("/pki/ca.pem", get(http::pki::ca_pem))
        .route("/pki/crl", get(http::pki::crl))
        .route("/pki/crl/{version}", get(http::pki::previous_crl))
        .route("/metrics", get(http::metrics::metrics))
        .merge(http::stations::agent_routes())
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(PHOTO_BODY_LIMIT))
        .layer(axum::middleware::from_fn(layers::read_body))
        .layer(axum::middleware::from_fn(layers::response_headers))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            layers::observe,
        ))
        .with_state(state))
}

/// A path that names nothing: the API's JSON error under `/api/` and for the server's own
/// documents, the UI's page (with its security headers) for anything a browser may have asked.
async fn not_found(
    state: axum::extract::State<AppState>,
    parts: axum::http::request::Parts,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let path = parts.uri.path();
    if path.starts_with("/api/")
        || path.starts_with("/pki/")
        || path.starts_with("/station/")
        || matches!(path, "/api" | "/metrics" | "/healthz")
    {
        return error::not_found().into_response();
    }
    let mut res = ui::no_such_page(state, parts).await;
    ui::add_security_headers(res.headers_mut());
    res
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// The Rust files below `dir`, in the workspace's `crates` folder.
    fn sources(dir: &str) -> Vec<(PathBuf, String)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
        let mut folders = vec![root];
        let mut files = Vec::new();
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).unwrap().map(Result::unwrap) {
                let path = entry.path();
                if path.is_dir() {
                    folders.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    files.push((path, text));
                }
            }
        }
        assert!(!files.is_empty(), "no sources below {dir}");
        files
    }

    fn none_uses(dir: &str, forbidden: &[&str]) {
        for (path, text) in sources(dir) {
            for word in forbidden {
                assert!(
                    !text.contains(word),
                    "{} uses {word}, against the direction of the layers",
                    path.display()
                );
            }
        }
    }

    /// The modules that lean on each other in one direction only: the UI and the API meet in
    /// this module, the processes' services know nothing of the context or the processes, and
    /// the domain's error knows nothing of the catalog.
    #[test]
    fn modules_depend_one_way() {
        none_uses("server/src/ui", &["crate::http"]);
        none_uses("server/src/http", &["crate::ui"]);
        none_uses(
            "processes/src/services",
            &[
                "crate::Context",
                "crate::context",
                "crate::temp_cards",
                "crate::pki",
            ],
        );
        let error = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../domain/src/error.rs"),
        )
        .unwrap();
        assert!(
            !error.contains("temp_cards"),
            "the domain's error names the catalog"
        );
    }
}
