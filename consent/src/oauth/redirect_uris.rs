//! Which redirect URIs a client may register and how a requested one matches: the
//! rules for dynamic registration, metadata documents and configured clients alike.

/// How many redirect URIs one registration may carry, and how long each may be.
pub const MAX_REDIRECT_URIS: usize = 20;
pub const MAX_REDIRECT_URI_LEN: usize = 2000;

/// Private-use schemes of known MCP clients that are not in reverse-domain form:
/// Cursor's `cursor://anysphere.cursor-mcp/oauth/callback`.
pub const KNOWN_CLIENT_SCHEMES: &[&str] = &["cursor"];

/// Why a redirect URI is refused, or `None` when it is acceptable: https, http on a
/// loopback host (any port, RFC 8252 §7.3), a private-use scheme in reverse-domain form
/// (RFC 8252 §7.1: `com.example.app:/cb`), or a scheme of [`KNOWN_CLIENT_SCHEMES`].
/// Any other scheme is refused, whatever its authority: `ms-msdt:`, `search-ms:` and
/// the like start programs of the person's operating system. Never a fragment.
pub fn redirect_uri_problem(uri: &str) -> Option<&'static str> {
    let Ok(url) = url::Url::parse(uri) else {
        return Some("is not an absolute URL");
    };
    if url.fragment().is_some() {
        return Some("must not contain a fragment");
    }
    match url.scheme() {
        "https" if url.host().is_some() => None,
        "https" => Some("has no host"),
        "http" if is_loopback(&url) => None,
        "http" => Some("uses http on a host other than localhost, 127.0.0.1 or [::1]"),
        scheme if scheme.contains('.') => None,
        scheme if KNOWN_CLIENT_SCHEMES.contains(&scheme) => None,
        "javascript" | "data" | "file" | "vbscript" | "blob" | "about" | "ftp" | "ws" | "wss"
        | "mailto" | "tel" => Some("uses a scheme that cannot be a redirect URI"),
        _ => Some(
            "uses a scheme that is neither https nor a private-use scheme in reverse-domain \
             form (such as com.example.app:/callback)",
        ),
    }
}

/// Why a list of redirect URIs cannot be registered, or `None`: at least one, at most
/// [`MAX_REDIRECT_URIS`] of at most [`MAX_REDIRECT_URI_LEN`] bytes, each acceptable to
/// [`redirect_uri_problem`]. The same rules hold for dynamic registration, metadata
/// documents and configured clients.
pub fn redirect_uris_problem(uris: &[String]) -> Option<String> {
    if uris.is_empty() {
        return Some("redirect_uris must name at least one redirect URI".into());
    }
    if uris.len() > MAX_REDIRECT_URIS {
        return Some(format!(
            "at most {MAX_REDIRECT_URIS} redirect URIs may be registered"
        ));
    }
    for uri in uris {
        if uri.len() > MAX_REDIRECT_URI_LEN {
            return Some(format!(
                "a redirect URI is longer than {MAX_REDIRECT_URI_LEN} bytes"
            ));
        }
        if let Some(problem) = redirect_uri_problem(uri) {
            return Some(format!("redirect URI {uri:?} {problem}"));
        }
    }
    None
}

/// `native` when a redirect URI is a loopback or private-use one (an app on the
/// person's device), else `web`.
pub fn default_application_type(uris: &[String]) -> &'static str {
    let native = uris
        .iter()
        .any(|u| url::Url::parse(u).is_ok_and(|u| is_loopback(&u) || u.scheme() != "https"));
    if native { "native" } else { "web" }
}

/// Whether `url` is http on a loopback host.
pub fn is_loopback(url: &url::Url) -> bool {
    if url.scheme() != "http" {
        return false;
    }
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Whether `requested` matches the registered `registered`: exactly, or, for an http
/// loopback URI, equal in everything but the port (RFC 8252 §7.3).
pub fn redirect_uri_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Ok(a), Ok(b)) = (url::Url::parse(registered), url::Url::parse(requested)) else {
        return false;
    };
    is_loopback(&a)
        && is_loopback(&b)
        && a.host() == b.host()
        && a.path() == b.path()
        && a.query() == b.query()
        && a.fragment().is_none()
        && b.fragment().is_none()
        && a.username() == b.username()
        && a.password().is_none()
        && b.password().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_of_real_clients_are_accepted() {
        for ok in [
            "http://localhost/callback",
            "http://localhost:33418/callback",
            "http://127.0.0.1/",
            "http://[::1]:8080/cb",
            "https://app.example.com/oauth/callback",
            "cursor://anysphere.cursor-mcp/oauth/callback",
            "com.example.app:/oauth2redirect",
        ] {
            assert_eq!(redirect_uri_problem(ok), None, "{ok}");
        }
    }

    #[test]
    fn dangerous_redirect_uris_are_refused() {
        for bad in [
            "javascript:alert(1)",
            "data:text/html,hi",
            "http://evil.example.com/cb",
            "https://app.example.com/cb#frag",
            "file:///etc/passwd",
            "not a url",
            "myapp:/cb",
            // OS protocol handlers, even with a dotted authority.
            "ms-msdt://evil.example/id",
            "search-ms://evil.example/query",
            "search-ms:query=x&crumb=location:\\\\evil.example\\share",
            "ms-officecmd://evil.example/",
            "myapp://app.example.com/cb",
        ] {
            assert!(redirect_uri_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn loopback_redirects_may_change_port_only() {
        assert!(redirect_uri_matches(
            "http://localhost/callback",
            "http://localhost:5123/callback"
        ));
        assert!(redirect_uri_matches(
            "http://127.0.0.1/",
            "http://127.0.0.1:9/"
        ));
        assert!(!redirect_uri_matches(
            "http://localhost/callback",
            "http://localhost:5123/other"
        ));
        assert!(!redirect_uri_matches(
            "http://localhost/callback",
            "http://127.0.0.1:5123/callback"
        ));
        assert!(!redirect_uri_matches(
            "https://a.example/cb",
            "https://a.example:444/cb"
        ));
    }
}
