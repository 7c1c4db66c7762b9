//! Reading one manifest stream: a page at a time, its records, then a checkpoint that resumes
//! after it. Only one page is held at once, so memory stays flat whatever the source's size.

use std::collections::VecDeque;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Response, StatusCode};
use serde_json::Value;
use tracing::debug;
use url::Url;

use super::ManifestConnector;
use super::cursor::{self, Run, StreamState};
use super::model::{Action, Auth, ErrorRule, Incremental, KeyPlace, StreamDef};
use super::pages::{self, Page, PageToken};
use super::template::encode_path_segment;
use crate::connector::{Connection, Message, MessageStream, Record, State, StreamSpec};
use crate::error::ConnectorError;
use crate::http::HttpClient;

/// The stream of messages for one read. Setting up fails into the stream's first item.
pub(super) fn read<'a>(
    connector: &'a ManifestConnector,
    connection: &'a Connection,
    stream: &'a str,
    state: Option<State>,
) -> MessageStream<'a> {
    enum Step<'a> {
        Reading(Box<Reader<'a>>),
        Failed(ConnectorError),
        Done,
    }
    let first = match Reader::start(connector, connection, stream, state) {
        Ok(reader) => Step::Reading(Box::new(reader)),
        Err(error) => Step::Failed(error),
    };
    Box::pin(futures_util::stream::unfold(first, |step| async move {
        match step {
            Step::Done => None,
            Step::Failed(error) => Some((Err(error), Step::Done)),
            Step::Reading(mut reader) => match reader.next().await {
                Some(Ok(message)) => Some((Ok(message), Step::Reading(reader))),
                Some(Err(error)) => Some((Err(error), Step::Done)),
                None => None,
            },
        }
    }))
}

/// One read of one stream in progress.
pub(super) struct Reader<'a> {
    def: &'a StreamDef,
    spec: StreamSpec,
    incremental: Option<&'a Incremental>,
    http: HttpClient,
    /// The first page's URL: base URL, path and the stream's own parameters.
    base: Url,
    headers: HeaderMap,
    /// An API key sent as a query parameter: added to every request, never stored.
    key_param: Option<(String, String)>,
    /// The state the read started from (its cursor and the records at it).
    saved: StreamState,
    run: Run,
    pending: VecDeque<Message>,
    finished: bool,
    rules: &'a [ErrorRule],
    stream: String,
}

impl<'a> Reader<'a> {
    pub(super) fn start(
        connector: &'a ManifestConnector,
        connection: &'a Connection,
        stream: &str,
        state: Option<State>,
    ) -> Result<Self, ConnectorError> {
        let manifest = &connector.manifest;
        let def = manifest
            .streams
            .iter()
            .find(|s| s.name == stream)
            .ok_or_else(|| {
                let known: Vec<&str> = manifest.streams.iter().map(|s| s.name.as_str()).collect();
                ConnectorError::config(format!(
                    "{} has no stream `{stream}`; it has {}",
                    manifest.name,
                    known.join(", ")
                ))
            })?;
        let schema = &manifest.config_schema.0;
        let context = |e: ConnectorError| e.context(format!("stream {stream}"));

        let base_text = manifest
            .base_url
            .render(connection, schema)
            .map_err(context)?;
        let mut base = Url::parse(&base_text).map_err(|e| {
            ConnectorError::config(format!("base_url {base_text:?} is not a URL: {e}"))
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ConnectorError::config(format!(
                "base_url must use http or https, not {}",
                base.scheme()
            )));
        }
        let path = def
            .path
            .render_with(connection, schema, encode_path_segment)
            .map_err(context)?;
        let joined = format!(
            "{}/{}",
            base.path().trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        base.set_path(&joined);
        for (name, value) in &def.params {
            let value = value.render(connection, schema).map_err(context)?;
            base.query_pairs_mut().append_pair(name, &value);
        }

        let mut headers = HeaderMap::new();
        let header = |name: &str,
                      value: String|
         -> Result<(HeaderName, HeaderValue), ConnectorError> {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ConnectorError::config(format!("`{name}` is not a header name")))?;
            let value = HeaderValue::from_str(&value).map_err(|_| {
                ConnectorError::config(format!(
                    "the value for header {name} is not valid in a header"
                ))
            })?;
            Ok((name, value))
        };
        for (name, value) in &manifest.headers {
            let (name, value) = header(name, value.render(connection, schema).map_err(context)?)?;
            headers.insert(name, value);
        }
        let mut key_param = None;
        match &manifest.auth {
            Auth::None => {}
            Auth::Bearer { token } => {
                let token = token.render(connection, schema)?;
                let (name, mut value) = header(AUTHORIZATION.as_str(), format!("Bearer {token}"))?;
                value.set_sensitive(true);
                headers.insert(name, value);
            }
            Auth::Basic { username, password } => {
                use base64::Engine as _;
                let pair = format!(
                    "{}:{}",
                    username.render(connection, schema)?,
                    password.render(connection, schema)?
                );
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                let (name, mut value) = header(AUTHORIZATION.as_str(), format!("Basic {encoded}"))?;
                value.set_sensitive(true);
                headers.insert(name, value);
            }
            Auth::ApiKey { place, name, value } => {
                let value = value.render(connection, schema)?;
                match place {
                    KeyPlace::Header => {
                        let (name, mut value) = header(name, value)?;
                        value.set_sensitive(true);
                        headers.insert(name, value);
                    }
                    KeyPlace::Query => key_param = Some((name.clone(), value)),
                }
            }
        }

        let saved: StreamState = match state {
            None => StreamState::default(),
            Some(State(value)) => serde_json::from_value(value).map_err(|e| {
                ConnectorError::config(format!(
                    "stream {stream}: the stored state is not this connector's: {e}"
                ))
            })?,
        };
        let incremental = def.incremental.as_ref();
        let run = match &saved.run {
            Some(run) => run.clone(),
            None => Run {
                from: match incremental {
                    Some(inc) => match &saved.cursor {
                        Some(cursor) => Some(
                            cursor::minus(cursor, inc.lookback, &inc.format)
                                .map_err(ConnectorError::source_bug)
                                .map_err(context)?,
                        ),
                        None => match &inc.start {
                            Some(start) => {
                                let start = start.render(connection, schema).map_err(context)?;
                                (!start.is_empty()).then_some(Value::String(start))
                            }
                            None => None,
                        },
                    },
                    None => None,
                },
                page: PageToken::First,
                max: saved.cursor.clone(),
                at_max: saved.at_cursor.clone(),
            },
        };

        let mut http = connector.http.clone();
        if let Some(limit) = manifest.rate_limit {
            http = http.with_rate_limiter(connection.rate_limiter(limit));
        }
        Ok(Self {
            def,
            spec: ManifestConnector::stream_spec(def),
            incremental,
            http,
            base,
            headers,
            key_param,
            saved,
            run,
            pending: VecDeque::new(),
            finished: false,
            rules: &manifest.errors,
            stream: stream.to_owned(),
        })
    }

    /// The next message: from the page already read, or after reading the next page.
    async fn next(&mut self) -> Option<Result<Message, ConnectorError>> {
        loop {
            if let Some(message) = self.pending.pop_front() {
                return Some(Ok(message));
            }
            if self.finished {
                return None;
            }
            if let Err(error) = self.read_page().await {
                return Some(Err(error.context(format!("stream {}", self.stream))));
            }
        }
    }

    /// Reads the run's next page into `pending`: its records, then a checkpoint.
    pub(super) async fn read_page(&mut self) -> Result<(), ConnectorError> {
        let url = self.page_url()?;
        debug!(stream = %self.stream, page = ?self.run.page, "reading a page");
        let request = self
            .http
            .reqwest()
            .get(url.clone())
            .headers(self.headers.clone())
            .build()
            .map_err(|e| ConnectorError::config(format!("cannot build the request: {e}")))?;
        let response = self.http.send(request).await?;
        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            return self.finish_page(&url, &HeaderMap::new(), Value::Null);
        }
        if !status.is_success() {
            return match self.judge(status, response).await {
                Some(error) => Err(error),
                // An answer the manifest says to ignore: nothing more to read here.
                None => self.finish_page(&url, &HeaderMap::new(), Value::Null),
            };
        }
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ConnectorError::transient(format!("the answer was cut short: {e}")))?;
        let body: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ConnectorError::source_bug(format!(
                "the answer is not JSON ({e}): {}",
                excerpt(&String::from_utf8_lossy(&bytes))
            ))
        })?;
        self.finish_page(&url, &headers, body)
    }

    /// The URL of the run's next page.
    fn page_url(&self) -> Result<Url, ConnectorError> {
        let mut url = match &self.run.page {
            PageToken::Url(link) => {
                let url = Url::parse(link).map_err(|e| {
                    ConnectorError::source_bug(format!(
                        "the next page link {link:?} is not a URL: {e}"
                    ))
                })?;
                if url.origin() != self.base.origin() {
                    return Err(ConnectorError::source_bug(format!(
                        "the next page is on {}, not {}: credentials are sent to the configured \
                         host only",
                        url.origin().ascii_serialization(),
                        self.base.origin().ascii_serialization()
                    )));
                }
                url
            }
            token => {
                let mut url = self.base.clone();
                {
                    let mut query = url.query_pairs_mut();
                    if let (Some(inc), Some(from)) = (self.incremental, &self.run.from)
                        && let Some(param) = &inc.param
                    {
                        let value = cursor::format_param(from, &inc.format)
                            .map_err(ConnectorError::source_bug)?;
                        query.append_pair(param, &value);
                    }
                    for (name, value) in pages::params(&self.def.pagination, token) {
                        query.append_pair(&name, &value);
                    }
                }
                url
            }
        };
        if let Some((name, value)) = &self.key_param {
            url = without_param(&url, name);
            url.query_pairs_mut().append_pair(name, value);
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        Ok(url)
    }

    /// Turns one page's answer into records and a checkpoint.
    fn finish_page(
        &mut self,
        url: &Url,
        headers: &HeaderMap,
        mut body: Value,
    ) -> Result<(), ConnectorError> {
        let records = self
            .def
            .records
            .take_records(&mut body)
            .map_err(ConnectorError::source_bug)?;
        let next = pages::next(
            &self.def.pagination,
            &self.run.page,
            &Page {
                url,
                headers,
                body: &body,
                records: &records,
            },
        )
        .map_err(ConnectorError::source_bug)?;
        for data in records {
            if self.keep(&data)? {
                self.pending.push_back(Message::Record(Record { data }));
            }
        }
        match next {
            Some(token) => {
                // A next-page URL may echo the API key; a checkpoint never holds it.
                self.run.page = match (token, &self.key_param) {
                    (PageToken::Url(link), Some((name, _))) => match Url::parse(&link) {
                        Ok(link) => PageToken::Url(without_param(&link, name).into()),
                        Err(_) => PageToken::Url(link),
                    },
                    (token, _) => token,
                };
                let state = StreamState {
                    cursor: self.saved.cursor.clone(),
                    at_cursor: self.saved.at_cursor.clone(),
                    run: Some(self.run.clone()),
                };
                self.pending
                    .push_back(Message::Checkpoint(to_state(&state)));
            }
            None => {
                let state = match self.incremental {
                    Some(_) => StreamState {
                        cursor: self.run.max.clone(),
                        at_cursor: std::mem::take(&mut self.run.at_max),
                        run: None,
                    },
                    None => StreamState::default(),
                };
                self.pending
                    .push_back(Message::Checkpoint(to_state(&state)));
                self.finished = true;
            }
        }
        Ok(())
    }

    /// Whether `record` is new to this read, counting its cursor value when it is.
    fn keep(&mut self, record: &Value) -> Result<bool, ConnectorError> {
        let key = if self.spec.primary_key.is_empty() {
            Vec::new()
        } else {
            self.spec.key_of(record).ok_or_else(|| {
                let fields: Vec<String> =
                    self.spec.primary_key.iter().map(|p| p.join(".")).collect();
                ConnectorError::source_bug(format!(
                    "a record has no primary key ({}): {}",
                    fields.join(", "),
                    excerpt(&record.to_string())
                ))
            })?
        };
        let (Some(inc), Some(cursor)) = (self.incremental, self.spec.cursor_of(record)) else {
            return Ok(true);
        };
        // Older than the filter: a source that ignores the filter parameter, or has none.
        if let Some(from) = &self.run.from
            && cursor::compare(cursor, from, &inc.format).is_lt()
        {
            return Ok(false);
        }
        // Read at the end of the last sync already (an inclusive filter sends it again).
        if let Some(last) = &self.saved.cursor
            && cursor::compare(cursor, last, &inc.format).is_eq()
            && !key.is_empty()
            && self.saved.at_cursor.contains(&key)
        {
            return Ok(false);
        }
        self.run.saw(cursor, key, &inc.format);
        Ok(true)
    }

    /// The error an unsuccessful answer stands for, or `None` for one to ignore.
    async fn judge(&self, status: StatusCode, response: Response) -> Option<ConnectorError> {
        let rule = self
            .rules
            .iter()
            .find(|rule| rule.status.matches(status.as_u16()));
        let body = response.text().await.unwrap_or_default();
        let default_message = || {
            let reason = status.canonical_reason().unwrap_or("");
            format!(
                "{} answered {} {reason}: {}",
                redacted(&self.base),
                status.as_u16(),
                excerpt(&body)
            )
        };
        let message = rule
            .and_then(|rule| rule.message.clone())
            .unwrap_or_else(default_message);
        let action = match rule.map(|rule| rule.action) {
            Some(action) => action,
            None => match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Action::Credentials,
                StatusCode::BAD_REQUEST
                | StatusCode::NOT_FOUND
                | StatusCode::UNPROCESSABLE_ENTITY => Action::Config,
                _ => Action::Fail,
            },
        };
        Some(match action {
            Action::Ignore => return None,
            Action::Credentials => ConnectorError::credentials(message),
            Action::Config => ConnectorError::config(message),
            Action::Retry => ConnectorError::transient(message),
            Action::RateLimited => ConnectorError::rate_limited(message, None),
            Action::Fail => ConnectorError::source_bug(message),
        })
    }
}

fn to_state(state: &StreamState) -> State {
    // A struct of JSON values and strings always serializes.
    State(serde_json::to_value(state).unwrap_or(Value::Null))
}

/// `url` without the query parameter `name`.
fn without_param(url: &Url, name: &str) -> Url {
    let mut clean = url.clone();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(key, _)| key != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    clean.set_query(None);
    if !kept.is_empty() {
        clean.query_pairs_mut().extend_pairs(kept);
    }
    clean
}

/// The URL without its query (it may hold a key), for messages.
fn redacted(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.to_string()
}

/// The start of a long text, for an error message.
fn excerpt(text: &str) -> String {
    const MAX: usize = 300;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}
