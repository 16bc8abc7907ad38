//! Who is asking: the client IP (behind trusted proxies), an API key, a JWT's user and
//! tier, or the application's own answer.

use http::HeaderMap;
use http::request::Parts;
use ipnet::IpNet;
use sha2::{Digest, Sha256};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// What the middleware knows about the caller of one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Caller {
    /// The client IP, resolved through trusted proxies.
    pub ip: Option<IpAddr>,
    /// The API key header's value.
    pub api_key: Option<String>,
    /// The verified JWT's user id.
    pub user: Option<String>,
    /// The verified JWT's tier.
    pub tier: Option<String>,
    /// The decisions the layers took on this request, in the order they took them
    /// (an outer layer's first): what a handler sees in its request's `Caller`.
    pub decisions: Vec<LimitDecision>,
}

/// One limit's decision on a request, as a handler sees it in [`Caller::decisions`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimitDecision {
    /// The rule (or route limit) it belongs to.
    pub rule: String,
    /// The limit's name.
    pub limit: String,
    /// What it decided (numbers as in the headers).
    pub decision: crate::Decision,
}

/// The key a request counts under, and the tier picking its limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Requests with the same key (within a rule) share their limits.
    pub key: String,
    /// The tier, if any (else the rule's default limits apply).
    pub tier: Option<String>,
}

/// The application's own way to say who is asking (rules with `key = "custom"`).
///
/// ```
/// use redlimit::http::{Caller, Identify, Identity};
/// struct ByTenant;
/// impl Identify for ByTenant {
///     fn identify(&self, request: &http::request::Parts, _: &Caller) -> Option<Identity> {
///         let tenant = request.headers.get("x-tenant")?.to_str().ok()?;
///         Some(Identity { key: format!("tenant:{tenant}"), tier: Some("pro".into()) })
///     }
/// }
/// ```
pub trait Identify: Send + Sync + 'static {
    /// The identity of `request`'s caller; `None` falls back to the client IP.
    fn identify(&self, request: &Parts, caller: &Caller) -> Option<Identity>;
}

/// Which forwarding header the trusted proxies write (`forwarded_header` in the
/// configuration: `x-forwarded-for`, `forwarded` or `either`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `Forwarded` when the request has one, else `X-Forwarded-For`.
    #[serde(rename = "either", alias = "Either")]
    Either,
    /// Only `X-Forwarded-For` (what most proxies and load balancers write).
    #[default]
    #[serde(rename = "x-forwarded-for", alias = "X-Forwarded-For")]
    XForwardedFor,
    /// Only RFC 7239 `Forwarded`.
    #[serde(rename = "forwarded", alias = "Forwarded")]
    Forwarded,
}

/// How to find the caller of a request.
#[derive(Clone, Debug, Default)]
pub struct CallerResolver {
    pub(crate) trusted_proxies: Vec<IpNet>,
    /// A CDN header (`CF-Connecting-IP`) believed only from trusted proxies.
    pub(crate) client_ip_header: Option<http::HeaderName>,
    pub(crate) forwarded: ForwardedHeader,
    pub(crate) ipv6_prefix: u8,
    pub(crate) api_key_header: Option<http::HeaderName>,
    #[cfg(feature = "jwt")]
    pub(crate) jwt: Option<super::jwt::JwtVerifier>,
}

impl CallerResolver {
    /// The caller of a request that arrived from `peer`.
    pub(crate) fn resolve(&self, parts: &Parts, peer: Option<IpAddr>) -> Caller {
        let headers = &parts.headers;
        #[cfg(feature = "jwt")]
        let (user, tier) = self
            .jwt
            .as_ref()
            .and_then(|jwt| jwt.verify(headers))
            .unwrap_or_default();
        #[cfg(not(feature = "jwt"))]
        let (user, tier) = (None, None);
        Caller {
            ip: peer.map(|peer| self.client_ip(headers, canonical(peer))),
            api_key: self
                .api_key_header
                .as_ref()
                .and_then(|name| headers.get(name))
                .and_then(|value| value.to_str().ok())
                .filter(|key| !key.is_empty())
                .map(str::to_owned),
            user,
            tier,
            decisions: Vec::new(),
        }
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// The client behind `peer`: `peer` itself unless it is a trusted proxy; then the
    /// CDN header if configured, else the rightmost address of the forwarding header
    /// (`Forwarded` or `X-Forwarded-For`, as configured) that is not a trusted proxy.
    fn client_ip(&self, headers: &HeaderMap, peer: IpAddr) -> IpAddr {
        if !self.trusted(peer) {
            return peer;
        }
        if let Some(name) = &self.client_ip_header {
            if let Some(ip) = headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_ip(v.trim()))
            {
                return canonical(ip);
            }
        }
        let hops = match self.forwarded {
            ForwardedHeader::XForwardedFor => x_forwarded_for(headers),
            ForwardedHeader::Forwarded => forwarded_for(headers),
            ForwardedHeader::Either => {
                let hops = forwarded_for(headers);
                if hops.is_empty() {
                    x_forwarded_for(headers)
                } else {
                    hops
                }
            }
        };
        // Walk from the nearest hop back; stop at the first we cannot vouch for.
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            let Some(ip) = hop else {
                // Garbage from an untrusted hop: the last trusted one saw this client.
                return client;
            };
            client = canonical(ip);
            if !self.trusted(client) {
                return client;
            }
        }
        client
    }

    /// The part of the key naming the caller's IP: IPv6 grouped by prefix.
    pub(crate) fn ip_key(&self, ip: IpAddr) -> String {
        match ip {
            IpAddr::V4(v4) => {
                // Written by hand: the formatter costs more than the rest of the key.
                let mut key = String::with_capacity(18);
                key.push_str("ip:");
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        key.push('.');
                    }
                    if octet >= 100 {
                        key.push(char::from(b'0' + octet / 100));
                    }
                    if octet >= 10 {
                        key.push(char::from(b'0' + octet / 10 % 10));
                    }
                    key.push(char::from(b'0' + octet % 10));
                }
                key
            }
            IpAddr::V6(v6) => {
                let prefix = self.ipv6_prefix.min(128);
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                let net = Ipv6Addr::from(u128::from(v6) & mask);
                format!("ip:{net}/{prefix}")
            }
        }
    }
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// An address as proxies write it: bare, `[v6]`, `[v6]:port` or `v4:port`.
fn parse_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    text.strip_prefix('[')
        .and_then(|rest| rest.split(']').next())
        .and_then(|v6| v6.parse().ok())
}

/// `X-Forwarded-For` hops, left (farthest) to right (nearest); `None` for garbage.
///
/// Split as bytes: a client may put bytes that are not text in the part it writes, and
/// that must not hide the addresses our proxies appended after it.
fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b','))
        .map(|hop| std::str::from_utf8(hop).ok().and_then(parse_ip))
        .collect()
}

/// RFC 7239 `Forwarded: for=...` hops, left to right; `None` for obfuscated or garbage.
/// Split as bytes, like `X-Forwarded-For`.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    for value in headers.get_all("forwarded") {
        for element in value.as_bytes().split(|b| *b == b',') {
            let Ok(element) = std::str::from_utf8(element) else {
                hops.push(None);
                continue;
            };
            let for_value = element.split(';').find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                name.trim().eq_ignore_ascii_case("for").then_some(value)
            });
            if let Some(for_value) = for_value {
                hops.push(parse_ip(for_value));
            }
        }
    }
    hops
}

/// A secret or unbounded value made fit for a Redis key: a hash, never the value.
pub(crate) fn digest(kind: &str, value: &str) -> String {
    let hash = Sha256::digest(value.as_bytes());
    let hex: String = hash.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("{kind}:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver(trusted: &[&str]) -> CallerResolver {
        CallerResolver {
            trusted_proxies: trusted.iter().map(|n| n.parse().unwrap()).collect(),
            ipv6_prefix: 64,
            ..CallerResolver::default()
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_cannot_spoof_forwarded_headers() {
        let r = resolver(&["10.0.0.0/8"]);
        let spoof = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(r.client_ip(&spoof, ip("203.0.113.9")), ip("203.0.113.9"));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let r = resolver(&["10.0.0.0/8"]);
        // The client forged the first entry; the proxy appended the real address.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.2")]);
        assert_eq!(r.client_ip(&h, ip("10.0.0.1")), ip("198.51.100.7"));
        let two_lines = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(r.client_ip(&two_lines, ip("10.0.0.1")), ip("198.51.100.7"));
        let garbage = headers(&[("x-forwarded-for", "6.6.6.6, nonsense")]);
        assert_eq!(r.client_ip(&garbage, ip("10.0.0.1")), ip("10.0.0.1"));
    }

    #[test]
    fn the_configured_forwarding_header_is_the_only_one_read() {
        let mut r = resolver(&["10.0.0.0/8"]);
        let h = headers(&[
            (
                "forwarded",
                r#"for=6.6.6.6, for="[2001:db8::1]:4711";proto=https"#,
            ),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        // Default: X-Forwarded-For only; a client's own Forwarded is ignored.
        assert_eq!(r.client_ip(&h, ip("10.0.0.1")), ip("198.51.100.7"));
        r.forwarded = ForwardedHeader::Forwarded;
        assert_eq!(r.client_ip(&h, ip("10.0.0.1")), ip("2001:db8::1"));
        r.forwarded = ForwardedHeader::Either;
        assert_eq!(r.client_ip(&h, ip("10.0.0.1")), ip("2001:db8::1"));
    }

    #[test]
    fn a_cdn_header_counts_only_when_configured_and_from_a_trusted_peer() {
        let mut r = resolver(&["10.0.0.0/8"]);
        let h = headers(&[("cf-connecting-ip", "198.51.100.7")]);
        assert_eq!(r.client_ip(&h, ip("10.0.0.1")), ip("10.0.0.1"));
        r.client_ip_header = Some(http::HeaderName::from_static("cf-connecting-ip"));
        assert_eq!(r.client_ip(&h, ip("10.0.0.1")), ip("198.51.100.7"));
        assert_eq!(r.client_ip(&h, ip("203.0.113.9")), ip("203.0.113.9"));
    }

    #[test]
    fn ipv6_clients_are_grouped_by_prefix() {
        let r = resolver(&[]);
        assert_eq!(r.ip_key(ip("2001:db8:1:2:3:4:5:6")), "ip:2001:db8:1:2::/64");
        assert_eq!(r.ip_key(ip("2001:db8:1:2:ffff::1")), "ip:2001:db8:1:2::/64");
        assert_eq!(r.ip_key(ip("192.0.2.1")), "ip:192.0.2.1");
        for v4 in ["0.0.0.0", "10.9.99.100", "255.255.255.255", "1.20.103.4"] {
            assert_eq!(r.ip_key(ip(v4)), format!("ip:{v4}"));
        }
        assert_eq!(canonical(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    }
}
