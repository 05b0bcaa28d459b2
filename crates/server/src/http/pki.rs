//! The certificate authority's public documents, without login: `/pki/ca.pem` and `/pki/crl`.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use cardwright_processes::pki;

use crate::error::ApiError;
use crate::state::AppState;

/// The CA certificate (PEM).
pub async fn ca_pem(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let pem = pki::ca_pem(&state.ctx)?;
    Ok(([(CONTENT_TYPE, "application/x-pem-file")], pem))
}

/// The revocation list (DER), current as of this request.
pub async fn crl(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let der = pki::crl(&state.ctx).await?;
    Ok(([(CONTENT_TYPE, "application/pkix-crl")], der))
}
