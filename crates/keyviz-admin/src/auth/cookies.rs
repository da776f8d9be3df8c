//! Reading the `Cookie` header and writing the two admin cookies.

use http::HeaderMap;
use http::header::COOKIE;

/// Name of the HttpOnly session cookie.
pub const SESSION_COOKIE: &str = "admin_session";
/// Name of the script-readable CSRF cookie.
pub const CSRF_COOKIE: &str = "admin_csrf";
/// Header that must echo the CSRF cookie on state-changing requests.
pub const CSRF_HEADER: &str = "x-admin-csrf";

/// The first value of cookie `name` across all `Cookie` headers, if any.
#[must_use]
pub(crate) fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
}

/// A `Set-Cookie` value with the admin attributes: `Path=/admin`, `SameSite=Strict`,
/// `Max-Age`, `HttpOnly` when asked, `Secure` when asked. `max_age_s <= 0` deletes the
/// cookie (`Max-Age=0` and an epoch `Expires`).
#[must_use]
pub(crate) fn set_cookie(
    name: &str,
    value: &str,
    max_age_s: i64,
    http_only: bool,
    secure: bool,
) -> String {
    let mut s = format!("{name}={value}; Path=/admin");
    if max_age_s > 0 {
        s.push_str(&format!("; Max-Age={max_age_s}"));
    } else {
        s.push_str("; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
    }
    if http_only {
        s.push_str("; HttpOnly");
    }
    if secure {
        s.push_str("; Secure");
    }
    s.push_str("; SameSite=Strict");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn cookie_lookup_spans_headers_and_ignores_other_names() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_static("unrelated=1; admin_csrfx=no"),
        );
        h.append(
            COOKIE,
            HeaderValue::from_static("admin_csrf=abc; admin_session=tok.sig"),
        );
        assert_eq!(cookie_value(&h, CSRF_COOKIE), Some("abc"));
        assert_eq!(cookie_value(&h, SESSION_COOKIE), Some("tok.sig"));
        assert_eq!(cookie_value(&h, "missing"), None);
    }

    #[test]
    fn set_cookie_attributes() {
        let c = set_cookie(SESSION_COOKIE, "v", 3600, true, true);
        assert_eq!(
            c,
            "admin_session=v; Path=/admin; Max-Age=3600; HttpOnly; Secure; SameSite=Strict"
        );
        let d = set_cookie(CSRF_COOKIE, "", 0, false, false);
        assert!(d.starts_with("admin_csrf=; Path=/admin; Max-Age=0; Expires="));
        assert!(!d.contains("HttpOnly") && !d.contains("Secure"));
    }
}
