//! The HTTP client of Slack and webhook deliveries, with the SSRF guard built in
//! (`domain::ssrf` has the rules): it checks the URL, resolves the host itself, refuses the
//! target if any address it resolves to is not allowed, and connects to an address it
//! vetted — there is no second resolution between the check and the connection, so a DNS
//! answer that changes (rebinding) cannot slip past. It follows no redirects, bounds every
//! step with a timeout and reads at most a few KiB of the answer.
//!
//! Built on hyper's connection API rather than a full client so that nothing (a resolver,
//! a proxy from the environment, a redirect policy) can connect anywhere on its own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, USER_AGENT};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::domain::ssrf::{self, Class, TargetHost, UrlPolicy};
use crate::ports::DeliveryError;

/// An answer: its status and the beginning of its body (for error messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    /// 2xx is delivered; 408, 425, 429 and 5xx may pass later; redirects and the other
    /// 4xx will not.
    pub fn outcome(&self) -> Result<(), DeliveryError> {
        let detail = if self.body.is_empty() {
            String::new()
        } else {
            format!(": {}", self.body)
        };
        match self.status {
            200..=299 => Ok(()),
            300..=399 => Err(DeliveryError::Permanent(format!(
                "the endpoint answered {} (redirects are not followed)",
                self.status
            ))),
            408 | 425 | 429 | 500..=599 => Err(DeliveryError::Retryable(format!(
                "the endpoint answered {}{detail}",
                self.status
            ))),
            _ => Err(DeliveryError::Permanent(format!(
                "the endpoint answered {}{detail}",
                self.status
            ))),
        }
    }
}

/// Resolves host names. The system's resolver in service; tests substitute answers (a
/// name that resolves to a private address, an answer that changes between lookups).
#[async_trait::async_trait]
pub trait Resolver: Send + Sync {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>>;
}

/// The operating system's resolver (`getaddrinfo`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

#[async_trait::async_trait]
impl Resolver for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

#[derive(Clone)]
pub struct GuardedHttp {
    policy: UrlPolicy,
    resolver: Arc<dyn Resolver>,
    tls: tokio_rustls::TlsConnector,
    connect_timeout: Duration,
    request_timeout: Duration,
    /// Bytes of an answer kept for its message; the rest is never read.
    max_reply_bytes: usize,
}

impl std::fmt::Debug for GuardedHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedHttp")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl GuardedHttp {
    /// A client that trusts the system's certificate authorities.
    pub fn new(policy: UrlPolicy) -> GuardedHttp {
        Self::with_roots(policy, crate::adapters::tls::native_roots())
    }

    /// A client that trusts `roots` only (tests bring their own authority).
    pub fn with_roots(policy: UrlPolicy, roots: rustls::RootCertStore) -> GuardedHttp {
        let config = crate::adapters::tls::client_config(roots);
        GuardedHttp {
            policy,
            resolver: Arc::new(SystemResolver),
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_reply_bytes: 4 * 1024,
        }
    }

    pub fn with_resolver(mut self, resolver: Arc<dyn Resolver>) -> GuardedHttp {
        self.resolver = resolver;
        self
    }

    pub fn with_timeouts(mut self, connect: Duration, request: Duration) -> GuardedHttp {
        self.connect_timeout = connect;
        self.request_timeout = request;
        self
    }

    pub fn policy(&self) -> UrlPolicy {
        self.policy
    }

    /// POSTs `body` as JSON with `headers` to `url`. Error messages never quote the URL.
    pub async fn post_json(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: Vec<u8>,
    ) -> Result<Reply, DeliveryError> {
        let target = ssrf::check_url(url, self.policy)
            .map_err(|e| DeliveryError::Permanent(format!("refused by the SSRF guard: {e}")))?;
        match tokio::time::timeout(self.request_timeout, self.exchange(&target, headers, body))
            .await
        {
            Ok(result) => result,
            Err(_) => Err(DeliveryError::Retryable(format!(
                "no answer within {} s",
                self.request_timeout.as_secs()
            ))),
        }
    }

    async fn exchange(
        &self,
        target: &ssrf::TargetUrl,
        headers: &[(&'static str, String)],
        body: Vec<u8>,
    ) -> Result<Reply, DeliveryError> {
        let addrs = self.vetted_addresses(target).await?;
        let stream = self.connect(&addrs).await?;
        let request = request(target, headers, body)?;
        if !target.tls {
            return self.send(stream, request).await;
        }
        let name = match &target.host {
            TargetHost::Domain(name) => rustls::pki_types::ServerName::try_from(name.clone())
                .map_err(|_| DeliveryError::Permanent("the host is not a valid TLS name".into()))?,
            TargetHost::Ip(ip) => rustls::pki_types::ServerName::IpAddress((*ip).into()),
        };
        let tls = tokio::time::timeout(self.connect_timeout, self.tls.connect(name, stream))
            .await
            .map_err(|_| DeliveryError::Retryable("the TLS handshake timed out".into()))?
            .map_err(|e| DeliveryError::Retryable(format!("the TLS handshake failed: {e}")))?;
        self.send(tls, request).await
    }

    /// Resolves the host once and vets every address; all must be allowed.
    async fn vetted_addresses(
        &self,
        target: &ssrf::TargetUrl,
    ) -> Result<Vec<SocketAddr>, DeliveryError> {
        let addrs: Vec<SocketAddr> = match &target.host {
            TargetHost::Ip(ip) => vec![SocketAddr::new(*ip, target.port)],
            TargetHost::Domain(name) => tokio::time::timeout(
                self.connect_timeout,
                self.resolver.resolve(name, target.port),
            )
            .await
            .map_err(|_| DeliveryError::Retryable("resolving the host timed out".into()))?
            .map_err(|_| DeliveryError::Retryable("the host could not be resolved".into()))?,
        };
        if addrs.is_empty() {
            return Err(DeliveryError::Retryable("the host has no address".into()));
        }
        for addr in &addrs {
            ssrf::check_ip(addr.ip(), self.policy)
                .map_err(|e| DeliveryError::Permanent(format!("refused by the SSRF guard: {e}")))?;
            if target.loopback_only && ssrf::classify(addr.ip()) != Some(Class::Loopback) {
                return Err(DeliveryError::Permanent(
                    "refused by the SSRF guard: plain http is for loopback targets only".into(),
                ));
            }
        }
        Ok(addrs)
    }

    async fn connect(&self, addrs: &[SocketAddr]) -> Result<TcpStream, DeliveryError> {
        let mut last = String::from("no address");
        for addr in addrs {
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(e)) => last = e.kind().to_string(),
                Err(_) => last = "timed out".into(),
            }
        }
        Err(DeliveryError::Retryable(format!("cannot connect ({last})")))
    }

    async fn send<S>(
        &self,
        stream: S,
        request: http::Request<Full<Bytes>>,
    ) -> Result<Reply, DeliveryError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| DeliveryError::Retryable(format!("HTTP handshake failed: {e}")))?;
        let driver = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "notification connection ended with an error");
            }
        });
        let result = self.round_trip(&mut sender, request).await;
        driver.abort();
        result
    }

    async fn round_trip(
        &self,
        sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
        request: http::Request<Full<Bytes>>,
    ) -> Result<Reply, DeliveryError> {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| DeliveryError::Retryable(format!("the request failed: {e}")))?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut kept = Vec::new();
        while kept.len() < self.max_reply_bytes {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        kept.extend_from_slice(data);
                    }
                }
                // A broken body does not undo the status the endpoint already gave.
                Some(Err(_)) | None => break,
            }
        }
        kept.truncate(self.max_reply_bytes);
        Ok(Reply {
            status,
            body: summary(&kept),
        })
    }
}

fn request(
    target: &ssrf::TargetUrl,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
) -> Result<http::Request<Full<Bytes>>, DeliveryError> {
    let mut builder = http::Request::post(target.path_and_query())
        .header(HOST, target.authority())
        .header(CONTENT_TYPE, "application/json")
        .header(
            USER_AGENT,
            concat!("scheduled-runs/", env!("CARGO_PKG_VERSION")),
        );
    for (name, value) in headers {
        builder = builder.header(*name, value.as_str());
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .map_err(|_| DeliveryError::Permanent("the request could not be built".into()))
}

/// The first line of an answer, printable and short, for a delivery's error message.
fn summary(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let line: String = text
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    line.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_outcomes() {
        let reply = |status| Reply {
            status,
            body: "channel_not_found".into(),
        };
        assert_eq!(reply(200).outcome(), Ok(()));
        assert_eq!(reply(204).outcome(), Ok(()));
        for status in [301, 302, 307, 308, 400, 401, 403, 404, 410, 422] {
            assert!(
                matches!(reply(status).outcome(), Err(DeliveryError::Permanent(_))),
                "{status}"
            );
        }
        for status in [408, 425, 429, 500, 502, 503, 504] {
            assert!(
                matches!(reply(status).outcome(), Err(DeliveryError::Retryable(_))),
                "{status}"
            );
        }
        assert_eq!(
            reply(404).outcome(),
            Err(DeliveryError::Permanent(
                "the endpoint answered 404: channel_not_found".into()
            ))
        );
    }

    #[test]
    fn summaries_are_one_short_printable_line() {
        assert_eq!(summary(b"ok"), "ok");
        assert_eq!(summary(b"bad\r\nsecond line"), "bad");
        assert_eq!(summary(&[b'a'; 500]).len(), 200);
        assert_eq!(summary(b"\x1b[31mred"), "[31mred");
    }
}
