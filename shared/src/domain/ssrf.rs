//! The SSRF guard's rules, in one place: which URLs a notification may be sent to and which
//! addresses a connection may reach (SPEC §7). Pure: the notification HTTP client
//! (`adapters::notify::http`) resolves the host, vets every address here and connects to
//! the address it vetted; configuration checks the URL here before it is stored.
//!
//! A target must be `https` and reach only public unicast addresses. Refused are loopback,
//! private (RFC 1918), link-local, carrier-grade NAT, multicast, unspecified, broadcast,
//! documentation/benchmarking/reserved ranges, IPv6 unique-local and site-local, and every
//! IPv6 form that embeds one of those IPv4 addresses (IPv4-mapped, IPv4-compatible,
//! NAT64, 6to4) or tunnels opaquely (Teredo). The local server's development flag
//! (`--allow-loopback-webhooks`) admits loopback targets, over `http` too — and nothing
//! else.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// What the deployment allows besides public `https` targets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    /// Development and tests only: loopback targets, by `http` or `https`.
    pub allow_loopback: bool,
}

/// Why a URL or an address is refused. The message never repeats the URL (it may carry a
/// token), only the class of the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// The host of a vetted URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetHost {
    /// A name, to be resolved and every address vetted with `check_ip`.
    Domain(String),
    /// An address literal, already vetted.
    Ip(IpAddr),
}

/// A URL that passed `check_url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetUrl {
    pub url: url::Url,
    pub host: TargetHost,
    pub port: u16,
    /// `https`: connect with TLS.
    pub tls: bool,
    /// An `http` URL (development flag): every address it resolves to must be loopback.
    pub loopback_only: bool,
}

impl TargetUrl {
    /// The request target: path and query (the fragment is never sent).
    pub fn path_and_query(&self) -> String {
        match self.url.query() {
            Some(q) => format!("{}?{q}", self.url.path()),
            None => self.url.path().to_owned(),
        }
    }

    /// The `Host` header value.
    pub fn authority(&self) -> String {
        let host = self.url.host_str().unwrap_or_default();
        match self.url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }
}

/// Checks a notification URL without resolving it: `https` (or `http` to a loopback host
/// under the development flag), a host, no user info, and no refused address literal.
pub fn check_url(raw: &str, policy: UrlPolicy) -> Result<TargetUrl, Refused> {
    if raw.len() > MAX_URL_LEN {
        return Err(Refused(format!(
            "the URL is longer than {MAX_URL_LEN} characters"
        )));
    }
    let url = url::Url::parse(raw.trim())
        .map_err(|e| Refused(format!("the URL does not parse ({e})")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refused(
            "the URL may not carry a user name or password".into(),
        ));
    }
    let tls = match url.scheme() {
        "https" => true,
        "http" => false,
        other => {
            return Err(Refused(format!("the URL must use https, not {other}")));
        }
    };
    let port = url
        .port_or_known_default()
        .ok_or_else(|| Refused("the URL has no port".into()))?;
    let host = match url.host() {
        None => return Err(Refused("the URL has no host".into())),
        Some(url::Host::Ipv4(ip)) => TargetHost::Ip(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => TargetHost::Ip(IpAddr::V6(ip)),
        Some(url::Host::Domain(name)) => TargetHost::Domain(name.to_ascii_lowercase()),
    };
    let loopback_name = match &host {
        TargetHost::Domain(name) => is_localhost(name),
        TargetHost::Ip(_) => false,
    };
    match &host {
        TargetHost::Ip(ip) => check_ip(*ip, policy)?,
        TargetHost::Domain(_) if loopback_name && !policy.allow_loopback => {
            return Err(Refused("the URL names a loopback host".into()));
        }
        TargetHost::Domain(_) => {}
    }
    let loopback_host = loopback_name
        || matches!(&host, TargetHost::Ip(ip) if classify(*ip) == Some(Class::Loopback));
    let plain_http_allowed = policy.allow_loopback && loopback_host;
    if !tls && !plain_http_allowed {
        return Err(Refused("the URL must use https".into()));
    }
    Ok(TargetUrl {
        url,
        host,
        port,
        tls,
        loopback_only: !tls,
    })
}

/// Checks one address a target resolved to (or names).
pub fn check_ip(ip: IpAddr, policy: UrlPolicy) -> Result<(), Refused> {
    match classify(ip) {
        None => Ok(()),
        Some(Class::Loopback) if policy.allow_loopback => Ok(()),
        Some(class) => Err(Refused(format!(
            "the target resolves to a {} address",
            class.as_str()
        ))),
    }
}

/// `localhost` and its subdomains always mean loopback (RFC 6761).
fn is_localhost(name: &str) -> bool {
    let name = name.trim_end_matches('.');
    name == "localhost" || name.ends_with(".localhost")
}

/// The kinds of address a notification may not reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Loopback,
    Private,
    LinkLocal,
    SharedCgnat,
    Multicast,
    Unspecified,
    Broadcast,
    Reserved,
    UniqueLocal,
    SiteLocal,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Loopback => "loopback",
            Class::Private => "private",
            Class::LinkLocal => "link-local",
            Class::SharedCgnat => "carrier-grade NAT",
            Class::Multicast => "multicast",
            Class::Unspecified => "unspecified",
            Class::Broadcast => "broadcast",
            Class::Reserved => "reserved",
            Class::UniqueLocal => "unique-local",
            Class::SiteLocal => "site-local",
        }
    }
}

/// `None` for a public unicast address, otherwise why it is not one.
pub fn classify(ip: IpAddr) -> Option<Class> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Class> {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        _ if ip.is_broadcast() => Some(Class::Broadcast),
        (0, _, _) => Some(Class::Unspecified),
        (10, _, _) => Some(Class::Private),
        (100, 64..=127, _) => Some(Class::SharedCgnat),
        (127, _, _) => Some(Class::Loopback),
        (169, 254, _) => Some(Class::LinkLocal),
        (172, 16..=31, _) => Some(Class::Private),
        (192, 0, 0) | (192, 0, 2) => Some(Class::Reserved),
        (192, 88, 99) => Some(Class::Reserved),
        (192, 168, _) => Some(Class::Private),
        (198, 18..=19, _) => Some(Class::Reserved),
        (198, 51, 100) | (203, 0, 113) => Some(Class::Reserved),
        (224..=239, _, _) => Some(Class::Multicast),
        (240..=255, _, _) => Some(Class::Reserved),
        _ => None,
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<Class> {
    if ip.is_unspecified() {
        return Some(Class::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Class::Loopback);
    }
    let s = ip.segments();
    // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d): the IPv4 address is
    // what a dual-stack socket reaches. The compatible form is deprecated and unroutable.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    if s[..6] == [0; 6] {
        return Some(classify_v4(embedded_v4(s[6], s[7])).unwrap_or(Class::Reserved));
    }
    // NAT64 (64:ff9b::/96) reaches the embedded IPv4 address; the local-use prefix
    // (64:ff9b:1::/48) reaches whatever the operator maps it to.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return classify_v4(embedded_v4(s[6], s[7]));
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        return Some(Class::Reserved);
    }
    // 6to4 (2002::/16) tunnels to the IPv4 address in bits 16..48.
    if s[0] == 0x2002 {
        return classify_v4(embedded_v4(s[1], s[2]));
    }
    match s[0] {
        0xff00..=0xffff => Some(Class::Multicast),
        0xfe80..=0xfebf => Some(Class::LinkLocal),
        0xfec0..=0xfeff => Some(Class::SiteLocal),
        0xfc00..=0xfdff => Some(Class::UniqueLocal),
        // Teredo (2001::/32) hides the IPv4 endpoint; documentation (2001:db8::/32).
        0x2001 if s[1] == 0 || s[1] == 0x0db8 => Some(Class::Reserved),
        // Only 2000::/3 is global unicast.
        0x2000..=0x3fff => None,
        _ => Some(Class::Reserved),
    }
}

fn embedded_v4(high: u16, low: u16) -> Ipv4Addr {
    let [a, b] = high.to_be_bytes();
    let [c, d] = low.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: UrlPolicy = UrlPolicy {
        allow_loopback: false,
    };
    const DEV: UrlPolicy = UrlPolicy {
        allow_loopback: true,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address parses")
    }

    #[test]
    fn public_addresses_pass() {
        for a in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
        ] {
            assert_eq!(classify(ip(a)), None, "{a}");
        }
    }

    #[test]
    fn every_refused_class_is_refused() {
        let cases = [
            ("127.0.0.1", Class::Loopback),
            ("127.255.1.2", Class::Loopback),
            ("::1", Class::Loopback),
            ("10.1.2.3", Class::Private),
            ("172.16.0.1", Class::Private),
            ("172.31.255.255", Class::Private),
            ("192.168.1.1", Class::Private),
            ("169.254.169.254", Class::LinkLocal),
            ("fe80::1", Class::LinkLocal),
            ("100.64.0.1", Class::SharedCgnat),
            ("100.127.255.254", Class::SharedCgnat),
            ("224.0.0.1", Class::Multicast),
            ("239.255.255.250", Class::Multicast),
            ("ff02::1", Class::Multicast),
            ("0.0.0.0", Class::Unspecified),
            ("0.1.2.3", Class::Unspecified),
            ("::", Class::Unspecified),
            ("255.255.255.255", Class::Broadcast),
            ("240.0.0.1", Class::Reserved),
            ("192.0.2.1", Class::Reserved),
            ("198.18.0.1", Class::Reserved),
            ("2001:db8::1", Class::Reserved),
            ("2001:0:4136:e378::1", Class::Reserved),
            ("fc00::1", Class::UniqueLocal),
            ("fd12:3456:789a::1", Class::UniqueLocal),
            ("fec0::1", Class::SiteLocal),
            ("100::1", Class::Reserved),
            // IPv4 addresses inside IPv6 forms are judged as IPv4.
            ("::ffff:127.0.0.1", Class::Loopback),
            ("::ffff:10.0.0.1", Class::Private),
            ("::ffff:169.254.169.254", Class::LinkLocal),
            ("::127.0.0.1", Class::Loopback),
            ("::8.8.8.8", Class::Reserved),
            ("64:ff9b::a9fe:a9fe", Class::LinkLocal),
            ("64:ff9b:1::1", Class::Reserved),
            ("2002:7f00:0001::1", Class::Loopback),
            ("2002:c0a8:0101::1", Class::Private),
        ];
        for (a, class) in cases {
            assert_eq!(classify(ip(a)), Some(class), "{a}");
            assert!(check_ip(ip(a), STRICT).is_err(), "{a}");
        }
    }

    #[test]
    fn the_development_flag_admits_loopback_only() {
        assert!(check_ip(ip("127.0.0.1"), DEV).is_ok());
        assert!(check_ip(ip("::1"), DEV).is_ok());
        assert!(check_ip(ip("::ffff:127.0.0.1"), DEV).is_ok());
        assert!(check_ip(ip("10.0.0.1"), DEV).is_err());
        assert!(check_ip(ip("169.254.169.254"), DEV).is_err());
    }

    #[test]
    fn urls_must_be_https_with_a_host_and_no_credentials() {
        let ok = check_url("https://hooks.example.com/a/b?c=d#frag", STRICT).expect("valid");
        assert_eq!(ok.host, TargetHost::Domain("hooks.example.com".into()));
        assert_eq!((ok.port, ok.tls), (443, true));
        assert_eq!(ok.path_and_query(), "/a/b?c=d");
        assert_eq!(ok.authority(), "hooks.example.com");
        let custom = check_url("https://example.com:8443/x", STRICT).expect("valid");
        assert_eq!(
            (custom.port, custom.authority()),
            (8443, "example.com:8443".into())
        );
        for bad in [
            "http://example.com/hook",
            "ftp://example.com/",
            "file:///etc/passwd",
            "https://user:pass@example.com/",
            "https://user@example.com/",
            "not a url",
            "https://",
            "https://:443/",
            "gopher://example.com/",
        ] {
            assert!(check_url(bad, STRICT).is_err(), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(check_url(&long, STRICT).is_err());
    }

    #[test]
    fn address_literals_in_every_spelling_are_vetted() {
        for bad in [
            "https://127.0.0.1/",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:7f00:1]/",
            "https://0x7f.1/",
            "https://2130706433/",
            "https://0177.0.0.1/",
            "https://10.0.0.1/",
            "https://169.254.169.254/latest/meta-data/",
            "https://[fd00::1]/",
            "https://[fe80::1%25eth0]/",
            "https://0.0.0.0/",
            "https://localhost/",
            "https://LOCALHOST./",
            "https://api.localhost/",
        ] {
            assert!(check_url(bad, STRICT).is_err(), "{bad}");
        }
        assert!(check_url("https://8.8.8.8/hook", STRICT).is_ok());
    }

    #[test]
    fn the_development_flag_allows_http_to_loopback_only() {
        let t = check_url("http://127.0.0.1:8080/hook", DEV).expect("dev loopback");
        assert!(!t.tls && t.loopback_only);
        assert!(check_url("http://localhost:8080/hook", DEV).is_ok());
        assert!(check_url("https://127.0.0.1:8443/hook", DEV).is_ok());
        assert!(check_url("http://127.0.0.1:8080/hook", STRICT).is_err());
        assert!(check_url("http://example.com/hook", DEV).is_err());
        assert!(check_url("http://10.0.0.1/hook", DEV).is_err());
        assert!(check_url("https://10.0.0.1/hook", DEV).is_err());
    }
}
