//! Checks `[identity]` and `[exempt]`: trusted proxies, headers, JWT, exemptions.

use super::schema::{ExemptConfig, IdentityConfig};
use super::{ConfigError, error};
use crate::http::caller::CallerResolver;
use crate::http::rules::{Exemptions, PathPattern};

pub(super) fn compile_identity(config: &IdentityConfig) -> Result<CallerResolver, ConfigError> {
    let trusted_proxies = config
        .trusted_proxies
        .iter()
        .enumerate()
        .map(|(i, net)| {
            parse_net(net).map_err(|m| error(format!("identity.trusted_proxies[{i}]"), m))
        })
        .collect::<Result<_, _>>()?;
    let header = |field: &str, name: &str| {
        http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
            .map_err(|_| error(field, format!("`{name}` is not a header name")))
    };
    let client_ip_header = match &config.client_ip_header {
        Some(name) => Some(header("identity.client_ip_header", name)?),
        None => None,
    };
    // Both are read only from trusted proxies: without any, they would never apply.
    if config.trusted_proxies.is_empty() {
        for (field, given) in [
            (
                "identity.client_ip_header",
                config.client_ip_header.is_some(),
            ),
            (
                "identity.forwarded_header",
                config.forwarded_header.is_some(),
            ),
        ] {
            if given {
                return Err(error(
                    field,
                    "is read only from trusted proxies: list them in identity.trusted_proxies",
                ));
            }
        }
    }
    let forwarded = config.forwarded_header.unwrap_or_default();
    let api_key_header = header(
        "identity.api_key_header",
        config.api_key_header.as_deref().unwrap_or("x-api-key"),
    )?;
    let ipv6_prefix = config.ipv6_prefix.unwrap_or(64);
    if ipv6_prefix > 128 {
        return Err(error("identity.ipv6_prefix", "must be at most 128"));
    }
    #[cfg(feature = "jwt")]
    let jwt = match &config.jwt {
        Some(jwt) => Some(crate::http::jwt::compile(jwt)?),
        None => None,
    };
    #[cfg(not(feature = "jwt"))]
    if config.jwt.is_some() {
        return Err(error(
            "identity.jwt",
            "needs the `jwt` feature of the redlimit crate",
        ));
    }
    Ok(CallerResolver {
        trusted_proxies,
        client_ip_header,
        forwarded,
        ipv6_prefix,
        api_key_header: Some(api_key_header),
        #[cfg(feature = "jwt")]
        jwt,
    })
}

pub(super) fn compile_exempt(config: &ExemptConfig) -> Result<Exemptions, ConfigError> {
    let paths = config
        .paths
        .iter()
        .enumerate()
        .map(|(i, p)| PathPattern::parse(p).map_err(|m| error(format!("exempt.paths[{i}]"), m)))
        .collect::<Result<_, _>>()?;
    let nets = config
        .ips
        .iter()
        .enumerate()
        .map(|(i, net)| parse_net(net).map_err(|m| error(format!("exempt.ips[{i}]"), m)))
        .collect::<Result<_, _>>()?;
    if let Some(i) = config.users.iter().position(|user| user.trim().is_empty()) {
        return Err(error(
            format!("exempt.users[{i}]"),
            "an empty user id names nobody (a token with an empty user claim has no user)",
        ));
    }
    Ok(Exemptions {
        paths,
        nets,
        users: config.users.clone(),
        api_keys: config.api_keys.clone(),
    })
}

/// A CIDR, or a single address as its /32 or /128.
fn parse_net(text: &str) -> Result<ipnet::IpNet, String> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{text}` is not an IP address or CIDR"))
}
