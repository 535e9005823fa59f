//! Who is calling. The router asks an `IdentityResolver` for the caller of every request:
//! locally that verifies our own HS256 bearer tokens; behind API Gateway it reads the
//! claims the JWT authorizer already verified. Either way the claim names are configurable
//! (e.g. `custom:workspace_id` for Cognito).

use std::sync::Arc;

use http::request::Parts;
use serde_json::{Map, Value};

use super::jwt;
use crate::domain::model::{Caller, WorkspaceRole};
use crate::ports::Clock;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error(transparent)]
    Token(#[from] jwt::JwtError),
    #[error("the token lacks the {0} claim")]
    MissingClaim(String),
    #[error("the {0} claim has an unsupported value")]
    BadClaim(String),
}

/// Names of the claims that carry the workspace, the workspace role and the e-mail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimNames {
    pub workspace_id: String,
    pub workspace_role: String,
    pub email: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        ClaimNames {
            workspace_id: "workspace_id".into(),
            workspace_role: "workspace_role".into(),
            email: "email".into(),
        }
    }
}

impl ClaimNames {
    /// Builds the caller from verified claims (`sub` plus the configured names).
    pub fn caller(&self, sub: &str, claims: &Map<String, Value>) -> Result<Caller, AuthError> {
        if sub.is_empty() || sub.len() > 256 {
            return Err(AuthError::BadClaim("sub".into()));
        }
        let workspace_id = match claims.get(&self.workspace_id) {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 128 => s.clone(),
            Some(_) => return Err(AuthError::BadClaim(self.workspace_id.clone())),
            None => return Err(AuthError::MissingClaim(self.workspace_id.clone())),
        };
        let workspace_role = match claims.get(&self.workspace_role) {
            None => WorkspaceRole::Member,
            Some(Value::String(s)) => WorkspaceRole::parse(s)
                .ok_or_else(|| AuthError::BadClaim(self.workspace_role.clone()))?,
            Some(_) => return Err(AuthError::BadClaim(self.workspace_role.clone())),
        };
        let email = match claims.get(&self.email) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        Ok(Caller {
            user_id: sub.to_owned(),
            workspace_id,
            workspace_role,
            email,
        })
    }
}

pub trait IdentityResolver: Send + Sync {
    fn identify(&self, parts: &Parts) -> Result<Caller, AuthError>;
}

/// Verifies the local server's own HS256 bearer tokens.
pub struct LocalJwtAuth {
    secret: Vec<u8>,
    claims: ClaimNames,
    clock: Arc<dyn Clock>,
}

/// Clock skew tolerated on `exp`/`nbf`.
const LEEWAY_SECS: i64 = 30;

impl LocalJwtAuth {
    pub fn new(secret: Vec<u8>, claims: ClaimNames, clock: Arc<dyn Clock>) -> Self {
        LocalJwtAuth {
            secret,
            claims,
            clock,
        }
    }
}

/// The token of an `Authorization: Bearer …` header.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl IdentityResolver for LocalJwtAuth {
    fn identify(&self, parts: &Parts) -> Result<Caller, AuthError> {
        let token = bearer_token(parts).ok_or(AuthError::Missing)?;
        let claims = jwt::verify(
            token,
            &self.secret,
            self.clock.now().timestamp(),
            LEEWAY_SECS,
        )?;
        self.claims.caller(&claims.sub, &claims.extra)
    }
}
