//! API Gateway's HTTP API (payload format 2.0) in front of the axum router: its event
//! becomes an `http::Request`, the router's response becomes its response object.
//!
//! `lambda_http` did this before, with what the function never used besides (the REST,
//! ALB, VPC Lattice and WebSocket payloads, response bodies in legacy character sets); this
//! module took 270 KB off the binary (BENCHMARKS.md, requirement 1). The event is read from
//! its JSON by hand rather than through `aws_lambda_events`' typed request: that type
//! describes every field API Gateway may send, and deserialising it costs 90 KB more than
//! reading the eight fields used here. The path is taken as API Gateway sends it: the API is served
//! on the `$default` stage (`template.yaml`), whose paths carry no stage prefix.
//!
//! An event that is not such a request is answered with a 400 in the API's own error
//! format rather than failing the invocation: only a direct invocation can send one, and
//! it should learn what was wrong.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::BodyExt;
use scheduled_runs::http::error::ApiError;
use serde::Serialize;
use serde_json::{Map, Value};
use tower::ServiceExt;

/// The claims API Gateway's JWT authorizer verified, as a request extension for
/// `identity::GatewayClaims`. Absent when the route has no authorizer.
#[derive(Clone, Debug, Default)]
pub struct JwtClaims(pub Map<String, Value>);

/// The response object of payload format 2.0.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayResponse {
    pub status_code: u16,
    pub headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cookies: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    pub is_base64_encoded: bool,
}

/// Answers one invocation: the event through the router, or a 400 when it is not an HTTP
/// API request. Fails only when the router's response body cannot be read.
pub async fn serve(router: Router, event: Value) -> Result<GatewayResponse, axum::Error> {
    let response = match into_request(event) {
        Ok(request) => match router.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        Err(bad) => bad.into_response(),
    };
    from_response(response).await
}

fn bad_event(problem: &str) -> ApiError {
    ApiError::bad_request(format!(
        "the event is not an API Gateway HTTP API request (payload format 2.0): {problem}"
    ))
}

/// The string at `pointer`; `None` when it is absent or null.
fn take_string(event: &mut Value, pointer: &str) -> Result<Option<String>, ApiError> {
    match event.pointer_mut(pointer).map(Value::take) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad_event(&format!("{pointer} is not a string"))),
    }
}

/// The event as the router's request: method, path and query as API Gateway received them,
/// the headers with the `cookies` array folded back into one `Cookie` header, the body
/// decoded when it came base64-encoded, and the authorizer's claims as `JwtClaims`.
pub fn into_request(mut event: Value) -> Result<Request<Body>, ApiError> {
    if !event.is_object() {
        return Err(bad_event("it is not a JSON object"));
    }
    let method = take_string(&mut event, "/requestContext/http/method")?
        .ok_or_else(|| bad_event("/requestContext/http/method is missing"))?;
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| bad_event("/requestContext/http/method is not an HTTP method"))?;
    let path = match take_string(&mut event, "/rawPath")? {
        Some(path) => path,
        None => take_string(&mut event, "/requestContext/http/path")?
            .ok_or_else(|| bad_event("/rawPath is missing"))?,
    };
    if !path.starts_with('/') {
        return Err(bad_event("/rawPath does not start with '/'"));
    }
    let mut target = encode_invalid(&path, true);
    if let Some(query) = take_string(&mut event, "/rawQueryString")?.filter(|q| !q.is_empty()) {
        target.push('?');
        target.push_str(&encode_invalid(&query, false));
    }
    let uri: Uri = target
        .parse()
        .map_err(|_| bad_event("/rawPath or /rawQueryString is not a valid request target"))?;
    let mut headers = HeaderMap::new();
    match event.pointer_mut("/headers").map(Value::take) {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, value) in map {
                let (Ok(name), Some(Ok(value))) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    value.as_str().map(HeaderValue::from_str),
                ) else {
                    return Err(bad_event(&format!("the header {name:?} is not valid")));
                };
                headers.append(name, value);
            }
        }
        Some(_) => return Err(bad_event("/headers is not an object")),
    }
    match event.pointer_mut("/cookies").map(Value::take) {
        None | Some(Value::Null) => {}
        Some(Value::Array(cookies)) if !cookies.is_empty() => {
            let cookies: Option<Vec<&str>> = cookies.iter().map(Value::as_str).collect();
            let cookie = cookies
                .and_then(|c| HeaderValue::from_str(&c.join("; ")).ok())
                .ok_or_else(|| bad_event("/cookies are not valid cookies"))?;
            headers.insert(COOKIE, cookie);
        }
        Some(Value::Array(_)) => {}
        Some(_) => return Err(bad_event("/cookies is not an array")),
    }
    let base64 = match event.get("isBase64Encoded") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad_event("/isBase64Encoded is not a boolean")),
    };
    let body = match take_string(&mut event, "/body")? {
        None => Body::empty(),
        Some(body) if base64 => Body::from(
            STANDARD
                .decode(body)
                .map_err(|_| bad_event("/body is not valid base64"))?,
        ),
        Some(body) => Body::from(body),
    };
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    match event
        .pointer_mut("/requestContext/authorizer/jwt/claims")
        .map(Value::take)
    {
        None | Some(Value::Null) => {}
        Some(Value::Object(claims)) => {
            request.extensions_mut().insert(JwtClaims(claims));
        }
        Some(_) => {
            return Err(bad_event(
                "/requestContext/authorizer/jwt/claims is not an object",
            ));
        }
    }
    Ok(request)
}

/// The router's response as API Gateway expects it: `Set-Cookie` headers moved to
/// `cookies`, repeated headers joined with commas (the payload has one value per name),
/// and the body as text when it is textual and valid UTF-8, base64 otherwise.
pub async fn from_response(response: Response) -> Result<GatewayResponse, axum::Error> {
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await?.to_bytes();
    let text = |v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    let mut out = GatewayResponse {
        status_code: parts.status.as_u16(),
        ..GatewayResponse::default()
    };
    for name in parts.headers.keys() {
        let mut values = parts.headers.get_all(name).iter().map(text);
        if name == SET_COOKIE {
            out.cookies.extend(values);
        } else if let Some(first) = values.next() {
            let joined = values.fold(first, |all, next| all + ", " + &next);
            out.headers.insert(name.as_str().to_owned(), joined);
        }
    }
    if bytes.is_empty() {
        return Ok(out);
    }
    let text = if is_textual(&parts.headers) {
        String::from_utf8(bytes.to_vec()).ok()
    } else {
        None
    };
    out.is_base64_encoded = text.is_none();
    out.body = Some(text.unwrap_or_else(|| STANDARD.encode(&bytes)));
    Ok(out)
}

/// Whether the body can travel as text: no content coding, and a textual media type (or
/// none, as for a plain-text error).
fn is_textual(headers: &HeaderMap) -> bool {
    if headers.contains_key(CONTENT_ENCODING) {
        return false;
    }
    let Some(content_type) = headers.get(CONTENT_TYPE) else {
        return true;
    };
    let Ok(content_type) = content_type.to_str() else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/javascript"
                | "application/xml"
                | "application/yaml"
                | "application/x-www-form-urlencoded"
        )
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || essence.ends_with("+yaml")
}

/// Percent-encodes the bytes a URI may not contain (spaces, quotes, non-ASCII, …), leaving
/// existing escapes alone, so that a path or query API Gateway passes on unescaped still
/// reaches the router as the client sent it. In a path, `?` would start the query, so it
/// is encoded too.
fn encode_invalid(raw: &str, in_path: bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(raw.len());
    for &b in raw.as_bytes() {
        let invalid = !b.is_ascii_graphic()
            || matches!(
                b,
                b'"' | b'#' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
            )
            || (in_path && b == b'?');
        if invalid {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use axum::extract::Query;
    use axum::routing::{get, post};
    use http::StatusCode;
    use serde_json::json;

    use super::*;

    fn event(method: &str, raw_path: &str, raw_query: &str) -> Value {
        json!({
            "version": "2.0",
            "routeKey": "ANY /api/v1/{proxy+}",
            "rawPath": raw_path,
            "rawQueryString": raw_query,
            "headers": {"host": "runs.example.com"},
            "requestContext": {
                "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
                "requestId": "r-1",
                "stage": "$default",
            },
            "isBase64Encoded": false
        })
    }

    fn request(event: Value) -> Request<Body> {
        match into_request(event) {
            Ok(r) => r,
            Err(e) => panic!("the event should convert: {e:?}"),
        }
    }

    async fn body_of(request: Request<Body>) -> Vec<u8> {
        match request.into_body().collect().await {
            Ok(c) => c.to_bytes().to_vec(),
            Err(e) => panic!("{e}"),
        }
    }

    async fn gateway(response: Response) -> GatewayResponse {
        match from_response(response).await {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    /// The response as API Gateway reads it: the serialised JSON.
    async fn wire(response: Response) -> Value {
        match serde_json::to_value(gateway(response).await) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    async fn error_of(event: Value) -> (u16, Value) {
        let response = match serve(Router::new(), event).await {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert!(!response.is_base64_encoded);
        let body = response.body.unwrap_or_default();
        match serde_json::from_str(&body) {
            Ok(v) => (response.status_code, v),
            Err(e) => panic!("{e}: {body}"),
        }
    }

    #[test]
    fn method_path_and_headers_come_from_the_event() {
        let r = request(event("PATCH", "/api/v1/projects/p-1", ""));
        assert_eq!(r.method(), http::Method::PATCH);
        assert_eq!(r.uri(), "/api/v1/projects/p-1");
        assert_eq!(r.uri().query(), None);
        assert_eq!(r.headers()["host"], "runs.example.com");
        assert!(r.extensions().get::<JwtClaims>().is_none());
    }

    #[test]
    fn query_strings_keep_repeated_keys_order_and_escapes() {
        let query = "tag=a&tag=b&q=caf%C3%A9%20x&plus=1%2B1&empty=&flag";
        let r = request(event("GET", "/api/v1/projects", query));
        assert_eq!(r.uri().path(), "/api/v1/projects");
        assert_eq!(r.uri().query(), Some(query));
        // What the router's `Query` extractor makes of it.
        let pairs = match Query::<Vec<(String, String)>>::try_from_uri(r.uri()) {
            Ok(Query(p)) => p,
            Err(e) => panic!("{e}"),
        };
        let expected = [
            ("tag", "a"),
            ("tag", "b"),
            ("q", "café x"),
            ("plus", "1+1"),
            ("empty", ""),
            ("flag", ""),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(pairs, expected);
    }

    #[test]
    fn unescaped_characters_are_escaped_not_refused() {
        let r = request(event("GET", "/api/v1/a b/ü", "q=a b&x=\"ü\"#frag"));
        assert_eq!(r.uri().path(), "/api/v1/a%20b/%C3%BC");
        assert_eq!(r.uri().query(), Some("q=a%20b&x=%22%C3%BC%22%23frag"));
    }

    #[test]
    fn a_question_mark_in_the_path_stays_in_the_path() {
        let r = request(event("GET", "/api/v1/what?", "a=1"));
        assert_eq!(r.uri().path(), "/api/v1/what%3F");
        assert_eq!(r.uri().query(), Some("a=1"));
    }

    #[test]
    fn cookies_become_one_cookie_header() {
        let mut e = event("GET", "/", "");
        e["cookies"] = json!(["session=abc", "theme=dark"]);
        let r = request(e);
        assert_eq!(r.headers()[COOKIE], "session=abc; theme=dark");
        assert_eq!(r.headers().get_all(COOKIE).iter().count(), 1);
    }

    #[tokio::test]
    async fn a_base64_body_is_decoded() {
        let bytes = [0u8, 159, 146, 150, 255, b'x'];
        let mut e = event("POST", "/upload", "");
        e["body"] = json!(STANDARD.encode(bytes));
        e["isBase64Encoded"] = json!(true);
        assert_eq!(body_of(request(e)).await, bytes);
    }

    #[tokio::test]
    async fn a_text_body_is_passed_as_is() {
        let mut e = event("POST", "/upload", "");
        e["body"] = json!("{\"name\":\"é\"}");
        assert_eq!(body_of(request(e)).await, "{\"name\":\"é\"}".as_bytes());
        assert!(body_of(request(event("GET", "/", ""))).await.is_empty());
    }

    #[test]
    fn the_authorizers_claims_become_an_extension() {
        let r = request(
            match serde_json::from_str(include_str!("../../../events/api.json")) {
                Ok(v) => v,
                Err(e) => panic!("{e}"),
            },
        );
        let claims = r.extensions().get::<JwtClaims>().map(|c| &c.0);
        assert_eq!(
            claims.and_then(|c| c.get("sub")),
            Some(&json!("demo-admin"))
        );
        assert_eq!(r.uri(), "/api/v1/projects?limit=10");
    }

    #[tokio::test]
    async fn malformed_events_get_a_json_400() {
        let cases = [
            json!("not an object"),
            json!({"rawPath": "/api/v1/projects"}),
            json!({"rawPath": "/x", "requestContext": {"http": {"method": "GE T"}}}),
            json!({"rawPath": "/x", "requestContext": {"http": {}}}),
            json!({"rawPath": "no-slash", "requestContext": {"http": {"method": "GET"}}}),
            json!({"requestContext": {"http": {"method": "GET"}}}),
            json!({"rawPath": "/x", "headers": {"bad header": "v"}, "requestContext": {"http": {"method": "GET"}}}),
            json!({"rawPath": "/x", "headers": {"x": "a\nb"}, "requestContext": {"http": {"method": "GET"}}}),
            json!({"rawPath": "/x", "body": "%%%", "isBase64Encoded": true, "requestContext": {"http": {"method": "GET"}}}),
            json!({"rawPath": "/x", "cookies": ["a=b\r\nx: y"], "requestContext": {"http": {"method": "GET"}}}),
            json!({"rawPath": "/x", "requestContext": {"http": {"method": "GET"}, "authorizer": {"jwt": {"claims": ["sub"]}}}}),
            json!({"rawPath": 7, "requestContext": {"http": {"method": "GET"}}}),
            json!({"rawPath": "/x", "requestContext": {"http": {"method": 1}}}),
            json!({"rawPath": "/x", "requestContext": "GET"}),
            json!({"rawPath": "/x", "rawQueryString": ["a=1"], "requestContext": {"http": {"method": "GET"}}}),
            json!({"rawPath": "/x", "headers": ["x"], "requestContext": {"http": {"method": "GET"}}}),
            json!({"rawPath": "/x", "headers": {"x": 1}, "requestContext": {"http": {"method": "GET"}}}),
            json!({"rawPath": "/x", "cookies": "a=b", "requestContext": {"http": {"method": "GET"}}}),
            json!({"rawPath": "/x", "cookies": ["a=b", 2], "requestContext": {"http": {"method": "GET"}}}),
            json!({"rawPath": "/x", "body": {"a": 1}, "requestContext": {"http": {"method": "GET"}}}),
            json!({"rawPath": "/x", "body": "e30=", "isBase64Encoded": "yes", "requestContext": {"http": {"method": "GET"}}}),
        ];
        for case in cases {
            let (status, body) = error_of(case.clone()).await;
            assert_eq!(status, 400, "{case}");
            assert_eq!(body["error"]["code"], "BAD_REQUEST", "{case}");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("event"), "{case}: {message}");
        }
    }

    #[tokio::test]
    async fn the_router_answers_through_the_adapter() {
        let router = Router::new()
            .route("/echo", post(|body: String| async move { body }))
            .route(
                "/json",
                get(|| async { axum::Json(json!({"ok": true, "name": "é"})) }),
            );
        let mut e = event("POST", "/echo", "");
        e["body"] = json!(STANDARD.encode("hello"));
        e["isBase64Encoded"] = json!(true);
        let echoed = match serve(router.clone(), e).await {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(echoed.status_code, 200);
        assert_eq!(echoed.body.as_deref(), Some("hello"));
        assert!(!echoed.is_base64_encoded);
        let json = match serve(router.clone(), event("GET", "/json", "")).await {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert!(!json.is_base64_encoded);
        assert_eq!(json.body, Some("{\"name\":\"é\",\"ok\":true}".into()));
        let missing = match serve(router, event("GET", "/nowhere", "")).await {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(missing.status_code, 404);
        assert_eq!(missing.body, None);
    }

    #[tokio::test]
    async fn json_responses_travel_as_text() {
        let response = (
            StatusCode::CREATED,
            [(CONTENT_TYPE, "application/json; charset=utf-8")],
            "{\"a\":\"ü\"}",
        )
            .into_response();
        let out = wire(response).await;
        assert_eq!(out["statusCode"], 201);
        assert_eq!(out["isBase64Encoded"], false);
        assert_eq!(out["body"], "{\"a\":\"ü\"}");
        assert_eq!(
            out["headers"]["content-type"],
            "application/json; charset=utf-8"
        );
        for content_type in ["text/csv", "application/problem+json", "image/svg+xml"] {
            let response = ([(CONTENT_TYPE, content_type)], "a,b").into_response();
            assert_eq!(
                wire(response).await["isBase64Encoded"],
                false,
                "{content_type}"
            );
        }
    }

    #[tokio::test]
    async fn binary_responses_travel_as_base64() {
        let bytes = vec![0u8, 1, 2, 254, 255];
        let response =
            ([(CONTENT_TYPE, "application/octet-stream")], bytes.clone()).into_response();
        let out = wire(response).await;
        assert_eq!(out["isBase64Encoded"], true);
        assert_eq!(out["body"], STANDARD.encode(&bytes));

        // Compressed JSON is not text, whatever its media type says.
        let response = (
            [
                (CONTENT_TYPE, "application/json"),
                (CONTENT_ENCODING, "gzip"),
            ],
            vec![0x1f_u8, 0x8b, 8, 0],
        )
            .into_response();
        assert_eq!(wire(response).await["isBase64Encoded"], true);

        // A "textual" body that is not UTF-8 keeps its bytes.
        let response = (
            [(CONTENT_TYPE, "text/plain; charset=latin1")],
            vec![b'a', 0xe9],
        )
            .into_response();
        let out = wire(response).await;
        assert_eq!(out["isBase64Encoded"], true);
        assert_eq!(out["body"], STANDARD.encode([b'a', 0xe9]));
    }

    #[tokio::test]
    async fn set_cookie_moves_to_cookies_and_repeated_headers_are_joined() {
        let mut response = "ok".into_response();
        let headers = response.headers_mut();
        headers.append(SET_COOKIE, HeaderValue::from_static("a=1; HttpOnly"));
        headers.append(SET_COOKIE, HeaderValue::from_static("b=2"));
        headers.append("vary", HeaderValue::from_static("origin"));
        headers.append("vary", HeaderValue::from_static("accept"));
        let out = wire(response).await;
        assert_eq!(out["cookies"], json!(["a=1; HttpOnly", "b=2"]));
        assert!(out["headers"].get("set-cookie").is_none());
        assert_eq!(out["headers"]["vary"], "origin, accept");
        assert_eq!(out["body"], "ok");
    }

    #[tokio::test]
    async fn an_empty_body_is_absent() {
        let out = wire(StatusCode::NO_CONTENT.into_response()).await;
        assert_eq!(out["statusCode"], 204);
        assert!(out.get("body").is_none());
        assert_eq!(out["isBase64Encoded"], false);
    }
}
