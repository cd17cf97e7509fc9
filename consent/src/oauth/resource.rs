//! Warrant's protected resource (its `/mcp`) and the names a client may reach it by.
//!
//! The canonical resource is the public URL plus `/mcp`; every token's audience is that
//! one. When the public URL is a loopback name (`http://localhost:8080`, the default),
//! the same listener also answers as `127.0.0.1` and `[::1]`, and a person may well paste
//! either. MCP clients compare the protected resource metadata's `resource` with the URL
//! they connected to (RFC 9728 §3.3) and refuse a mismatch, so for a loopback public URL
//! the metadata names the resource the way the client reached it, and the authorization
//! server accepts those names as aliases of the canonical one (the token is still issued
//! for the canonical resource). Any other host gets the canonical resource, which the
//! client then reports, naming the URL to use.

use std::borrow::Cow;

/// The protected resource, with its loopback aliases.
#[derive(Debug, Clone)]
pub struct Resource {
    /// `{issuer}/mcp`.
    canonical: String,
    /// The public URL's scheme and port, when its host is a loopback name.
    loopback: Option<(String, u16)>,
}

/// The host names that reach a loopback listener.
const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

impl Resource {
    /// The resource of a gateway whose public URL is `public_url`.
    pub fn new(public_url: &url::Url) -> Self {
        // The issuer identifier: the public URL without a trailing slash.
        let issuer = public_url.as_str().trim_end_matches('/');
        let loopback = match (public_url.host_str(), public_url.port_or_known_default()) {
            (Some(host), Some(port))
                if LOOPBACK_NAMES.contains(&host) && public_url.path() == "/" =>
            {
                Some((public_url.scheme().to_owned(), port))
            }
            _ => None,
        };
        Self {
            canonical: format!("{issuer}/mcp"),
            loopback,
        }
    }

    /// A resource known only by its canonical URL (no aliases).
    pub fn canonical_only(canonical: String) -> Self {
        Self {
            canonical,
            loopback: None,
        }
    }

    /// The canonical resource: every token's audience.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// The origin a client used, when it is a loopback alias of the public URL's
    /// (`http://127.0.0.1:8080` for `Host: 127.0.0.1:8080`), from the `Host` header.
    fn alias_origin(&self, host: Option<&str>) -> Option<String> {
        let (scheme, port) = self.loopback.as_ref()?;
        let host = host?.trim().to_ascii_lowercase();
        let (name, host_port) = match host.rsplit_once(':') {
            Some((name, p)) if !name.is_empty() && !p.contains(']') => {
                (name.to_owned(), p.parse::<u16>().ok()?)
            }
            _ => (host.clone(), if scheme == "https" { 443 } else { 80 }),
        };
        if host_port != *port || !LOOPBACK_NAMES.contains(&name.as_str()) {
            return None;
        }
        Some(format!("{scheme}://{name}:{port}"))
    }

    /// The resource as a client that sent `Host: host` reached it: a loopback alias, else
    /// the canonical resource.
    pub fn as_reached(&self, host: Option<&str>) -> Cow<'_, str> {
        match self.alias_origin(host) {
            Some(origin) => Cow::Owned(format!("{origin}/mcp")),
            None => Cow::Borrowed(&self.canonical),
        }
    }

    /// The protected resource metadata URL for a client that sent `Host: host`.
    pub fn metadata_url(&self, host: Option<&str>) -> String {
        let reached = self.as_reached(host);
        let origin = reached.strip_suffix("/mcp").unwrap_or(&reached);
        format!("{origin}/.well-known/oauth-protected-resource/mcp")
    }

    /// Whether `named` (a `resource` parameter) is this resource: the canonical one or a
    /// loopback alias of it, with or without a trailing slash.
    pub fn accepts(&self, named: &str) -> bool {
        let named = named.trim_end_matches('/');
        if named == self.canonical {
            return true;
        }
        let Ok(url) = url::Url::parse(named) else {
            return false;
        };
        if url.path() != "/mcp" || url.query().is_some() || url.fragment().is_some() {
            return false;
        }
        if !url.username().is_empty() || url.password().is_some() {
            return false;
        }
        let Some((scheme, _)) = &self.loopback else {
            return false;
        };
        let host = match (url.host_str(), url.port_or_known_default()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            _ => return false,
        };
        url.scheme() == scheme && self.alias_origin(Some(&host)).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(public: &str) -> Resource {
        Resource::new(&url::Url::parse(public).expect("url"))
    }

    #[test]
    fn a_loopback_public_url_answers_to_every_loopback_name() {
        let r = resource("http://localhost:8080/");
        assert_eq!(r.canonical(), "http://localhost:8080/mcp");
        assert_eq!(
            r.as_reached(Some("127.0.0.1:8080")),
            "http://127.0.0.1:8080/mcp"
        );
        assert_eq!(r.as_reached(Some("[::1]:8080")), "http://[::1]:8080/mcp");
        assert_eq!(
            r.as_reached(Some("LOCALHOST:8080")),
            "http://localhost:8080/mcp"
        );
        assert_eq!(
            r.metadata_url(Some("127.0.0.1:8080")),
            "http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp"
        );
        for named in [
            "http://localhost:8080/mcp",
            "http://localhost:8080/mcp/",
            "http://127.0.0.1:8080/mcp",
            "http://[::1]:8080/mcp",
        ] {
            assert!(r.accepts(named), "{named}");
        }
    }

    #[test]
    fn other_names_ports_and_paths_are_not_aliases() {
        let r = resource("http://localhost:8080");
        assert_eq!(r.as_reached(Some("evil.example")), r.canonical());
        assert_eq!(r.as_reached(Some("127.0.0.1:9090")), r.canonical());
        assert_eq!(r.as_reached(Some("127.0.0.2:8080")), r.canonical());
        assert_eq!(r.as_reached(None), r.canonical());
        for named in [
            "http://127.0.0.1:9090/mcp",
            "https://127.0.0.1:8080/mcp",
            "http://127.0.0.1:8080/other",
            "http://127.0.0.1:8080/mcp?x=1",
            "http://user:pw@127.0.0.1:8080/mcp",
            "http://evil.example:8080/mcp",
            "not a url",
        ] {
            assert!(!r.accepts(named), "{named}");
        }
    }

    #[test]
    fn a_public_host_has_no_aliases() {
        let r = resource("https://warrant.example.com");
        assert_eq!(r.canonical(), "https://warrant.example.com/mcp");
        assert_eq!(r.as_reached(Some("127.0.0.1:443")), r.canonical());
        assert!(r.accepts("https://warrant.example.com/mcp"));
        assert!(!r.accepts("https://127.0.0.1/mcp"));
        assert_eq!(
            r.metadata_url(Some("localhost")),
            "https://warrant.example.com/.well-known/oauth-protected-resource/mcp"
        );
    }
}
