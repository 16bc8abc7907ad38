//! JWT verification (feature `jwt`): bearer tokens checked with the configured key,
//! their user and tier claims read.

use super::config::{ConfigError, JwtConfig, error};
use http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// How to verify JWTs.
#[derive(Clone)]
pub struct JwtVerifier {
    pub(crate) key: DecodingKey,
    pub(crate) validation: Validation,
    pub(crate) user_claim: String,
    pub(crate) tier_claim: String,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("user_claim", &self.user_claim)
            .field("tier_claim", &self.tier_claim)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// The verified bearer token's user and tier claims.
    pub(crate) fn verify(&self, headers: &HeaderMap) -> Option<(Option<String>, Option<String>)> {
        let jwt = self;
        let (scheme, token) = headers
            .get(http::header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .trim()
            .split_once(' ')?;
        // The scheme is case-insensitive (RFC 9110, section 11.1).
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let token = token.trim();
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &jwt.key,
            &jwt.validation,
        )
        .ok()?;
        // jsonwebtoken checks `exp` and `nbf` only when they are numbers: a token whose
        // times cannot be read is no token.
        let unreadable_time = ["exp", "nbf"]
            .iter()
            .any(|name| data.claims.get(*name).is_some_and(|v| !v.is_number()));
        if unreadable_time {
            return None;
        }
        // An empty (or blank) claim names nobody: it would make every such token one user.
        let claim = |name: &str| match data.claims.get(name)? {
            serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        Some((claim(&jwt.user_claim), claim(&jwt.tier_claim)))
    }
}

pub(crate) fn compile(config: &JwtConfig) -> Result<JwtVerifier, ConfigError> {
    let field = "identity.jwt";
    let name = config.algorithm.as_deref().unwrap_or("HS256");
    let algorithm: Algorithm = name.parse().map_err(|_| {
        error(
            format!("{field}.algorithm"),
            format!("`{name}` is not a JWT algorithm"),
        )
    })?;
    let key = match algorithm {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            let secret = match (&config.secret, &config.secret_env) {
                (Some(secret), None) => secret.clone(),
                (None, Some(var)) => std::env::var(var).map_err(|_| {
                    error(format!("{field}.secret_env"), format!("`{var}` is not set"))
                })?,
                _ => {
                    return Err(error(
                        format!("{field}.secret"),
                        "give exactly one of secret and secret_env for HMAC algorithms",
                    ));
                }
            };
            if secret.len() < 16 {
                return Err(error(
                    format!("{field}.secret"),
                    "must be at least 16 bytes",
                ));
            }
            DecodingKey::from_secret(secret.as_bytes())
        }
        _ => {
            let file = config.public_key_file.as_ref().ok_or_else(|| {
                error(
                    format!("{field}.public_key_file"),
                    format!("is required by {name}"),
                )
            })?;
            let pem = std::fs::read(file)
                .map_err(|e| error(format!("{field}.public_key_file"), format!("{file}: {e}")))?;
            let parsed = match algorithm {
                Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
                Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
                _ => DecodingKey::from_rsa_pem(&pem),
            };
            parsed.map_err(|e| error(format!("{field}.public_key_file"), e))?
        }
    };
    let mut validation = Validation::new(algorithm);
    // `exp` and `nbf` are checked when present (60 s leeway for clock skew); `iss` and
    // `aud` are required when configured: a token that omits them was not issued for us.
    validation.required_spec_claims.clear();
    validation.validate_nbf = true;
    if let Some(issuer) = &config.issuer {
        validation.set_issuer(&[issuer]);
        validation.required_spec_claims.insert("iss".to_owned());
    }
    match &config.audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            validation.required_spec_claims.insert("aud".to_owned());
        }
        None => validation.validate_aud = false,
    }
    Ok(JwtVerifier {
        key,
        validation,
        user_claim: config
            .user_claim
            .clone()
            .unwrap_or_else(|| "sub".to_owned()),
        tier_claim: config
            .tier_claim
            .clone()
            .unwrap_or_else(|| "tier".to_owned()),
    })
}
