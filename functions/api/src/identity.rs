//! The caller behind API Gateway: the HTTP API's JWT authorizer verified the token and
//! passes its claims in the request context, so nothing is verified twice here. A request
//! that reaches the function without verified claims (a route without the authorizer) has no
//! caller.

use http::request::Parts;
use lambda_http::request::RequestContext;
use scheduled_runs::domain::model::Caller;
use scheduled_runs::http::auth::{AuthError, ClaimNames, IdentityResolver};
use serde_json::{Map, Value};

pub struct GatewayClaims {
    names: ClaimNames,
}

impl GatewayClaims {
    pub fn new(names: ClaimNames) -> Self {
        GatewayClaims { names }
    }
}

impl IdentityResolver for GatewayClaims {
    fn identify(&self, parts: &Parts) -> Result<Caller, AuthError> {
        let Some(RequestContext::ApiGatewayV2(context)) = parts.extensions.get::<RequestContext>()
        else {
            return Err(AuthError::Missing);
        };
        let claims = context
            .authorizer
            .as_ref()
            .and_then(|a| a.jwt.as_ref())
            .map(|jwt| &jwt.claims)
            .ok_or(AuthError::Missing)?;
        let sub = claims
            .get("sub")
            .ok_or_else(|| AuthError::MissingClaim("sub".into()))?;
        let map: Map<String, Value> = claims
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        self.names.caller(sub, &map)
    }
}

#[cfg(test)]
mod tests {
    use lambda_http::request::from_str;

    use super::*;

    fn parts_of(event: &str) -> Parts {
        let request = match from_str(event) {
            Ok(r) => r,
            Err(e) => panic!("sample event does not parse: {e}"),
        };
        request.into_parts().0
    }

    #[test]
    fn reads_the_caller_from_the_authorizers_claims() {
        let parts = parts_of(include_str!("../../../events/api.json"));
        let caller = GatewayClaims::new(ClaimNames::default()).identify(&parts);
        let caller = match caller {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(caller.user_id, "demo-admin");
        assert_eq!(caller.workspace_id, "demo");
        assert!(caller.is_admin());
        assert_eq!(caller.email.as_deref(), Some("demo-admin@example.com"));
    }

    #[test]
    fn configured_claim_names_are_used() {
        let event = include_str!("../../../events/api.json")
            .replace("\"workspace_id\"", "\"custom:workspace_id\"");
        let parts = parts_of(&event);
        let names = ClaimNames {
            workspace_id: "custom:workspace_id".into(),
            ..ClaimNames::default()
        };
        assert!(GatewayClaims::new(names).identify(&parts).is_ok());
        assert!(
            GatewayClaims::new(ClaimNames::default())
                .identify(&parts)
                .is_err()
        );
    }

    #[test]
    fn no_authorizer_means_no_caller() {
        let event: Value = match serde_json::from_str(include_str!("../../../events/api.json")) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        let mut event = event;
        if let Some(ctx) = event["requestContext"].as_object_mut() {
            ctx.remove("authorizer");
        }
        let parts = parts_of(&event.to_string());
        assert_eq!(
            GatewayClaims::new(ClaimNames::default())
                .identify(&parts)
                .err(),
            Some(AuthError::Missing)
        );
    }
}
