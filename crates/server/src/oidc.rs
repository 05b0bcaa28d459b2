//! Single sign-on for operators with OpenID Connect: the authorization code flow with PKCE
//! against the organisation's provider (`[oidc]`).
//!
//! A sign-in starts with a random `state`, `nonce` and PKCE verifier, which the browser keeps
//! in a short-lived cookie; the provider sends the browser back with a code, which is exchanged
//! for tokens. The ID token's signature, issuer, audience, expiry and nonce are checked; the
//! username and role claims are read from it or, when the provider keeps them for the userinfo
//! endpoint, from there (for the same subject). The provider's discovery document and keys are
//! read at each sign-in, so a key rotation at the provider needs nothing here.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;
use cardwright_domain::{Role, Roles};
use cardwright_processes::auth::ExternalIdentity;
use openidconnect::core::{CoreClient, CoreProviderMetadata, CoreResponseType};
use openidconnect::{
    AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
};
use serde_json::{Map, Value};

use crate::config::OidcConfig;

/// A sign-in under way: where to send the browser, and what the browser keeps until it is back.
#[derive(Debug, Clone)]
pub struct Start {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

/// The configured provider.
pub struct Provider {
    config: OidcConfig,
    http: openidconnect::reqwest::Client,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Provider {
    pub fn new(config: &OidcConfig) -> anyhow::Result<Self> {
        let http = openidconnect::reqwest::Client::builder()
            // A provider's answers are never followed elsewhere.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(config.timeout_secs))
            .build()
            .context("building the HTTP client for the OpenID provider")?;
        Ok(Self {
            config: config.clone(),
            http,
        })
    }

    /// The provider's name for the login page.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    async fn metadata(&self) -> anyhow::Result<CoreProviderMetadata> {
        let issuer = IssuerUrl::new(self.config.issuer.clone()).context("oidc.issuer")?;
        CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| anyhow!(cardwright_processes::report(&e)))
            .with_context(|| format!("reading the discovery document of {}", self.config.issuer))
    }

    fn client(
        &self,
        metadata: CoreProviderMetadata,
    ) -> anyhow::Result<
        openidconnect::core::CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
    > {
        let secret = Some(self.config.client_secret.clone())
            .filter(|s| !s.is_empty())
            .map(ClientSecret::new);
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            secret,
        )
        .set_redirect_uri(
            RedirectUrl::new(self.config.redirect_url.clone()).context("oidc.redirect_url")?,
        ))
    }

    /// Begins a sign-in: the provider's authorization URL with a fresh state, nonce and PKCE
    /// challenge.
    pub async fn start(&self) -> anyhow::Result<Start> {
        let client = self.client(self.metadata().await?)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        let scopes: BTreeSet<&str> = self
            .config
            .scopes
            .iter()
            .map(String::as_str)
            .filter(|s| *s != "openid")
            .collect();
        for scope in scopes {
            request = request.add_scope(Scope::new(scope.to_owned()));
        }
        let (url, state, nonce) = request.url();
        Ok(Start {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
        })
    }

    /// Ends a sign-in: exchanges the code, checks the ID token and reads who signed in and the
    /// roles their claim maps to.
    pub async fn finish(
        &self,
        code: &str,
        verifier: &str,
        nonce: &str,
    ) -> anyhow::Result<ExternalIdentity> {
        let metadata = self.metadata().await?;
        let userinfo = metadata.userinfo_endpoint().map(|u| u.url().clone());
        let client = self.client(metadata)?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .context("the provider names no token endpoint")?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| anyhow!(cardwright_processes::report(&e)))
            .context("exchanging the code at the provider's token endpoint")?;
        let id_token = openidconnect::TokenResponse::id_token(&tokens)
            .context("the provider's answer has no ID token")?;
        let verifier = client.id_token_verifier();
        let checked = id_token
            .claims(&verifier, &Nonce::new(nonce.to_owned()))
            .map_err(|e| anyhow!(cardwright_processes::report(&e)))
            .context("the ID token does not hold")?;
        let subject = checked.subject().as_str().to_owned();
        // The checked token's own claims, with any the userinfo endpoint adds.
        let mut claims = payload(&id_token.to_string())?;
        let has = |claims: &Map<String, Value>, name: &str| claims.contains_key(name);
        if !has(&claims, &self.config.username_claim) || !has(&claims, &self.config.roles_claim) {
            if let Some(url) = userinfo {
                let more = self
                    .userinfo(url.as_str(), tokens.access_token().secret())
                    .await?;
                if more.get("sub").and_then(Value::as_str) != Some(subject.as_str()) {
                    bail!("the userinfo endpoint answered for another subject");
                }
                for (key, value) in more {
                    claims.entry(key).or_insert(value);
                }
            }
        }
        let username = claims
            .get(&self.config.username_claim)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .with_context(|| {
                format!(
                    "the provider gave no '{}' claim to name the operator",
                    self.config.username_claim
                )
            })?;
        Ok(ExternalIdentity {
            subject: format!("{} {subject}", self.config.issuer),
            username,
            roles: self.roles(claims.get(&self.config.roles_claim)),
            provider: self.config.name.clone(),
        })
    }

    /// The roles the values of the role claim map to.
    fn roles(&self, claim: Option<&Value>) -> Roles {
        let values: Vec<&str> = match claim {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        values
            .into_iter()
            .filter_map(|v| self.config.roles.get(v))
            .flat_map(|names| {
                names
                    .names()
                    .into_iter()
                    .filter_map(|n| n.parse::<Role>().ok())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    async fn userinfo(&self, url: &str, access_token: &str) -> anyhow::Result<Map<String, Value>> {
        let res = self
            .http
            .get(url)
            .bearer_auth(access_token)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| anyhow!(cardwright_processes::report(&e)))
            .context("asking the provider's userinfo endpoint")?;
        let status = res.status();
        if !status.is_success() {
            bail!("the provider's userinfo endpoint answered {status}");
        }
        let body = res.bytes().await.context("reading the userinfo answer")?;
        if body.len() > 256 * 1024 {
            bail!("the provider's userinfo answer is larger than 256 KiB");
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(map)) => Ok(map),
            _ => bail!("the provider's userinfo answer is not a JSON object"),
        }
    }
}

/// The claims of a JWT whose signature was checked.
fn payload(jwt: &str) -> anyhow::Result<Map<String, Value>> {
    let part = jwt.split('.').nth(1).context("the ID token is not a JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .context("the ID token's claims are not base64url")?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => bail!("the ID token's claims are not a JSON object"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RoleNames;

    fn provider() -> Provider {
        let mut config = OidcConfig {
            issuer: "https://login.example.org".into(),
            client_id: "cardwright".into(),
            redirect_url: "https://cards.example.org/login/oidc/callback".into(),
            ..OidcConfig::default()
        };
        config
            .roles
            .insert("desk".into(), RoleNames::One("registration-officer".into()));
        config.roles.insert(
            "admins".into(),
            RoleNames::Many(vec!["policy-admin".into(), "service-admin".into()]),
        );
        Provider::new(&config).unwrap()
    }

    #[test]
    fn claim_values_map_to_roles() {
        let p = provider();
        let roles = p.roles(Some(&serde_json::json!(["desk", "admins", "other"])));
        assert_eq!(
            roles.iter().map(Role::as_str).collect::<Vec<_>>().len(),
            3,
            "{roles:?}"
        );
        assert!(p
            .roles(Some(&serde_json::json!("desk")))
            .contains(Role::RegistrationOfficer));
        assert!(p.roles(Some(&serde_json::json!(["other"]))).is_empty());
        assert!(p.roles(None).is_empty());
        assert!(p.roles(Some(&serde_json::json!(7))).is_empty());
    }

    #[test]
    fn the_claims_of_a_jwt_are_read() {
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"a","groups":["desk"]}"#);
        let read = payload(&format!("e30.{claims}.sig")).unwrap();
        assert_eq!(read["groups"], serde_json::json!(["desk"]));
        assert!(payload("not a jwt").is_err());
    }
}
