//! HS256 JSON Web Tokens for the local server: the operator CLI mints them, the router
//! verifies them. In AWS the API Gateway JWT authorizer verifies tokens instead and the
//! router reads the claims it passes on.
//!
//! Deliberately narrow: only `HS256` is accepted (so `alg: none` and algorithm confusion
//! are impossible), the signature is checked in constant time before the claims are read,
//! and `exp` is required.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a token was refused. The HTTP layer answers 401 for all of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is not a JWT")]
    Malformed,
    #[error("only HS256 tokens are accepted")]
    UnsupportedAlgorithm,
    #[error("the token signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// The claims scheduled-runs reads; the workspace claims' names are configurable, so they
/// stay in the free-form map.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Signs `claims` with HS256.
pub fn sign(claims: &Claims, secret: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    // Serialising a struct of strings, numbers and a JSON map cannot fail.
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signing_input = format!("{header}.{payload}");
    let signature = URL_SAFE_NO_PAD.encode(
        mac(secret, signing_input.as_bytes())
            .finalize()
            .into_bytes(),
    );
    format!("{signing_input}.{signature}")
}

fn mac(secret: &[u8], data: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(data);
    mac
}

/// Verifies signature, algorithm and time claims (`now` in Unix seconds, with `leeway`
/// seconds of clock skew) and returns the claims.
pub fn verify(token: &str, secret: &[u8], now: i64, leeway: i64) -> Result<Claims, JwtError> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header: Header = URL_SAFE_NO_PAD
        .decode(header_b64)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or(JwtError::Malformed)?;
    if header.alg != "HS256" {
        return Err(JwtError::UnsupportedAlgorithm);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| JwtError::Malformed)?;
    let signing_input_len = header_b64.len() + 1 + payload_b64.len();
    mac(secret, &token.as_bytes()[..signing_input_len])
        .verify_slice(&signature)
        .map_err(|_| JwtError::BadSignature)?;
    let claims: Claims = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .ok()
        .and_then(|p| serde_json::from_slice(&p).ok())
        .ok_or(JwtError::Malformed)?;
    if claims.exp + leeway <= now {
        return Err(JwtError::Expired);
    }
    if claims.nbf.is_some_and(|nbf| nbf - leeway > now) {
        return Err(JwtError::NotYetValid);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        let mut extra = serde_json::Map::new();
        extra.insert("workspace_id".into(), "ws".into());
        Claims {
            sub: "alice".into(),
            exp,
            iat: None,
            nbf: None,
            extra,
        }
    }

    #[test]
    fn round_trip() {
        let token = sign(&claims(2_000), b"secret");
        assert_eq!(verify(&token, b"secret", 1_000, 0), Ok(claims(2_000)));
    }

    #[test]
    fn refuses_wrong_secret_expired_and_garbage() {
        let token = sign(&claims(2_000), b"secret");
        assert_eq!(
            verify(&token, b"other", 1_000, 0),
            Err(JwtError::BadSignature)
        );
        assert_eq!(verify(&token, b"secret", 2_000, 0), Err(JwtError::Expired));
        assert_eq!(verify("a.b", b"secret", 0, 0), Err(JwtError::Malformed));
        assert_eq!(verify("a.b.c.d", b"secret", 0, 0), Err(JwtError::Malformed));
        assert_eq!(
            verify("%%.%%.%%", b"secret", 0, 0),
            Err(JwtError::Malformed)
        );
    }

    #[test]
    fn refuses_alg_none_even_without_signature() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(2_000)).unwrap_or_default());
        let token = format!("{header}.{payload}.");
        assert_eq!(
            verify(&token, b"secret", 1_000, 0),
            Err(JwtError::UnsupportedAlgorithm)
        );
    }

    #[test]
    fn refuses_tampered_payload() {
        let token = sign(&claims(2_000), b"secret");
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(9_000)).unwrap_or_default());
        parts[1] = &forged;
        assert_eq!(
            verify(&parts.join("."), b"secret", 1_000, 0),
            Err(JwtError::BadSignature)
        );
    }
}
