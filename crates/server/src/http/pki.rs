//! The certificate authority's public documents, without login: `/pki/ca.pem`, `/pki/crl` and
//! the lists of earlier CAs, `/pki/crl/{version}`.

use axum::extract::{Path, State};
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

/// The revocation list (DER) of an earlier CA, as `cardwright pki show` numbers it.
pub async fn previous_crl(
    State(state): State<AppState>,
    Path(version): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let version: i64 = version.parse().ok().filter(|v| *v > 0).ok_or_else(|| {
        cardwright_processes::ProcessError::NotFound(format!("no CA '{version}'"))
    })?;
    let der = pki::previous_crl(&state.ctx, version).await?;
    Ok(([(CONTENT_TYPE, "application/pkix-crl")], der))
}
