//! The manifest's templating: `{{ config.key }}` and `{{ credentials.name }}` in a string,
//! replaced by the connection's values. Nothing else: no expressions, no filters, and a value
//! put in is never read as a template again, so a configuration value cannot inject one.

use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use crate::connector::Connection;
use crate::error::ConnectorError;

/// A string with `{{ scope.path }}` holes, checked when the manifest is read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Config(Vec<String>),
    Credential(String),
}

impl TryFrom<String> for Template {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

impl Template {
    /// Parses `text`, refusing an unclosed `{{`, an empty hole and an unknown scope.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("unclosed `{{{{` in {text:?}"))?;
            let reference = after[..close].trim();
            let mut path = reference.split('.').map(str::trim);
            let scope = path.next().unwrap_or_default();
            let path: Vec<String> = path.map(str::to_owned).collect();
            if path.is_empty() || path.iter().any(String::is_empty) {
                return Err(format!(
                    "`{{{{ {reference} }}}}` must name a value, as `config.key` or \
                     `credentials.name`"
                ));
            }
            parts.push(match scope {
                "config" => Part::Config(path),
                "credentials" if path.len() == 1 => Part::Credential(path.join(".")),
                "credentials" => {
                    return Err(format!(
                        "`{{{{ {reference} }}}}`: credentials are flat, name one as \
                         `credentials.name`"
                    ));
                }
                other => {
                    return Err(format!(
                        "`{{{{ {reference} }}}}`: unknown scope `{other}`; use `config` or \
                         `credentials`"
                    ));
                }
            });
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// Fills the holes from `connection`. A configuration value missing from the connection
    /// falls back to the `default` its schema declares (`config_schema`).
    pub fn render(
        &self,
        connection: &Connection,
        schema: &Value,
    ) -> Result<String, ConnectorError> {
        self.render_with(connection, schema, |value| value.to_owned())
    }

    /// [`render`](Self::render), each value passed through `encode` first (the text around
    /// the holes is the manifest author's and is kept as written).
    pub fn render_with(
        &self,
        connection: &Connection,
        schema: &Value,
        encode: impl Fn(&str) -> String,
    ) -> Result<String, ConnectorError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Config(path) => {
                    let value = lookup(&connection.config, path)
                        .or_else(|| schema_default(schema, path))
                        .ok_or_else(|| {
                            ConnectorError::config(format!("config.{} is not set", path.join(".")))
                        })?;
                    let value = scalar(value).ok_or_else(|| {
                        ConnectorError::config(format!(
                            "config.{} must be a string, a number or a boolean",
                            path.join(".")
                        ))
                    })?;
                    out.push_str(&encode(&value));
                }
                Part::Credential(name) => {
                    let value = connection.credentials.get(name).ok_or_else(|| {
                        ConnectorError::credentials(format!("credentials.{name} is not set"))
                    })?;
                    out.push_str(&encode(value));
                }
            }
        }
        Ok(out)
    }

    /// Whether the template has no holes and no text.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Text(text) => f.write_str(text)?,
                Part::Config(path) => write!(f, "{{{{ config.{} }}}}", path.join("."))?,
                Part::Credential(name) => write!(f, "{{{{ credentials.{name} }}}}")?,
            }
        }
        Ok(())
    }
}

/// `value` made safe as one URL path segment: everything but RFC 3986's unreserved characters
/// is percent-encoded, `/` included, so a value cannot climb out of its segment.
pub fn encode_path_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn lookup<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter()
        .try_fold(value, |value, key| value.get(key))
        .filter(|v| !v.is_null())
}

/// The `default` the configuration schema gives the value at `path`, following `properties`.
fn schema_default<'s>(schema: &'s Value, path: &[String]) -> Option<&'s Value> {
    path.iter()
        .try_fold(schema, |schema, key| schema.get("properties")?.get(key))?
        .get("default")
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::connector::Credentials;

    fn connection() -> Connection {
        Connection::new(
            json!({"site": "acme", "limits": {"page": 50}, "nested": {"a": 1}}),
            Credentials::new().with("token", "t0k{{ config.site }}"),
        )
    }

    #[test]
    fn holes_are_filled_from_config_credentials_and_schema_defaults() {
        let schema = json!({"properties": {"region": {"type": "string", "default": "eu"}}});
        let template = Template::parse(
            "https://{{config.site}}.{{ config.region }}/p?n={{ config.limits.page }}",
        )
        .unwrap();
        assert_eq!(
            template.render(&connection(), &schema).unwrap(),
            "https://acme.eu/p?n=50"
        );
        // A value is put in as it is, never expanded again.
        let bearer = Template::parse("Bearer {{ credentials.token }}").unwrap();
        assert_eq!(
            bearer.render(&connection(), &schema).unwrap(),
            "Bearer t0k{{ config.site }}"
        );
        assert_eq!(
            template.to_string(),
            "https://{{ config.site }}.{{ config.region }}/p?n={{ config.limits.page }}"
        );
    }

    #[test]
    fn missing_values_are_named_and_classified() {
        let missing = Template::parse("{{ config.nope }}").unwrap();
        let error = missing.render(&connection(), &json!({})).unwrap_err();
        assert_eq!(error, ConnectorError::config("config.nope is not set"));
        let secret = Template::parse("{{ credentials.password }}").unwrap();
        let error = secret.render(&connection(), &json!({})).unwrap_err();
        assert_eq!(
            error,
            ConnectorError::credentials("credentials.password is not set")
        );
        let object = Template::parse("{{ config.nested }}").unwrap();
        assert!(object.render(&connection(), &json!({})).is_err());
    }

    #[test]
    fn path_values_stay_inside_their_segment() {
        let connection = Connection::new(
            json!({"owner": "../admin?x=1#y", "repo": "a b"}),
            Credentials::new(),
        );
        let path = Template::parse("/repos/{{ config.owner }}/{{ config.repo }}/issues").unwrap();
        assert_eq!(
            path.render_with(&connection, &json!({}), encode_path_segment)
                .unwrap(),
            "/repos/..%2Fadmin%3Fx%3D1%23y/a%20b/issues"
        );
    }

    #[test]
    fn malformed_templates_are_refused_when_read() {
        for bad in [
            "{{ config.x",
            "{{ }}",
            "{{ config }}",
            "{{ config..x }}",
            "{{ env.HOME }}",
            "{{ credentials.a.b }}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Template::parse("plain").unwrap().to_string(), "plain");
    }
}
