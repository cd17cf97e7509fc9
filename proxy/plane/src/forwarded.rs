//! The client's address behind a reverse proxy. Rate limits and logs key on the peer
//! address of the connection; behind a proxy that is the proxy's. When the peer is one
//! of `server.trusted_proxies`, the client is the right-most address of
//! `X-Forwarded-For` that is not itself a trusted proxy (each proxy appends the address
//! it saw, so entries left of the first untrusted one may be forged by the client and are
//! ignored). The request's `ConnectInfo` is replaced with it, so every handler sees the
//! client. A peer that is not trusted is taken as the client, whatever it sends.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

/// The configured proxies.
#[derive(Debug, Clone)]
pub struct TrustedProxies(Arc<Vec<IpNet>>);

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(Arc::new(nets))
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client behind `peer` according to `X-Forwarded-For`, when `peer` is trusted.
    fn client(&self, peer: IpAddr, headers: &http::HeaderMap) -> Option<IpAddr> {
        if !self.trusts(peer) {
            return None;
        }
        let hops: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .map(|hop| hop.parse::<IpAddr>().ok())
            .collect::<Option<Vec<_>>>()?;
        hops.iter()
            .rev()
            .copied()
            .find(|ip| !self.trusts(*ip))
            .or_else(|| hops.first().copied())
            .map(canonical)
    }
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Middleware: replaces the connection's address with the forwarded client's.
pub async fn client_address(
    State(trusted): State<TrustedProxies>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(ConnectInfo(peer)) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .copied()
        && let Some(client) = trusted.client(peer.ip(), request.headers())
    {
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(client, peer.port())));
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|n| n.parse().expect("net")).collect())
    }

    fn forwarded(value: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().expect("header"));
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted = proxies(&["10.0.0.0/8"]);
        // The client forged the first entry; the proxy appended what it saw.
        let headers = forwarded("1.2.3.4, 203.0.113.9, 10.0.0.7");
        assert_eq!(
            trusted.client(ip("10.0.0.2"), &headers),
            Some(ip("203.0.113.9"))
        );
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let headers = forwarded("198.51.100.1");
        assert_eq!(trusted.client(ip("203.0.113.9"), &headers), None);
    }

    #[test]
    fn mapped_addresses_and_garbage() {
        let trusted = proxies(&["127.0.0.1/32"]);
        assert_eq!(
            trusted.client(ip("::ffff:127.0.0.1"), &forwarded("::ffff:198.51.100.7")),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(
            trusted.client(ip("127.0.0.1"), &forwarded("not-an-ip")),
            None,
            "an unreadable header leaves the peer as the client"
        );
        assert_eq!(
            trusted.client(ip("127.0.0.1"), &http::HeaderMap::new()),
            None
        );
    }
}
