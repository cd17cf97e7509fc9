//! Where a person goes after signing in: the `next` parameter of the sign-in pages,
//! links and flows. It is followed by browsers, so only a path on this site is kept.

use url::Url;

/// The longest `next` kept; a longer one is dropped (no page of Warrant needs more).
const MAX_LEN: usize = 2048;

/// `next` when it is a path on this site, as browsers read it (the WHATWG URL rules):
/// it starts with exactly one `/`, holds no control character, whitespace or backslash
/// (browsers drop tabs and newlines and read `\` as `/`, so `/\t/evil.example` and
/// `/\evil.example` lead off-site), and joined on an origin it keeps that origin.
/// `None` for anything else (`//evil.example`, `https://evil.example`, `javascript:…`).
pub fn local_path(next: &str) -> Option<&str> {
    let ok = next.len() <= MAX_LEN
        && next.starts_with('/')
        && !next.starts_with("//")
        && !next
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\');
    if !ok {
        return None;
    }
    let base = Url::parse("http://warrant.invalid/").ok()?;
    let joined = base.join(next).ok()?;
    (joined.origin() == base.origin()).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn keeps_paths_on_this_site() {
        for good in [
            "/",
            "/account",
            "/admin/users?tab=2&q=a%20b",
            "/oauth/authorize?client_id=x&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb",
            "/a/b#part",
            "/%2F%2Fevil.example",
        ] {
            assert_eq!(local_path(good), Some(good), "{good:?}");
        }
    }

    #[test]
    fn drops_everything_that_leaves_it() {
        for bad in [
            "",
            "account",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            "/ /evil.example",
            "/x\u{0}y",
            "/\u{85}/evil.example",
            "/\u{a0}/evil.example",
            "/a\\b",
            "https://evil.example/",
            "http:/evil.example",
            "javascript:alert(1)",
            " /account",
        ] {
            assert_eq!(local_path(bad), None, "{bad:?}");
        }
        assert_eq!(local_path(&format!("/{}", "a".repeat(3000))), None);
    }
}
