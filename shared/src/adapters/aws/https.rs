//! The HTTP client under every SDK client of the deployment: HTTP/1.1, pooled by hyper-util,
//! over TLS from rustls with ring and the host's root certificates (plain HTTP only where an
//! endpoint override asks for it: DynamoDB Local and moto in tests).
//!
//! The SDK's own client does the same and also speaks HTTP/2, which none of the services the
//! functions call (DynamoDB, SQS, SNS, EventBridge Scheduler, SES, Secrets Manager) needs;
//! its HTTP/2 stack alone was most of half a megabyte of every function binary
//! (BENCHMARKS.md, requirement 1). Failures are classified as the SDK's client classifies
//! them, so its retry policy sees the same kinds: connection failures and dropped
//! connections are transient I/O errors, an exceeded timeout is a timeout, and a request the
//! client could not send at all is the caller's error.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::ErrorKind;
use http::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector as TcpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

type BoxError = Box<dyn StdError + Send + Sync>;

/// How long an idle pooled connection is kept (the SDK's client keeps them 90 s too).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The client to give an SDK configuration (`http_client`). Cheap: nothing is connected and
/// no certificate is read until the first request.
pub fn https_client() -> SharedHttpClient {
    SharedHttpClient::new(PooledHttps::new(Box::new(
        crate::adapters::tls::native_roots,
    )))
}

/// The connect and read timeouts a connector is asked for.
type Timeouts = (Option<Duration>, Option<Duration>);

/// One pool per combination of the timeouts the SDK asks for, as the SDK's client does;
/// every client of a deployment asks for the same ones, so there is one pool.
#[derive(Debug)]
struct PooledHttps {
    pools: Mutex<HashMap<Timeouts, SharedHttpConnector>>,
    tls: Arc<LazyTls>,
}

impl PooledHttps {
    fn new(roots: Box<dyn Fn() -> rustls::RootCertStore + Send + Sync>) -> PooledHttps {
        PooledHttps {
            pools: Mutex::default(),
            tls: Arc::new(LazyTls {
                connector: OnceLock::new(),
                roots,
            }),
        }
    }
}

impl HttpClient for PooledHttps {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let key = (settings.connect_timeout(), settings.read_timeout());
        let mut pools = self
            .pools
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        pools
            .entry(key)
            .or_insert_with(|| {
                SharedHttpConnector::new(Pool::new(key.0, key.1, Arc::clone(&self.tls)))
            })
            .clone()
    }
}

#[derive(Clone, Debug)]
struct Pool {
    client: Client<MaybeTls, SdkBody>,
    /// The longest wait for the answer's head once the request is sent.
    read_timeout: Option<Duration>,
}

impl Pool {
    fn new(
        connect_timeout: Option<Duration>,
        read_timeout: Option<Duration>,
        tls: Arc<LazyTls>,
    ) -> Pool {
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(connect_timeout);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .build(MaybeTls { tcp, tls });
        Pool {
            client,
            read_timeout,
        }
    }
}

impl HttpConnector for Pool {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        let answer = self.client.request(request);
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let answer = match read_timeout {
                Some(limit) => match tokio::time::timeout(limit, answer).await {
                    Ok(answer) => answer,
                    Err(elapsed) => return Err(ConnectorError::timeout(elapsed.into())),
                },
                None => answer.await,
            };
            match answer {
                Ok(response) => HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                    .map_err(|e| ConnectorError::other(e.into(), None)),
                Err(e) => Err(classify(e)),
            }
        })
    }
}

/// The SDK's classification of a failed exchange (what its retry strategy acts on).
fn classify(error: hyper_util::client::legacy::Error) -> ConnectorError {
    if error.is_connect() {
        return ConnectorError::io(error.into());
    }
    let kind = match source::<hyper::Error>(&error) {
        Some(e) if e.is_timeout() => return ConnectorError::timeout(error.into()),
        Some(e) if e.is_user() => return ConnectorError::user(error.into()),
        Some(e) if e.is_closed() || e.is_canceled() => return ConnectorError::io(error.into()),
        Some(e) if e.is_incomplete_message() => Some(ErrorKind::TransientError),
        _ => None,
    };
    if kind.is_none() && source::<std::io::Error>(&error).is_some() {
        return ConnectorError::io(error.into());
    }
    ConnectorError::other(error.into(), kind)
}

fn source<'a, E: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// The TLS settings, made on the first connection that needs them (reading the root
/// certificates is a few milliseconds a function should not spend before its first event).
struct LazyTls {
    connector: OnceLock<tokio_rustls::TlsConnector>,
    roots: Box<dyn Fn() -> rustls::RootCertStore + Send + Sync>,
}

impl LazyTls {
    fn connector(&self) -> tokio_rustls::TlsConnector {
        self.connector
            .get_or_init(|| {
                let config = crate::adapters::tls::client_config((self.roots)());
                tokio_rustls::TlsConnector::from(Arc::new(config))
            })
            .clone()
    }
}

impl std::fmt::Debug for LazyTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyTls")
            .field("ready", &self.connector.get().is_some())
            .finish_non_exhaustive()
    }
}

/// Connects over TCP, then TLS for `https` URIs.
#[derive(Clone, Debug)]
struct MaybeTls {
    tcp: TcpConnector,
    tls: Arc<LazyTls>,
}

impl tower_service::Service<Uri> for MaybeTls {
    type Response = Stream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let secure = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        // An IPv6 literal comes bracketed in a URI, not in a server name.
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let connecting = self.tcp.call(uri);
        let tls = Arc::clone(&self.tls);
        Box::pin(async move {
            let tcp = connecting.await?.into_inner();
            if !secure {
                return Ok(Stream::Plain(TokioIo::new(tcp)));
            }
            let name = rustls::pki_types::ServerName::try_from(host)?;
            let tls = tls.connector().connect(name, tcp).await?;
            Ok(Stream::Tls(Box::new(TokioIo::new(tls))))
        })
    }
}

/// A pooled connection.
enum Stream {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A certificate for `localhost` and a root store that trusts only it.
    fn localhost_certificate() -> (rustls::ServerConfig, rustls::RootCertStore) {
        let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("a self-signed certificate");
        let der = issued.cert.der().clone();
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(issued.signing_key.serialize_der().into());
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .expect("server config");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).expect("root");
        (server, roots)
    }

    /// Answers every request on every connection with `200 ok`, or never answers when
    /// `mute`; counts connections.
    async fn server(tls: Option<rustls::ServerConfig>, mute: bool) -> (u16, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connections);
        let acceptor = tls.map(|config| tokio_rustls::TlsAcceptor::from(Arc::new(config)));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                answer(stream, mute).await;
                            }
                        }
                        None => answer(tcp, mute).await,
                    }
                });
            }
        });
        (port, connections)
    }

    async fn answer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
        mut stream: S,
        mute: bool,
    ) {
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            let Ok(n) = stream.read(&mut chunk).await else {
                return;
            };
            if n == 0 {
                return;
            }
            buffer.extend_from_slice(&chunk[..n]);
            while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                buffer.drain(..end + 4);
                if mute {
                    continue;
                }
                let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                if stream.write_all(reply).await.is_err() {
                    return;
                }
            }
        }
    }

    fn pool(roots: rustls::RootCertStore, read_timeout: Option<Duration>) -> Pool {
        let roots = Mutex::new(Some(roots));
        let tls = Arc::new(LazyTls {
            connector: OnceLock::new(),
            roots: Box::new(move || {
                roots
                    .lock()
                    .ok()
                    .and_then(|mut r| r.take())
                    .unwrap_or_else(rustls::RootCertStore::empty)
            }),
        });
        Pool::new(Some(Duration::from_secs(2)), read_timeout, tls)
    }

    async fn get(pool: &Pool, uri: String) -> Result<(u16, String), ConnectorError> {
        let request = http::Request::builder()
            .uri(uri)
            .body(SdkBody::empty())
            .expect("request");
        let request = HttpRequest::try_from(request).expect("an SDK request");
        let response = pool.call(request).await?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        Ok((status, body))
    }

    #[tokio::test]
    async fn https_to_a_trusted_server_reuses_its_connection() {
        let (config, roots) = localhost_certificate();
        let (port, connections) = server(Some(config), false).await;
        let pool = pool(roots, None);
        for _ in 0..3 {
            let answer = get(&pool, format!("https://localhost:{port}/")).await;
            assert_eq!(answer.ok(), Some((200, "ok".to_owned())));
        }
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_untrusted_certificate_fails_the_connection() {
        let (config, _) = localhost_certificate();
        let (port, _) = server(Some(config), false).await;
        let error = get(
            &pool(rustls::RootCertStore::empty(), None),
            format!("https://localhost:{port}/"),
        )
        .await
        .expect_err("refused");
        assert!(error.is_io(), "{error:?}");
    }

    #[tokio::test]
    async fn plain_http_for_endpoint_overrides() {
        let (port, _) = server(None, false).await;
        let answer = get(
            &pool(rustls::RootCertStore::empty(), None),
            format!("http://127.0.0.1:{port}/"),
        )
        .await;
        assert_eq!(answer.ok(), Some((200, "ok".to_owned())));
    }

    #[tokio::test]
    async fn failures_are_classified_for_the_retry_policy() {
        // Nothing listens: a transient connection failure.
        let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = closed.local_addr().expect("address").port();
        drop(closed);
        let refused = get(
            &pool(rustls::RootCertStore::empty(), None),
            format!("http://127.0.0.1:{port}/"),
        )
        .await
        .expect_err("refused");
        assert!(refused.is_io(), "{refused:?}");
        // Connected, never answered: the read timeout.
        let (port, _) = server(None, true).await;
        let slow = pool(
            rustls::RootCertStore::empty(),
            Some(Duration::from_millis(200)),
        );
        let silent = get(&slow, format!("http://127.0.0.1:{port}/"))
            .await
            .expect_err("timed out");
        assert!(silent.is_timeout(), "{silent:?}");
    }
}
