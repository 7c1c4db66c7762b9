//! A connector written by hand: the smallest honest implementation of [`Connector`].
//!
//! Its source is a numbered list of greetings kept in memory; a real connector would call an
//! API (through `junction_connector_sdk::http::HttpClient`) or a database instead. What it
//! shows is the contract: a spec, a check that answers with a classified error, a discover
//! that describes each stream, and a read that yields records and checkpoints as a pulled
//! stream, resuming exactly after the last checkpoint.
//!
//! Run it with `cargo run -p junction-connector-sdk --example hello_connector`.

use futures_util::StreamExt;
use junction_connector_sdk::{
    AuthKind, BoxFuture, Connection, Connector, ConnectorError, Credentials, Message,
    MessageStream, Record, Spec, State, StreamSpec, SyncMode,
};
use serde_json::{Value, json};

/// Greetings in `languages` order; `id` grows, so it is both the key and the cursor.
pub struct Greetings {
    languages: Vec<(&'static str, &'static str)>,
}

/// Records between checkpoints: a smaller number resumes closer to where a read stopped, a
/// larger one writes state less often.
const CHECKPOINT_EVERY: usize = 2;

impl Default for Greetings {
    fn default() -> Self {
        Self {
            languages: vec![
                ("en", "hello"),
                ("fr", "bonjour"),
                ("de", "hallo"),
                ("es", "hola"),
                ("it", "ciao"),
                ("pt", "olá"),
                ("nl", "hallo"),
            ],
        }
    }
}

impl Greetings {
    /// The one credential this source takes: a token, which must be `let-me-in`.
    fn authorize(credentials: &Credentials) -> Result<(), ConnectorError> {
        match credentials.get("token") {
            Some("let-me-in") => Ok(()),
            Some(_) => Err(ConnectorError::credentials("the token was not accepted")),
            None => Err(ConnectorError::credentials(
                "a token is needed (credentials.token)",
            )),
        }
    }
}

impl Connector for Greetings {
    fn spec(&self) -> Spec {
        Spec {
            name: "greetings".into(),
            version: "1.0.0".into(),
            description: "Hello in several languages.".into(),
            auth_kinds: vec![AuthKind::Bearer],
            config_schema: json!({
                "type": "object",
                "properties": {"shout": {"type": "boolean", "default": false}},
                "additionalProperties": false,
            }),
        }
    }

    fn check<'a>(
        &'a self,
        connection: &'a Connection,
    ) -> BoxFuture<'a, Result<(), ConnectorError>> {
        Box::pin(async move {
            self.spec().validate_config(&connection.config)?;
            Self::authorize(&connection.credentials)
        })
    }

    fn discover<'a>(
        &'a self,
        _connection: &'a Connection,
    ) -> BoxFuture<'a, Result<Vec<StreamSpec>, ConnectorError>> {
        Box::pin(async move {
            Ok(vec![StreamSpec {
                name: "greetings".into(),
                schema: json!({
                    "type": "object",
                    "required": ["id", "language", "text"],
                    "properties": {
                        "id": {"type": "integer"},
                        "language": {"type": "string"},
                        "text": {"type": "string"},
                    },
                }),
                primary_key: vec![vec!["id".into()]],
                cursor_field: Some(vec!["id".into()]),
                sync_modes: vec![SyncMode::FullRefresh, SyncMode::Incremental],
            }])
        })
    }

    fn read<'a>(
        &'a self,
        connection: &'a Connection,
        stream: &'a str,
        state: Option<State>,
    ) -> MessageStream<'a> {
        // Set-up errors become the stream's only item.
        let start = (|| {
            if stream != "greetings" {
                return Err(ConnectorError::config(format!("no stream `{stream}`")));
            }
            Self::authorize(&connection.credentials)?;
            // The state is what our own checkpoints said: the last id read.
            match state.map(|State(value)| value["after"].clone()) {
                None | Some(Value::Null) => Ok(0),
                Some(Value::Number(after)) => after
                    .as_u64()
                    .and_then(|a| usize::try_from(a).ok())
                    .map(|a| a + 1)
                    .ok_or_else(|| ConnectorError::config("the stored state is not ours")),
                Some(_) => Err(ConnectorError::config("the stored state is not ours")),
            }
        })();
        let from = match start {
            Ok(from) => from,
            Err(error) => return Box::pin(futures_util::stream::iter([Err(error)])),
        };
        let shout = connection.config["shout"].as_bool().unwrap_or(false);
        // One item at a time, pulled by the engine: nothing is read ahead of it.
        let rows = self.languages.iter().enumerate().skip(from);
        let total = self.languages.len();
        Box::pin(
            futures_util::stream::iter(rows).flat_map(move |(id, (language, text))| {
                let text = if shout {
                    text.to_uppercase()
                } else {
                    (*text).to_owned()
                };
                let record = Message::Record(Record {
                    data: json!({"id": id, "language": language, "text": text}),
                });
                let mut messages = vec![Ok(record)];
                if (id + 1) % CHECKPOINT_EVERY == 0 || id + 1 == total {
                    messages.push(Ok(Message::Checkpoint(State(json!({"after": id})))));
                }
                futures_util::stream::iter(messages)
            }),
        )
    }
}

#[tokio::main]
#[allow(dead_code)]
async fn main() -> Result<(), ConnectorError> {
    let connector = Greetings::default();
    let connection = Connection::new(
        json!({"shout": true}),
        Credentials::new().with("token", "let-me-in"),
    );
    connector.check(&connection).await?;
    let mut messages = connector.read(&connection, "greetings", None);
    while let Some(message) = messages.next().await {
        match message? {
            Message::Record(record) => println!("{}", record.data),
            Message::Checkpoint(state) => eprintln!("checkpoint {}", state.0),
        }
    }
    Ok(())
}
