//! The caller behind API Gateway: the HTTP API's JWT authorizer verified the token and
//! passes its claims in the request context, so nothing is verified twice here. A request
//! that reaches the function without verified claims (a route without the authorizer) has no
//! caller.

use http::request::Parts;
use scheduled_runs::domain::model::Caller;
use scheduled_runs::http::auth::{AuthError, ClaimNames, IdentityResolver};
use serde_json::Value;

use crate::apigw::JwtClaims;

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
        let JwtClaims(claims) = parts
            .extensions
            .get::<JwtClaims>()
            .ok_or(AuthError::Missing)?;
        match claims.get("sub") {
            Some(Value::String(sub)) => self.names.caller(sub, claims),
            Some(_) => Err(AuthError::BadClaim("sub".into())),
            None => Err(AuthError::MissingClaim("sub".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apigw::into_request;

    fn parts_of(event: &str) -> Parts {
        let event = match serde_json::from_str(event) {
            Ok(e) => e,
            Err(e) => panic!("sample event is not JSON: {e}"),
        };
        match into_request(event) {
            Ok(r) => r.into_parts().0,
            Err(e) => panic!("sample event does not convert: {e:?}"),
        }
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

    #[test]
    fn a_sub_that_is_not_a_string_is_refused() {
        let event = include_str!("../../../events/api.json")
            .replace("\"sub\": \"demo-admin\"", "\"sub\": [\"demo-admin\"]");
        let parts = parts_of(&event);
        assert_eq!(
            GatewayClaims::new(ClaimNames::default())
                .identify(&parts)
                .err(),
            Some(AuthError::BadClaim("sub".into()))
        );
        let event =
            include_str!("../../../events/api.json").replace("\"sub\": \"demo-admin\",", "");
        assert_eq!(
            GatewayClaims::new(ClaimNames::default())
                .identify(&parts_of(&event))
                .err(),
            Some(AuthError::MissingClaim("sub".into()))
        );
    }
}
