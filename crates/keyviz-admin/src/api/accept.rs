//! `Accept` negotiation for the peer encodings: one matcher for every media type a peer may
//! ask for, so the matrix handler and the fan-out rounds agree on what a request names.

use http::{HeaderMap, header};

/// Whether the request's `Accept` headers name `media` itself (RFC 9110: type and subtype
/// compared case-insensitively, parameters aside) with a non-zero quality. A longer type that
/// merely starts with `media` (`…-v2` for `…`) does not count, nor does `q=0` (a refusal).
/// Reads at most what the headers hold; takes no lock.
pub(crate) fn accepts(headers: &HeaderMap, media: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';');
            let named = parts
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case(media));
            named && !parts.any(refuses)
        })
}

/// A `q` parameter of zero (`q=0`, `q=0.0`, `q=0.000`).
fn refuses(param: &str) -> bool {
    let Some((name, value)) = param.split_once('=') else {
        return false;
    };
    name.trim().eq_ignore_ascii_case("q")
        && value
            .trim()
            .strip_prefix('0')
            .is_some_and(|rest| rest.is_empty() || rest.trim_start_matches(['.', '0']).is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                header::ACCEPT,
                http::HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{e}")),
            );
        }
        h
    }

    const V1: &str = "application/vnd.keyviz.matrix-boundary";
    const V2: &str = "application/vnd.keyviz.matrix-boundary-v2";

    #[test]
    fn a_type_counts_only_when_named_itself_not_as_the_prefix_of_another() {
        let h = with(&["application/vnd.keyviz.matrix-boundary-v2, application/json;q=0.5"]);
        assert!(accepts(&h, V2));
        assert!(!accepts(&h, V1), "v2 is not v1");
        assert!(accepts(&h, "application/json"));
        assert!(!accepts(&with(&[V1]), V2));
    }

    #[test]
    fn parameters_case_and_several_headers_are_understood() {
        let h = with(&[
            "text/html",
            " Application/VND.keyviz.Matrix-Boundary ; q=0.9 ",
        ]);
        assert!(accepts(&h, V1));
        assert!(!accepts(&h, V2));
        assert!(!accepts(&HeaderMap::new(), V1));
    }

    #[test]
    fn a_zero_quality_is_a_refusal() {
        for q in ["q=0", "q=0.0", "Q = 0.000"] {
            assert!(!accepts(&with(&[&format!("{V1}; {q}")]), V1), "{q}");
        }
        for q in ["q=0.001", "q=1", "q=0.5", "level=0"] {
            assert!(accepts(&with(&[&format!("{V1}; {q}")]), V1), "{q}");
        }
    }
}
