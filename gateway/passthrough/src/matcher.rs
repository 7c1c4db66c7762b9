//! Route paths: literal segments and `{name}` segments matching any one segment; a pattern
//! matches its path and everything below it. A rewrite replaces the matched part, with the
//! captured segments substituted, and keeps the rest.

use std::fmt;

#[derive(Clone, Debug, PartialEq)]
enum Segment {
    Literal(String),
    Capture(String),
}

/// A parsed route path such as `/api/orders/{id}`.
#[derive(Clone, Debug, PartialEq)]
pub struct PathPattern {
    segments: Vec<Segment>,
}

/// What a pattern matched: the captured segments and the unmatched rest (`""` or `/...`).
#[derive(Debug, PartialEq)]
pub struct PathMatch<'a> {
    captures: Vec<(&'a str, &'a str)>,
    pub rest: &'a str,
}

/// A malformed pattern or rewrite.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct PatternError(String);

impl PathPattern {
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        let Some(body) = pattern.strip_prefix('/') else {
            return Err(PatternError(format!("{pattern:?} must start with '/'")));
        };
        let mut segments = Vec::new();
        for segment in body.split('/').filter(|s| !s.is_empty()) {
            if let Some(name) = segment.strip_prefix('{') {
                let name = name.strip_suffix('}').filter(|n| valid_name(n)).ok_or_else(|| {
                    PatternError(format!(
                        "{pattern:?}: {segment:?} is not a capture (write `{{name}}`, letters, digits and '_')"
                    ))
                })?;
                if segments
                    .iter()
                    .any(|s| matches!(s, Segment::Capture(n) if n == name))
                {
                    return Err(PatternError(format!(
                        "{pattern:?}: `{{{name}}}` is captured twice"
                    )));
                }
                segments.push(Segment::Capture(name.to_owned()));
            } else if segment.contains(['{', '}', '?', '#']) || is_dot_segment(segment) {
                return Err(PatternError(format!(
                    "{pattern:?}: {segment:?} is not a path segment"
                )));
            } else {
                segments.push(Segment::Literal(segment.to_owned()));
            }
        }
        Ok(Self { segments })
    }

    /// Orders patterns from the most specific: more segments, then more literal ones.
    pub fn specificity(&self) -> (usize, usize) {
        let literals = self
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count();
        (self.segments.len(), literals)
    }

    pub fn captures(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Capture(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// Matches `path` (already checked by [`check_path`]) at segment boundaries.
    pub fn matches<'a>(&'a self, path: &'a str) -> Option<PathMatch<'a>> {
        let mut rest = path;
        let mut captures = Vec::new();
        for segment in &self.segments {
            let body = rest.strip_prefix('/')?;
            let end = body.find('/').unwrap_or(body.len());
            let (value, after) = body.split_at(end);
            match segment {
                Segment::Literal(literal) if literal == value => {}
                Segment::Capture(name) if !value.is_empty() => {
                    captures.push((name.as_str(), value))
                }
                _ => return None,
            }
            rest = after;
        }
        Some(PathMatch { captures, rest })
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("/");
        }
        for segment in &self.segments {
            match segment {
                Segment::Literal(literal) => write!(f, "/{literal}")?,
                Segment::Capture(name) => write!(f, "/{{{name}}}")?,
            }
        }
        Ok(())
    }
}

/// A rewrite template: `/v2/orders/{id}`; captures refer to the route's pattern.
#[derive(Clone, Debug, PartialEq)]
pub struct Rewrite {
    template: PathPattern,
}

impl Rewrite {
    /// Parses `template`, whose captures must all be captured by `pattern`.
    pub fn parse(template: &str, pattern: &PathPattern) -> Result<Self, PatternError> {
        let template = PathPattern::parse(template)?;
        if let Some(unknown) = template
            .captures()
            .find(|name| !pattern.captures().any(|known| known == *name))
        {
            return Err(PatternError(format!(
                "rewrite {template}: `{{{unknown}}}` is not captured by the path {pattern}"
            )));
        }
        Ok(Self { template })
    }

    /// The upstream path for a match: the template with captures filled in, then the rest
    /// (`""` when both are empty).
    pub fn apply(&self, matched: &PathMatch<'_>) -> String {
        let mut path = String::with_capacity(64);
        for segment in &self.template.segments {
            path.push('/');
            match segment {
                Segment::Literal(literal) => path.push_str(literal),
                Segment::Capture(name) => path.push_str(
                    matched
                        .captures
                        .iter()
                        .find(|(n, _)| n == name)
                        .map_or("", |(_, v)| v),
                ),
            }
        }
        path.push_str(matched.rest);
        // Empty for `/` with nothing after the match: the upstream's base path as it is.
        path
    }
}

/// Why the router does not forward a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnsafePath {
    #[error("the path is not absolute")]
    Relative,
    /// An upstream resolving it could leave the route's prefix.
    #[error("the path has `.` or `..` segments")]
    DotSegment,
    /// An upstream decoding `%2F` or `%5C` (or taking `\` for `/`, as some do) would see
    /// segments the matcher did not: `..%2F` is a dot segment there, and a capture could
    /// carry a whole path into the middle of a rewrite. nginx decodes before it matches;
    /// refusing is the same guard with less to get wrong. `%00` ends a path for some.
    #[error("the path has an encoded `/`, `\\` or NUL, or a `\\`")]
    HiddenSeparator,
}

/// A path the router forwards: absolute; without `.`/`..` segments (in any percent
/// encoding, or with `;parameters` as servlet containers read them) an upstream could
/// resolve to somewhere the route does not cover; and without separators in disguise.
/// Checked before matching, so captures never hold one either.
pub fn check_path(path: &str) -> Result<(), UnsafePath> {
    if !path.starts_with('/') {
        return Err(UnsafePath::Relative);
    }
    if has_hidden_separator(path.as_bytes()) {
        return Err(UnsafePath::HiddenSeparator);
    }
    if path.split('/').any(is_dot_segment) {
        return Err(UnsafePath::DotSegment);
    }
    Ok(())
}

pub fn is_safe_path(path: &str) -> bool {
    check_path(path).is_ok()
}

/// `\`, or `%2F`, `%5C` or `%00` in any case.
fn has_hidden_separator(path: &[u8]) -> bool {
    path.iter().enumerate().any(|(at, byte)| match byte {
        b'\\' => true,
        b'%' => matches!(
            path.get(at + 1..at + 3),
            Some([b'2', b'f' | b'F'] | [b'5', b'c' | b'C'] | [b'0', b'0'])
        ),
        _ => false,
    })
}

/// `.` or `..`, each dot possibly written `%2e` or `%2E`, possibly followed by `;` and
/// parameters (`..;x`, which Tomcat and others resolve as `..`).
fn is_dot_segment(segment: &str) -> bool {
    let segment = segment.split_once(';').map_or(segment, |(name, _)| name);
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', b'e' | b'E', tail @ ..] => tail,
            _ => return false,
        };
        dots += 1;
    }
    dots == 1 || dots == 2
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> PathPattern {
        PathPattern::parse(text).unwrap()
    }

    #[test]
    fn a_prefix_matches_itself_and_below_at_segment_boundaries() {
        let orders = pattern("/api/orders");
        assert_eq!(orders.matches("/api/orders").unwrap().rest, "");
        assert_eq!(orders.matches("/api/orders/").unwrap().rest, "/");
        assert_eq!(
            orders.matches("/api/orders/7/items").unwrap().rest,
            "/7/items"
        );
        assert!(orders.matches("/api/ordersx").is_none());
        assert!(orders.matches("/api").is_none());
        assert!(orders.matches("/other/orders").is_none());
        assert_eq!(pattern("/").matches("/anything").unwrap().rest, "/anything");
    }

    #[test]
    fn captures_take_one_nonempty_segment_and_fill_rewrites() {
        let items = pattern("/shops/{shop}/orders/{id}");
        let matched = items.matches("/shops/acme/orders/42/lines").unwrap();
        assert_eq!(matched.captures, vec![("shop", "acme"), ("id", "42")]);
        let rewrite = Rewrite::parse("/v2/{shop}/order/{id}", &items).unwrap();
        assert_eq!(rewrite.apply(&matched), "/v2/acme/order/42/lines");
        assert!(items.matches("/shops//orders/42").is_none());
    }

    #[test]
    fn a_root_rewrite_strips_the_prefix() {
        let api = pattern("/legacy/api");
        let strip = Rewrite::parse("/", &api).unwrap();
        assert_eq!(
            strip.apply(&api.matches("/legacy/api/users/1").unwrap()),
            "/users/1"
        );
        assert_eq!(strip.apply(&api.matches("/legacy/api").unwrap()), "");
        assert_eq!(strip.apply(&api.matches("/legacy/api/").unwrap()), "/");
    }

    #[test]
    fn malformed_patterns_and_rewrites_are_refused_with_the_reason() {
        for bad in [
            "api",
            "/a/{",
            "/a/{b-c}",
            "/a/{x}/{x}",
            "/a/../b",
            "/a/%2E",
            "/a?b",
        ] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
        let error = Rewrite::parse("/v2/{id}", &pattern("/orders")).unwrap_err();
        assert!(
            error.to_string().contains("`{id}` is not captured"),
            "{error}"
        );
    }

    #[test]
    fn more_segments_then_more_literals_are_more_specific() {
        assert!(pattern("/a/b").specificity() > pattern("/a").specificity());
        assert!(pattern("/a/b").specificity() > pattern("/a/{x}").specificity());
        assert_eq!(pattern("/a/{x}").to_string(), "/a/{x}");
    }

    #[test]
    fn dot_segments_in_any_encoding_are_unsafe() {
        assert!(is_safe_path("/api/orders/1"));
        assert!(is_safe_path("/api/.well/x"));
        for unsafe_path in [
            "/api/../admin",
            "/api/./x",
            "/api/%2e%2e/admin",
            "/api/%2E./x",
            "/api/..;/admin",
            "/api/.;x/admin",
            "api",
        ] {
            assert!(!is_safe_path(unsafe_path), "{unsafe_path}");
        }
        assert!(is_safe_path("/api/a;b/x"), "parameters on a name are fine");
        assert_eq!(check_path("/api/../x"), Err(UnsafePath::DotSegment));
        assert_eq!(check_path("api"), Err(UnsafePath::Relative));
    }

    #[test]
    fn encoded_slashes_backslashes_and_nuls_are_unsafe_anywhere() {
        for unsafe_path in [
            "/files/..%2fsecret.txt",
            "/files/..%2Fsecret.txt",
            "/files/..%5csecret.txt",
            "/files/..%5Csecret.txt",
            "/files/a%2f..%2f..%2fetc",
            "/files/..\\secret.txt",
            "/files/report%00.png",
        ] {
            assert_eq!(
                check_path(unsafe_path),
                Err(UnsafePath::HiddenSeparator),
                "{unsafe_path}"
            );
        }
        for safe in [
            "/files/a%20b",
            "/files/%252f",
            "/files/%2e.txt",
            "/files/100%",
            "/files/x%2",
        ] {
            assert!(is_safe_path(safe), "{safe}");
        }
        // A capture cannot carry `..%2f..%2f` into a rewrite: the whole path is refused
        // before any pattern sees it.
        let files = pattern("/files/{shop}");
        let rewrite = Rewrite::parse("/public/{shop}/data", &files).unwrap();
        let path = "/files/..%2f..%2fadmin";
        assert!(!is_safe_path(path));
        assert_eq!(
            rewrite.apply(&files.matches(path).unwrap()),
            "/public/..%2f..%2fadmin/data",
            "what an unchecked path would have become"
        );
    }
}
