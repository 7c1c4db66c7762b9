//! The manifest format as Rust types: one struct or enum per section of `MANIFEST.md`. Every
//! section refuses keys it does not know, so a misspelt key is an error, not a silent default.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::Value;

use super::select::{FieldPath, KeyFields, Selector};
use super::template::Template;
use crate::http::{RateLimit, RetryPolicy};

/// A connector described by one YAML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// JSON Schema of the connection's configuration; its `default`s fill missing values.
    #[serde(default = "any_object")]
    pub config_schema: JsonSchema,
    /// Where every stream's `path` starts.
    pub base_url: Template,
    #[serde(default)]
    pub auth: Auth,
    /// Sent with every request.
    #[serde(default)]
    pub headers: BTreeMap<String, Template>,
    pub rate_limit: Option<RateLimit>,
    #[serde(default)]
    pub retry: RetryPolicy,
    /// What answers mean, beyond the defaults.
    #[serde(default)]
    pub errors: Vec<ErrorRule>,
    /// Which stream's first page `check` reads (the first stream when absent).
    pub check: Option<Check>,
    pub streams: Vec<StreamDef>,
}

/// A JSON Schema, checked against its meta-schema when the manifest is read.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "Value")]
pub struct JsonSchema(pub Value);

impl TryFrom<Value> for JsonSchema {
    type Error = String;

    fn try_from(schema: Value) -> Result<Self, String> {
        jsonschema::meta::validate(&schema).map_err(|e| format!("not a valid JSON Schema: {e}"))?;
        jsonschema::validator_for(&schema).map_err(|e| format!("not a usable JSON Schema: {e}"))?;
        Ok(Self(schema))
    }
}

fn any_object() -> JsonSchema {
    JsonSchema(serde_json::json!({"type": "object"}))
}

/// How requests authenticate. `none`, or one of the kinds with its values.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    #[default]
    None,
    /// A key in a header or a query parameter.
    ApiKey {
        #[serde(rename = "in")]
        place: KeyPlace,
        /// The header or parameter name.
        name: String,
        value: Template,
    },
    /// `Authorization: Bearer <token>`.
    Bearer { token: Template },
    /// `Authorization: Basic`, the password empty when not given.
    Basic {
        username: Template,
        #[serde(default = "empty")]
        password: Template,
    },
}

fn empty() -> Template {
    Template::parse("").unwrap_or_else(|_| unreachable!("an empty template is valid"))
}

/// Where an API key goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyPlace {
    Header,
    Query,
}

/// What an answer with some status means.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorRule {
    pub status: StatusMatch,
    pub action: Action,
    /// Shown to the user instead of the default message.
    pub message: Option<String>,
}

/// One status (`404`) or a class (`5xx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatch {
    Code(u16),
    Class(u16),
}

impl StatusMatch {
    pub fn matches(self, status: u16) -> bool {
        match self {
            Self::Code(code) => code == status,
            Self::Class(class) => status / 100 == class,
        }
    }
}

impl<'de> Deserialize<'de> for StatusMatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Status;
        impl Visitor<'_> for Status {
            type Value = StatusMatch;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an HTTP status (404) or a class of them (\"5xx\")")
            }

            fn visit_u64<E: de::Error>(self, code: u64) -> Result<StatusMatch, E> {
                match u16::try_from(code) {
                    Ok(code) if (100..600).contains(&code) => Ok(StatusMatch::Code(code)),
                    _ => Err(E::custom(format!("{code} is not an HTTP status"))),
                }
            }

            fn visit_i64<E: de::Error>(self, code: i64) -> Result<StatusMatch, E> {
                self.visit_u64(u64::try_from(code).unwrap_or(0))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<StatusMatch, E> {
                if let Ok(code) = text.parse::<u64>() {
                    return self.visit_u64(code);
                }
                match text.as_bytes() {
                    [class @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] => {
                        Ok(StatusMatch::Class(u16::from(class - b'0')))
                    }
                    _ => Err(E::custom(format!(
                        "{text:?} is not an HTTP status or a class such as \"5xx\""
                    ))),
                }
            }
        }
        deserializer.deserialize_any(Status)
    }
}

/// What to do with an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Try again with back-off; a transient error when tries run out.
    Retry,
    /// Try again after `Retry-After` (or back-off); a rate-limit error when tries run out.
    RateLimited,
    /// The credentials were refused.
    Credentials,
    /// The configuration is wrong.
    Config,
    /// The source misbehaved.
    Fail,
    /// Nothing to read here: the stream ends without an error.
    Ignore,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub stream: String,
}

/// One stream: where its records are and how to page through them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamDef {
    pub name: String,
    /// Appended to `base_url`; values put in its holes are percent-encoded.
    pub path: Template,
    /// Query parameters of every request.
    #[serde(default)]
    pub params: BTreeMap<String, Template>,
    /// Where the records are in an answer (`$.data`); the whole answer when absent.
    #[serde(default)]
    pub records: Selector,
    #[serde(default)]
    pub primary_key: KeyFields,
    pub schema: JsonSchema,
    #[serde(default)]
    pub pagination: Pagination,
    pub incremental: Option<Incremental>,
}

/// How to get from one page to the next.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Pagination {
    /// One request.
    #[default]
    None,
    /// A cursor sent as `param`, taken from the answer or from the page's last record.
    Cursor {
        param: String,
        from: CursorFrom,
        /// A boolean in the answer that says whether more pages follow.
        has_more: Option<Selector>,
        /// Page size, sent as `limit_param`.
        limit_param: Option<String>,
        limit: Option<u32>,
    },
    /// The `Link` header's `rel="next"` URL (RFC 8288).
    LinkHeader,
    /// `offset_param` grows by the page size until a page comes back short.
    Offset {
        offset_param: String,
        limit_param: String,
        limit: u32,
    },
    /// `page_param` counts up from `start` until a page comes back short.
    PageNumber {
        page_param: String,
        #[serde(default = "first_page")]
        start: u64,
        size_param: Option<String>,
        size: u32,
    },
    /// The next page's URL is in the answer.
    NextUrl { path: Selector },
}

fn first_page() -> u64 {
    1
}

/// Where a cursor comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CursorFrom {
    /// A value in the answer (`$.meta.next_cursor`).
    Body(Selector),
    /// A field of the page's last record (`id`, as Stripe's `starting_after`).
    LastRecord(FieldPath),
}

/// Reading only what changed since the last sync.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incremental {
    /// The field that grows when a record is created or changed.
    pub cursor_field: FieldPath,
    /// The query parameter that asks the source for records from a cursor value on. Without
    /// one, every page is read and older records are dropped here.
    pub param: Option<String>,
    /// How the cursor value is written into `param`.
    #[serde(default)]
    pub format: CursorFormat,
    /// How far before the last cursor value each sync starts again, for sources whose
    /// records show up late. Records in the window are read again.
    #[serde(default, with = "humantime_serde")]
    pub lookback: Duration,
    /// The first sync's starting value (`{{ config.start_date }}`); everything when absent.
    pub start: Option<Template>,
}

/// How a cursor value is written into the request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CursorFormat {
    /// As the records hold it.
    #[default]
    Raw,
    /// Seconds since 1970 (`1700000000`).
    UnixSeconds,
    /// Milliseconds since 1970; numeric cursor values in records are read as milliseconds too.
    UnixMillis,
    /// `2024-01-31T12:00:00Z`.
    Rfc3339,
    /// `2024-01-31`.
    Date,
    /// A chrono `strftime` pattern, in UTC.
    Strftime(StrftimePattern),
}

/// A `strftime` pattern chrono can write, checked when the manifest is read (chrono panics
/// on writing with a bad one).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct StrftimePattern(pub String);

impl TryFrom<String> for StrftimePattern {
    type Error = String;

    fn try_from(pattern: String) -> Result<Self, String> {
        use chrono::format::{Item, StrftimeItems};
        if StrftimeItems::new(&pattern).any(|item| matches!(item, Item::Error)) {
            return Err(format!(
                "{pattern:?} is not a strftime pattern chrono knows"
            ));
        }
        Ok(Self(pattern))
    }
}
