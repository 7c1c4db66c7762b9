//! Pointing into a JSON answer: [`Selector`], a small JSON path (`$.data`, `$.items[0].rows`)
//! for where the records or the next page are, and [`FieldPath`] (`id`, `owner.id`) for a
//! field inside one record.

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde_json::Value;

/// A JSON path limited to child keys and array indices: `$`, `$.data`, `data.items`,
/// `$.pages[0].rows`, `$['odd key']`. Wildcards and filters are left out on purpose: a
/// selector names one place.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Selector {
    text: String,
    steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

impl Default for Selector {
    /// The whole answer.
    fn default() -> Self {
        Self {
            text: "$".to_owned(),
            steps: Vec::new(),
        }
    }
}

impl TryFrom<String> for Selector {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

impl Selector {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("{text:?} is not a selector ({why}); write `$.data.items`");
        let mut rest = text.trim();
        rest = rest.strip_prefix('$').unwrap_or(rest);
        let mut steps = Vec::new();
        let mut first = true;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("['") {
                let end = after.find("']").ok_or_else(|| bad("unclosed ['"))?;
                steps.push(Step::Key(after[..end].to_owned()));
                rest = &after[end + 2..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let end = after.find(']').ok_or_else(|| bad("unclosed ["))?;
                let index = after[..end]
                    .trim()
                    .parse()
                    .map_err(|_| bad("an index is a whole number"))?;
                steps.push(Step::Index(index));
                rest = &after[end + 1..];
            } else {
                let after = match rest.strip_prefix('.') {
                    Some(after) => after,
                    None if first && !text.trim().starts_with('$') => rest,
                    None => return Err(bad("expected `.` or `[`")),
                };
                let end = after.find(['.', '[']).unwrap_or(after.len());
                if end == 0 {
                    return Err(bad("empty key"));
                }
                if after[..end].contains(['*', '?', '(', ' ']) {
                    return Err(bad("wildcards and filters are not supported"));
                }
                steps.push(Step::Key(after[..end].to_owned()));
                rest = &after[end..];
            }
            first = false;
        }
        Ok(Self {
            text: text.to_owned(),
            steps,
        })
    }

    /// The value selected, if present and not null.
    pub fn select<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        self.steps
            .iter()
            .try_fold(value, |value, step| match step {
                Step::Key(key) => value.get(key),
                Step::Index(index) => value.get(index),
            })
            .filter(|v| !v.is_null())
    }

    /// The records at the selected place: each element of an array, a lone object, or none.
    pub fn records(&self, mut value: Value) -> Result<Vec<Value>, String> {
        self.take_records(&mut value)
    }

    /// Takes the value at the selected place out of `value` (leaving null there) and returns
    /// the records in it, as [`records`](Self::records) does: the rest of the answer stays
    /// readable for pagination without copying the records.
    pub fn take_records(&self, value: &mut Value) -> Result<Vec<Value>, String> {
        let mut place = Some(value);
        for step in &self.steps {
            place = place.and_then(|value| match step {
                Step::Key(key) => value.get_mut(key),
                Step::Index(index) => value.get_mut(index),
            });
        }
        match place {
            Some(place) => self.records_at(place.take()),
            None => Ok(Vec::new()),
        }
    }

    fn records_at(&self, value: Value) -> Result<Vec<Value>, String> {
        match value {
            Value::Array(items) => Ok(items),
            Value::Object(_) => Ok(vec![value]),
            Value::Null => Ok(Vec::new()),
            other => Err(format!(
                "{} selects {other}, not a list of records",
                self.text
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// A field of a record, as keys from the record down (`owner.id`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct FieldPath(pub Vec<String>);

impl TryFrom<String> for FieldPath {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let keys: Vec<String> = text.split('.').map(str::to_owned).collect();
        if keys.iter().any(|k| k.trim().is_empty()) {
            return Err(format!(
                "{text:?} is not a field name; write `id` or `owner.id`"
            ));
        }
        Ok(Self(keys))
    }
}

impl FieldPath {
    pub fn dotted(&self) -> String {
        self.0.join(".")
    }
}

/// A primary key: one field (`id`) or several (`[account, id]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFields(pub Vec<FieldPath>);

impl<'de> Deserialize<'de> for KeyFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = KeyFields;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a field name or a list of field names")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<KeyFields, E> {
                FieldPath::try_from(text.to_owned())
                    .map(|field| KeyFields(vec![field]))
                    .map_err(E::custom)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KeyFields, A::Error> {
                let mut fields = Vec::new();
                while let Some(field) = seq.next_element::<FieldPath>()? {
                    fields.push(field);
                }
                Ok(KeyFields(fields))
            }
        }
        deserializer.deserialize_any(Fields)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn selectors_walk_keys_and_indices() {
        let answer =
            json!({"data": {"items": [{"id": 1}, {"id": 2}]}, "odd key": [7], "next": null});
        let select = |text: &str| Selector::parse(text).unwrap();
        assert_eq!(select("$").select(&answer), Some(&answer));
        assert_eq!(
            select("$.data.items[1].id").select(&answer),
            Some(&json!(2))
        );
        assert_eq!(
            select("data.items[0]").select(&answer),
            Some(&json!({"id": 1}))
        );
        assert_eq!(select("$['odd key'][0]").select(&answer), Some(&json!(7)));
        assert_eq!(select("$.next").select(&answer), None);
        assert_eq!(select("$.missing.deeper").select(&answer), None);
        assert_eq!(
            select("$.data.items")
                .records(answer.clone())
                .unwrap()
                .len(),
            2
        );
        assert_eq!(select("$.data").records(answer.clone()).unwrap().len(), 1);
        assert!(
            select("$.missing")
                .records(answer.clone())
                .unwrap()
                .is_empty()
        );
        assert!(select("$.data.items[0].id").records(answer).is_err());
    }

    #[test]
    fn selectors_that_would_mean_more_than_one_place_are_refused() {
        for bad in [
            "$..id",
            "$.data[*]",
            "$.a[?(@.x)]",
            "$.a[",
            "$x",
            "$.data.",
            "$['a",
        ] {
            assert!(Selector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_fields_read_one_name_or_a_list() {
        let one: KeyFields = serde_json::from_value(json!("owner.id")).unwrap();
        assert_eq!(one.0, vec![FieldPath(vec!["owner".into(), "id".into()])]);
        let two: KeyFields = serde_json::from_value(json!(["account", "id"])).unwrap();
        assert_eq!(two.0.len(), 2);
        assert!(serde_json::from_value::<KeyFields>(json!("a..b")).is_err());
    }
}
