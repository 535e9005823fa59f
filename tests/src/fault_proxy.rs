//! A fault-injecting HTTP proxy for the AWS fault tests (`tests/tests/aws_faults.rs`,
//! RELIABILITY.md §3). It listens on a loopback port, forwards every request to DynamoDB
//! Local or moto's server, and answers chosen requests with the faults the real services
//! produce: throttling, 5xx, an answer that never comes, a request that was applied but
//! whose answer is lost, and a conditional-check failure. With no rule armed it only
//! forwards, counting the requests per operation (`seen_all`): the warm-handler benchmark
//! (`benches/benches/warm_handlers.rs`) counts each invocation's AWS requests that way.
//!
//! It stands in front of the real emulators instead of mocking the SDK: the SDK clients
//! under test are the deployment's own (`aws_deployment::Aws`), built with their real
//! retry and timeout configuration, and only their endpoints point here — the same
//! `AWS_ENDPOINT_URL_<SERVICE>` settings the other AWS tests use. No SDK `test-util`
//! feature is needed, so tests and function binaries share one SDK build.
//!
//! Requests are recognised by operation, `service:Operation`: the service is the SigV4
//! credential scope's, the operation comes from `X-Amz-Target` (DynamoDB, SQS — AWS JSON
//! protocols), the form's `Action` (SNS — the query protocol) or the method and path
//! (EventBridge Scheduler, SES v2 — REST-JSON). A rule applies a fault to a number of matching
//! requests, optionally after letting some pass and optionally only to requests whose path
//! or body contains a text (a workspace id, so that cases can run side by side), and
//! reports what it did: faults injected, held requests the client gave up on.
//!
//! The HTTP/1.1 server side is written by hand on the socket, because the faults need what a
//! server framework hides: holding a request until the client gives up (and noticing that
//! it did), and closing a connection without an answer. The upstream side is hyper's client.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long a held request is kept at most. Far longer than any client's attempt timeout,
/// so a held request ends because the client gave up (which the proxy counts); a client
/// without a timeout would wait this long and the count would say so.
const HOLD_LIMIT: Duration = Duration::from_secs(30);
/// Request heads longer than this are refused (the SDK's are a few hundred bytes).
const MAX_HEAD: usize = 64 * 1024;

/// What the proxy does to a matching request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// The service's throttling error, not forwarded. DynamoDB alternates
    /// `ThrottlingException` and `ProvisionedThroughputExceededException` (both 400),
    /// SQS answers `RequestThrottled`, SNS `Throttling` (400), Scheduler
    /// `ThrottlingException` and SES `TooManyRequestsException` (429).
    Throttle,
    /// A server error, not forwarded: 500 (`InternalServerError` and the like) and 503
    /// (`ServiceUnavailable`) alternately.
    ServerError,
    /// Not forwarded, no answer: the connection is held until the client gives up.
    Timeout,
    /// Forwarded (the request takes effect), then answered 500 instead of its answer.
    AppliedThen500,
    /// Forwarded, then held without an answer until the client gives up.
    AppliedThenTimeout,
    /// Forwarded, then the connection is closed without an answer.
    AppliedThenDrop,
    /// A DynamoDB conditional write refused as if another writer had changed the item:
    /// `ConditionalCheckFailedException`, or for `TransactWriteItems` a
    /// `TransactionCanceledException` whose first item failed its condition. Not forwarded.
    ConditionFailed,
}

impl Fault {
    /// Whether the request reaches the emulator.
    pub fn applies(self) -> bool {
        matches!(
            self,
            Fault::AppliedThen500 | Fault::AppliedThenTimeout | Fault::AppliedThenDrop
        )
    }
}

/// Which requests get a fault: those of one operation, optionally only those whose path
/// or body contains a text (so that cases running side by side each get their own
/// faults), from the `skip + 1`-th match on, `times` of them.
#[derive(Clone, Debug)]
pub struct Rule {
    operation: String,
    fault: Fault,
    times: u32,
    skip: u32,
    needle: Option<String>,
}

impl Rule {
    /// `fault` on the next `times` requests of `operation` (`service:Operation`, e.g.
    /// `dynamodb:TransactWriteItems`, `scheduler:CreateSchedule`).
    pub fn new(operation: &str, fault: Fault, times: u32) -> Rule {
        Rule {
            operation: operation.to_owned(),
            fault,
            times,
            skip: 0,
            needle: None,
        }
    }

    /// Lets the first `skip` matching requests through.
    pub fn after(mut self, skip: u32) -> Rule {
        self.skip = skip;
        self
    }

    /// Only requests whose path or body contains `needle`.
    pub fn containing(mut self, needle: &str) -> Rule {
        self.needle = Some(needle.to_owned());
        self
    }
}

/// What a rule did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleReport {
    /// Faults injected.
    pub injected: u32,
    /// Held requests whose client closed the connection (gave up: its timeout fired).
    pub abandoned: u32,
    /// Held requests still open when `HOLD_LIMIT` ran out (a client without a timeout).
    pub held_to_the_limit: u32,
}

/// A rule handed out by [`FaultProxy::arm`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleId(usize);

struct Armed {
    rule: Rule,
    active: bool,
    matched: u32,
    report: RuleReport,
}

#[derive(Default)]
struct State {
    rules: Vec<Armed>,
    /// Faults injected so far, per kind (for the alternating answers).
    injected: BTreeMap<Fault, usize>,
    /// Requests per operation.
    seen: BTreeMap<String, u64>,
    /// Requests that could not be parsed or forwarded.
    broken: Vec<String>,
}

struct Shared {
    upstream: String,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts the request and returns the fault to inject, with how many faults of that
    /// kind came before it and the rule that asked for it.
    fn decide(&self, operation: &str, request: &Request) -> Option<(Fault, usize, usize)> {
        let mut state = self.lock();
        *state.seen.entry(operation.to_owned()).or_default() += 1;
        let (index, armed) = state.rules.iter_mut().enumerate().find(|(_, a)| {
            a.active
                && a.rule.operation == operation
                && a.matched < a.rule.skip + a.rule.times
                && a.rule.needle.as_deref().is_none_or(|n| request.contains(n))
        })?;
        armed.matched += 1;
        if armed.matched <= armed.rule.skip {
            return None;
        }
        armed.report.injected += 1;
        let fault = armed.rule.fault;
        let count = state.injected.entry(fault).or_default();
        let before = *count;
        *count += 1;
        Some((fault, before, index))
    }

    fn held(&self, rule: usize, gave_up: bool) {
        let mut state = self.lock();
        if let Some(armed) = state.rules.get_mut(rule) {
            if gave_up {
                armed.report.abandoned += 1;
            } else {
                armed.report.held_to_the_limit += 1;
            }
        }
    }
}

/// The proxy; stops listening when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// A proxy on a free loopback port in front of `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> FaultProxy {
        let upstream = upstream
            .trim_end_matches('/')
            .strip_prefix("http://")
            .expect("the emulators listen on plain http")
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port for the fault proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let shared = Arc::new(Shared {
            upstream,
            state: Mutex::new(State::default()),
        });
        let accepting = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                // An answer is written in two parts (head, body): with Nagle's algorithm the
                // body would wait for the client's delayed ACK of the head, 40 ms a request.
                let _ = stream.set_nodelay(true);
                let shared = accepting.clone();
                tokio::spawn(async move { serve(stream, shared).await });
            }
        });
        FaultProxy { addr, shared, task }
    }

    /// The endpoint to give the SDK clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts applying `rule`; rules are tried in the order they were armed.
    pub fn arm(&self, rule: Rule) -> RuleId {
        let mut state = self.shared.lock();
        state.rules.push(Armed {
            rule,
            active: true,
            matched: 0,
            report: RuleReport::default(),
        });
        RuleId(state.rules.len() - 1)
    }

    /// Stops applying the rule (also when it is not used up) and reports what it did.
    pub fn disarm(&self, id: RuleId) -> RuleReport {
        let mut state = self.shared.lock();
        match state.rules.get_mut(id.0) {
            Some(armed) => {
                armed.active = false;
                armed.report
            }
            None => RuleReport::default(),
        }
    }

    /// What the rule did so far.
    pub fn report(&self, id: RuleId) -> RuleReport {
        self.shared
            .lock()
            .rules
            .get(id.0)
            .map(|a| a.report)
            .unwrap_or_default()
    }

    /// Requests of `operation` seen so far.
    pub fn seen(&self, operation: &str) -> u64 {
        self.shared.lock().seen.get(operation).copied().unwrap_or(0)
    }

    /// Requests seen so far, per operation: a snapshot, so that the difference of two is
    /// what happened between them (the warm-handler benchmark counts each invocation's).
    pub fn seen_all(&self) -> BTreeMap<String, u64> {
        self.shared.lock().seen.clone()
    }

    /// Requests the proxy could not parse or forward (a test expects none).
    pub fn broken(&self) -> Vec<String> {
        self.shared.lock().broken.clone()
    }
}

/// One request as read from the socket.
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn contains(&self, needle: &str) -> bool {
        self.target.contains(needle) || String::from_utf8_lossy(&self.body).contains(needle)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One answer to write back.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut buffer = Vec::new();
    loop {
        let request = match read_request(&mut stream, &mut buffer).await {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(e) => {
                shared.lock().broken.push(e);
                return;
            }
        };
        let operation = operation(&request);
        let answer = match shared.decide(&operation, &request) {
            None => match forward(&shared.upstream, &request).await {
                Ok(answer) => answer,
                Err(e) => {
                    shared.lock().broken.push(format!("{operation}: {e}"));
                    return;
                }
            },
            Some((fault, before, rule)) => {
                if fault.applies()
                    && let Err(e) = forward(&shared.upstream, &request).await
                {
                    shared.lock().broken.push(format!("{operation}: {e}"));
                    return;
                }
                match fault {
                    Fault::Timeout | Fault::AppliedThenTimeout => {
                        let gave_up = hold(&mut stream).await;
                        shared.held(rule, gave_up);
                        return;
                    }
                    Fault::AppliedThenDrop => return,
                    Fault::AppliedThen500 => error_answer(&operation, 500, before),
                    Fault::Throttle => error_answer(&operation, 429, before),
                    Fault::ServerError => {
                        let status = if before.is_multiple_of(2) { 500 } else { 503 };
                        error_answer(&operation, status, before)
                    }
                    Fault::ConditionFailed => condition_failed(&request),
                }
            }
        };
        if write_answer(&mut stream, &answer).await.is_err() {
            return;
        }
    }
}

/// Reads one request (head and `Content-Length` body); `None` when the client closed the
/// connection between requests.
async fn read_request(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
) -> Result<Option<Request>, String> {
    let head_end = loop {
        if let Some(at) = find(buffer, b"\r\n\r\n") {
            break at;
        }
        if buffer.len() > MAX_HEAD {
            return Err("request head too long".into());
        }
        let mut chunk = [0u8; 8192];
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return if buffer.is_empty() {
                Ok(None)
            } else {
                Err("connection closed inside a request head".into())
            };
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(format!("bad request line {request_line:?}"));
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && !v.is_empty())
    {
        return Err("chunked request bodies are not supported".into());
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let body_start = head_end + 4;
    while buffer.len() < body_start + length {
        let mut chunk = [0u8; 8192];
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed inside a request body".into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = buffer[body_start..body_start + length].to_vec();
    buffer.drain(..body_start + length);
    Ok(Some(Request {
        method: method.to_owned(),
        target: target.to_owned(),
        headers,
        body,
    }))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Keeps the connection open without answering; `true` when the client closed it (gave
/// up), `false` when `HOLD_LIMIT` ran out first.
async fn hold(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    let deadline = tokio::time::sleep(HOLD_LIMIT);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            read = stream.read(&mut byte) => match read {
                Ok(0) | Err(_) => return true,
                // Nothing more is expected from a client waiting for its answer.
                Ok(_) => continue,
            },
            () = &mut deadline => return false,
        }
    }
}

/// The SigV4 credential scope's service (`Credential=AKID/20260101/us-east-1/dynamodb/…`).
fn service(request: &Request) -> String {
    request
        .header("authorization")
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|credential| credential.split('/').nth(3))
        .unwrap_or("unknown")
        .to_owned()
}

/// `service:Operation` of a request.
fn operation(request: &Request) -> String {
    let service = service(request);
    if let Some(target) = request.header("x-amz-target") {
        let name = target.rsplit('.').next().unwrap_or(target);
        return format!("{service}:{name}");
    }
    let form = String::from_utf8_lossy(&request.body);
    if let Some(action) = form
        .split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
    {
        return format!("{service}:{action}");
    }
    let path = request.target.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let name = match (request.method.as_str(), segments.as_slice()) {
        ("POST", ["schedules", _]) => "CreateSchedule",
        ("PUT", ["schedules", _]) => "UpdateSchedule",
        ("DELETE", ["schedules", _]) => "DeleteSchedule",
        ("GET", ["schedules", _]) => "GetSchedule",
        ("GET", ["schedules"]) => "ListSchedules",
        ("GET", ["schedule-groups"]) => "ListScheduleGroups",
        ("GET", ["schedule-groups", _]) => "GetScheduleGroup",
        ("POST", ["schedule-groups", _]) => "CreateScheduleGroup",
        ("DELETE", ["schedule-groups", _]) => "DeleteScheduleGroup",
        // SES v2 (REST-JSON).
        ("POST", ["v2", "email", "outbound-emails"]) => "SendEmail",
        _ => "Unknown",
    };
    format!("{service}:{name}")
}

/// Sends the request to the emulator and returns its answer.
async fn forward(upstream: &str, request: &Request) -> Result<Answer, String> {
    let stream = TcpStream::connect(upstream)
        .await
        .map_err(|e| format!("connect upstream: {e}"))?;
    // As on the client side: no request waits for a delayed ACK.
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
    let driver = tokio::spawn(connection);
    let mut builder = http::Request::builder()
        .method(request.method.as_str())
        .uri(request.target.as_str());
    for (name, value) in &request.headers {
        // The request is forwarded as it was signed, its Host included.
        if !name.eq_ignore_ascii_case("connection") {
            builder = builder.header(name.as_str(), value.as_str());
        }
    }
    let outgoing = builder
        .body(Full::new(Bytes::from(request.body.clone())))
        .map_err(|e| format!("request: {e}"))?;
    let response = sender
        .send_request(outgoing)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("answer body: {e}"))?
        .to_bytes()
        .to_vec();
    driver.abort();
    Ok(Answer {
        status,
        headers,
        body,
    })
}

async fn write_answer(stream: &mut TcpStream, answer: &Answer) -> std::io::Result<()> {
    let reason = http::StatusCode::from_u16(answer.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown");
    let mut out = format!("HTTP/1.1 {} {reason}\r\n", answer.status);
    for (name, value) in &answer.headers {
        let skip = ["content-length", "transfer-encoding", "connection"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h));
        if !skip {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    out.push_str(&format!("content-length: {}\r\n\r\n", answer.body.len()));
    stream.write_all(out.as_bytes()).await?;
    stream.write_all(&answer.body).await?;
    stream.flush().await
}

fn json_answer(status: u16, content_type: &str, extra: &[(&str, String)], body: Value) -> Answer {
    let mut headers = vec![
        ("content-type".to_owned(), content_type.to_owned()),
        (
            "x-amzn-requestid".to_owned(),
            uuid::Uuid::new_v4().to_string(),
        ),
    ];
    headers.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    Answer {
        status,
        headers,
        body: body.to_string().into_bytes(),
    }
}

/// The error the real service answers for `status` (429: its throttling error), in its
/// protocol's shape.
fn error_answer(operation: &str, status: u16, before: usize) -> Answer {
    let service = operation.split(':').next().unwrap_or_default();
    match service {
        "dynamodb" => {
            let (status, code, message) = match status {
                429 if before.is_multiple_of(2) => (
                    400,
                    "ThrottlingException",
                    "Throughput exceeds the current capacity for one or more global secondary indexes.",
                ),
                429 => (
                    400,
                    "ProvisionedThroughputExceededException",
                    "The level of configured provisioned throughput for the table was exceeded.",
                ),
                503 => (503, "ServiceUnavailable", "Service unavailable"),
                _ => (500, "InternalServerError", "Internal server error"),
            };
            json_answer(
                status,
                "application/x-amz-json-1.0",
                &[],
                json!({
                    "__type": format!("com.amazonaws.dynamodb.v20120810#{code}"),
                    "message": message,
                }),
            )
        }
        "sqs" => {
            let (status, code, fault) = match status {
                429 => (400, "RequestThrottled", "Sender"),
                503 => (503, "ServiceUnavailable", "Receiver"),
                _ => (500, "InternalError", "Receiver"),
            };
            json_answer(
                status,
                "application/x-amz-json-1.0",
                &[("x-amzn-query-error", format!("{code};{fault}"))],
                json!({"__type": format!("com.amazonaws.sqs#{code}"), "message": code}),
            )
        }
        "scheduler" | "ses" => {
            let (code, message) = match (service, status) {
                ("ses", 429) => ("TooManyRequestsException", "Maximum sending rate exceeded"),
                (_, 429) => ("ThrottlingException", "Rate exceeded"),
                (_, 503) => ("ServiceUnavailableException", "Service unavailable"),
                _ => ("InternalServerException", "Internal server error"),
            };
            json_answer(
                status,
                "application/json",
                &[("x-amzn-errortype", code.to_owned())],
                json!({ "Message": message }),
            )
        }
        _ => {
            // The query protocol (SNS).
            let (status, code, kind) = match status {
                429 => (400, "Throttling", "Sender"),
                503 => (503, "ServiceUnavailable", "Receiver"),
                _ => (500, "InternalError", "Receiver"),
            };
            Answer {
                status,
                headers: vec![("content-type".to_owned(), "text/xml".to_owned())],
                body: format!(
                    "<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code>\
                     <Message>{code}</Message></Error>\
                     <RequestId>{}</RequestId></ErrorResponse>",
                    uuid::Uuid::new_v4()
                )
                .into_bytes(),
            }
        }
    }
}

/// DynamoDB's refusal of a conditional write, as if another writer changed the item first.
fn condition_failed(request: &Request) -> Answer {
    let target = request.header("x-amz-target").unwrap_or_default();
    if target.ends_with("TransactWriteItems") {
        let items = serde_json::from_slice::<Value>(&request.body)
            .ok()
            .and_then(|v| v["TransactItems"].as_array().map(Vec::len))
            .unwrap_or(1);
        let reasons: Vec<Value> = (0..items)
            .map(|i| {
                if i == 0 {
                    json!({"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"})
                } else {
                    json!({"Code": "None"})
                }
            })
            .collect();
        let codes: Vec<&str> = (0..items)
            .map(|i| {
                if i == 0 {
                    "ConditionalCheckFailed"
                } else {
                    "None"
                }
            })
            .collect();
        return json_answer(
            400,
            "application/x-amz-json-1.0",
            &[],
            json!({
                "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                "Message": format!(
                    "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
                    codes.join(", ")
                ),
                "CancellationReasons": reasons,
            }),
        );
    }
    json_answer(
        400,
        "application/x-amz-json-1.0",
        &[],
        json!({
            "__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
            "message": "The conditional request failed",
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Request {
        Request {
            method: method.into(),
            target: target.into(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn auth(service: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/aws4_request, \
             SignedHeaders=host, Signature=0"
        )
    }

    #[test]
    fn operations_are_named_by_protocol() {
        let dynamo = auth("dynamodb");
        let r = request(
            "POST",
            "/",
            &[
                ("Authorization", &dynamo),
                ("X-Amz-Target", "DynamoDB_20120810.TransactWriteItems"),
            ],
            "{}",
        );
        assert_eq!(operation(&r), "dynamodb:TransactWriteItems");
        let sqs = auth("sqs");
        let r = request(
            "POST",
            "/",
            &[
                ("Authorization", &sqs),
                ("X-Amz-Target", "AmazonSQS.SendMessage"),
            ],
            "{}",
        );
        assert_eq!(operation(&r), "sqs:SendMessage");
        let sns = auth("sns");
        let r = request(
            "POST",
            "/",
            &[("Authorization", &sns)],
            "Action=Publish&Version=2010-03-31&TopicArn=x",
        );
        assert_eq!(operation(&r), "sns:Publish");
        let scheduler = auth("scheduler");
        for (method, path, name) in [
            ("POST", "/schedules/s-1", "CreateSchedule"),
            ("PUT", "/schedules/s-1", "UpdateSchedule"),
            ("DELETE", "/schedules/s-1?groupName=g", "DeleteSchedule"),
            ("GET", "/schedules?ScheduleGroup=g", "ListSchedules"),
            ("GET", "/schedule-groups/g", "GetScheduleGroup"),
            ("POST", "/schedule-groups/g", "CreateScheduleGroup"),
        ] {
            let r = request(method, path, &[("Authorization", &scheduler)], "");
            assert_eq!(
                operation(&r),
                format!("scheduler:{name}"),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn a_rule_skips_then_injects_its_count_in_matching_requests_only() {
        let shared = Shared {
            upstream: String::new(),
            state: Mutex::new(State::default()),
        };
        shared.lock().rules.push(Armed {
            rule: Rule::new("sqs:SendMessage", Fault::Throttle, 2)
                .after(1)
                .containing("run-7"),
            active: true,
            matched: 0,
            report: RuleReport::default(),
        });
        let mine = request("POST", "/", &[], r#"{"MessageBody":"run-7"}"#);
        let other = request("POST", "/", &[], r#"{"MessageBody":"run-8"}"#);
        let got: Vec<Option<Fault>> = [&mine, &other, &mine, &mine, &mine]
            .iter()
            .map(|r| shared.decide("sqs:SendMessage", r).map(|(f, _, _)| f))
            .collect();
        assert_eq!(
            got,
            [
                None,
                None,
                Some(Fault::Throttle),
                Some(Fault::Throttle),
                None
            ]
        );
        assert_eq!(shared.decide("sns:Publish", &mine), None);
        assert_eq!(shared.lock().seen.get("sqs:SendMessage"), Some(&5));
        assert_eq!(shared.lock().rules[0].report.injected, 2);
    }

    #[test]
    fn transaction_refusals_name_one_reason_per_item() {
        let r = request(
            "POST",
            "/",
            &[("X-Amz-Target", "DynamoDB_20120810.TransactWriteItems")],
            r#"{"TransactItems":[{},{},{}]}"#,
        );
        let answer = condition_failed(&r);
        let body: Value = serde_json::from_slice(&answer.body).expect("JSON");
        let reasons = body["CancellationReasons"].as_array().expect("reasons");
        assert_eq!(reasons.len(), 3);
        assert_eq!(reasons[0]["Code"], "ConditionalCheckFailed");
        assert_eq!(reasons[2]["Code"], "None");
    }
}
