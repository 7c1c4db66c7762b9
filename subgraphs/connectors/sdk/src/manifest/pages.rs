//! Pagination: which parameters ask for a page, and where the next page is, for each style a
//! manifest can name. A [`PageToken`] is what a checkpoint keeps to resume from a page.

use reqwest::header::{HeaderMap, LINK};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::model::{CursorFrom, Pagination};

/// Which page to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PageToken {
    First,
    /// A cursor the source gave.
    Cursor(String),
    /// A full URL the source gave (`Link` header, next URL in the body).
    Url(String),
    Offset(u64),
    Page(u64),
}

/// The query parameters that ask for `token`'s page. A [`PageToken::Url`] page needs none: its
/// URL has them.
pub(crate) fn params(pagination: &Pagination, token: &PageToken) -> Vec<(String, String)> {
    let mut params = Vec::new();
    match pagination {
        Pagination::None | Pagination::LinkHeader | Pagination::NextUrl { .. } => {}
        Pagination::Cursor {
            param,
            limit_param,
            limit,
            ..
        } => {
            if let (Some(name), Some(limit)) = (limit_param, limit) {
                params.push((name.clone(), limit.to_string()));
            }
            if let PageToken::Cursor(cursor) = token {
                params.push((param.clone(), cursor.clone()));
            }
        }
        Pagination::Offset {
            offset_param,
            limit_param,
            limit,
        } => {
            let offset = match token {
                PageToken::Offset(offset) => *offset,
                _ => 0,
            };
            params.push((offset_param.clone(), offset.to_string()));
            params.push((limit_param.clone(), limit.to_string()));
        }
        Pagination::PageNumber {
            page_param,
            start,
            size_param,
            size,
        } => {
            let page = match token {
                PageToken::Page(page) => *page,
                _ => *start,
            };
            params.push((page_param.clone(), page.to_string()));
            if let Some(name) = size_param {
                params.push((name.clone(), size.to_string()));
            }
        }
    }
    params
}

/// What came back for one page, as pagination needs it.
pub(crate) struct Page<'p> {
    pub url: &'p Url,
    pub headers: &'p HeaderMap,
    pub body: &'p Value,
    /// The records of the page as the source sent them (before any filtering).
    pub records: &'p [Value],
}

/// The page after `token`, or `None` when `page` was the last. An error when the source's
/// answer cannot be followed (a next link that is not a URL, a page that points at itself).
pub(crate) fn next(
    pagination: &Pagination,
    token: &PageToken,
    page: &Page<'_>,
) -> Result<Option<PageToken>, String> {
    let next = match pagination {
        Pagination::None => None,
        Pagination::Cursor { from, has_more, .. } => {
            let more = has_more
                .as_ref()
                .is_none_or(|selector| selector.select(page.body) == Some(&Value::Bool(true)));
            let cursor = match from {
                CursorFrom::Body(selector) => selector.select(page.body).and_then(scalar),
                CursorFrom::LastRecord(field) => page
                    .records
                    .last()
                    .and_then(|record| field.0.iter().try_fold(record, |v, k| v.get(k)))
                    .and_then(scalar),
            };
            cursor
                .filter(|c| more && !c.is_empty())
                .map(PageToken::Cursor)
        }
        Pagination::LinkHeader => next_link(page.headers)
            .map(|link| absolute(page.url, &link))
            .transpose()?
            .map(PageToken::Url),
        Pagination::NextUrl { path } => path
            .select(page.body)
            .and_then(scalar)
            .filter(|link| !link.is_empty())
            .map(|link| absolute(page.url, &link))
            .transpose()?
            .map(PageToken::Url),
        Pagination::Offset { limit, .. } => {
            let offset = match token {
                PageToken::Offset(offset) => *offset,
                _ => 0,
            };
            full_page(page.records, *limit).then(|| PageToken::Offset(offset + u64::from(*limit)))
        }
        Pagination::PageNumber { start, size, .. } => {
            let number = match token {
                PageToken::Page(number) => *number,
                _ => *start,
            };
            full_page(page.records, *size).then(|| PageToken::Page(number + 1))
        }
    };
    if next.as_ref() == Some(token) {
        return Err(format!(
            "the next page is the page just read ({token:?}); pagination does not advance"
        ));
    }
    Ok(next)
}

/// A page as long as asked for: there may be more. (A short or empty page is the last.)
fn full_page(records: &[Value], size: u32) -> bool {
    !records.is_empty() && records.len() >= usize::try_from(size).unwrap_or(usize::MAX)
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

fn absolute(base: &Url, link: &str) -> Result<String, String> {
    base.join(link)
        .map(String::from)
        .map_err(|e| format!("the next page link {link:?} is not a URL: {e}"))
}

/// The `rel="next"` target of a `Link` header (RFC 8288), if any.
fn next_link(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|link| {
            let (target, params) = link.trim().strip_prefix('<')?.split_once('>')?;
            let is_next = params.split(';').any(|param| {
                let Some((name, value)) = param.split_once('=') else {
                    return false;
                };
                name.trim().eq_ignore_ascii_case("rel")
                    && value
                        .trim()
                        .trim_matches('"')
                        .split_ascii_whitespace()
                        .any(|rel| rel.eq_ignore_ascii_case("next"))
            });
            is_next.then(|| target.to_owned())
        })
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;
    use serde_json::json;

    use super::*;
    use crate::manifest::select::{FieldPath, Selector};

    fn page<'p>(
        url: &'p Url,
        headers: &'p HeaderMap,
        body: &'p Value,
        records: &'p [Value],
    ) -> Page<'p> {
        Page {
            url,
            headers,
            body,
            records,
        }
    }

    #[test]
    fn cursor_from_the_last_record_stops_when_has_more_is_false() {
        let stripe = Pagination::Cursor {
            param: "starting_after".into(),
            from: CursorFrom::LastRecord(FieldPath(vec!["id".into()])),
            has_more: Some(Selector::parse("$.has_more").unwrap()),
            limit_param: Some("limit".into()),
            limit: Some(2),
        };
        let url = Url::parse("http://x/v1/charges").unwrap();
        let headers = HeaderMap::new();
        let records = [json!({"id": "ch_1"}), json!({"id": "ch_2"})];
        let more = json!({"has_more": true});
        assert_eq!(
            next(
                &stripe,
                &PageToken::First,
                &page(&url, &headers, &more, &records)
            )
            .unwrap(),
            Some(PageToken::Cursor("ch_2".into()))
        );
        let last = json!({"has_more": false});
        assert_eq!(
            next(
                &stripe,
                &PageToken::First,
                &page(&url, &headers, &last, &records)
            )
            .unwrap(),
            None
        );
        assert_eq!(
            params(&stripe, &PageToken::Cursor("ch_2".into())),
            vec![
                ("limit".into(), "2".into()),
                ("starting_after".into(), "ch_2".into())
            ]
        );
        // A cursor that does not move is the source's bug, not an endless loop.
        assert!(
            next(
                &stripe,
                &PageToken::Cursor("ch_2".into()),
                &page(&url, &headers, &more, &records)
            )
            .is_err()
        );
    }

    #[test]
    fn link_headers_and_next_urls_are_resolved_against_the_page() {
        let url = Url::parse("http://x/api/items?page=1").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            LINK,
            HeaderValue::from_static(
                r#"<http://x/api/items?page=1>; rel="prev first", </api/items?page=2>; rel="next""#,
            ),
        );
        let body = json!({});
        let records = [json!({})];
        assert_eq!(
            next(
                &Pagination::LinkHeader,
                &PageToken::First,
                &page(&url, &headers, &body, &records)
            )
            .unwrap(),
            Some(PageToken::Url("http://x/api/items?page=2".into()))
        );
        let none = HeaderMap::new();
        assert_eq!(
            next(
                &Pagination::LinkHeader,
                &PageToken::First,
                &page(&url, &none, &body, &records)
            )
            .unwrap(),
            None
        );
        let in_body = Pagination::NextUrl {
            path: Selector::parse("$.next").unwrap(),
        };
        let body = json!({"next": "items?page=3"});
        assert_eq!(
            next(
                &in_body,
                &PageToken::First,
                &page(&url, &none, &body, &records)
            )
            .unwrap(),
            Some(PageToken::Url("http://x/api/items?page=3".into()))
        );
        let end = json!({"next": null});
        assert_eq!(
            next(
                &in_body,
                &PageToken::First,
                &page(&url, &none, &end, &records)
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn offsets_and_page_numbers_stop_at_a_short_page() {
        let url = Url::parse("http://x/").unwrap();
        let headers = HeaderMap::new();
        let body = json!([]);
        let offset = Pagination::Offset {
            offset_param: "offset".into(),
            limit_param: "limit".into(),
            limit: 2,
        };
        let full = [json!(1), json!(2)];
        let short = [json!(3)];
        assert_eq!(
            next(
                &offset,
                &PageToken::Offset(4),
                &page(&url, &headers, &body, &full)
            )
            .unwrap(),
            Some(PageToken::Offset(6))
        );
        assert_eq!(
            next(
                &offset,
                &PageToken::Offset(6),
                &page(&url, &headers, &body, &short)
            )
            .unwrap(),
            None
        );
        assert_eq!(
            params(&offset, &PageToken::First),
            vec![("offset".into(), "0".into()), ("limit".into(), "2".into())]
        );
        let pages = Pagination::PageNumber {
            page_param: "page".into(),
            start: 1,
            size_param: Some("per_page".into()),
            size: 2,
        };
        assert_eq!(
            next(
                &pages,
                &PageToken::First,
                &page(&url, &headers, &body, &full)
            )
            .unwrap(),
            Some(PageToken::Page(2))
        );
        assert_eq!(
            next(
                &pages,
                &PageToken::Page(2),
                &page(&url, &headers, &body, &[])
            )
            .unwrap(),
            None
        );
    }
}
