//! `@authenticated` and `@requiresScopes` (Apollo's authorization directives): composition
//! carries them from subgraphs into the supergraph, and the router enforces them before any
//! subgraph is called. Fields the caller may not see are taken out of the operation; the
//! answer has `null` in their place (propagated up through non-null fields, as GraphQL does
//! for errors) and one `UNAUTHORIZED_FIELD_OR_TYPE` error for each.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;

use apollo_compiler::ast::{Directive, Value as AstValue};
use apollo_compiler::{Name, Schema};
use serde_json::{Value, json};

use crate::operation::Operation;
use crate::selection::{Field, Selection};

/// Who asks, as far as the authorization directives care: an authenticated caller (an
/// anonymous one is `None` where a caller is taken) and the scopes it holds.
pub trait Caller {
    fn has_scope(&self, scope: &str) -> bool;
}

impl<F: Fn(&str) -> bool> Caller for F {
    fn has_scope(&self, scope: &str) -> bool {
        self(scope)
    }
}

/// What seeing a field or type needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Requirement {
    pub authenticated: bool,
    /// Alternatives, any one of which suffices; each a set of scopes all needed. Empty: none.
    pub scopes: Vec<BTreeSet<String>>,
}

impl Requirement {
    /// Reads `@authenticated` and `@requiresScopes(scopes: [[...]])` (also with the
    /// `federation__` prefix a subgraph may use).
    pub fn read<'a>(directives: impl IntoIterator<Item = &'a Directive>) -> Self {
        let mut requirement = Self::default();
        for directive in directives {
            let name = crate::spec::unprefixed(&directive.name);
            if name == "authenticated" {
                requirement.authenticated = true;
            } else if name == "requiresScopes"
                && let Some(AstValue::List(alternatives)) = directive
                    .specified_argument_by_name("scopes")
                    .map(|v| v.as_ref())
            {
                let scopes = alternatives
                    .iter()
                    .filter_map(|alternative| match alternative.as_ref() {
                        AstValue::List(all) => Some(
                            all.iter()
                                .filter_map(|s| match s.as_ref() {
                                    AstValue::String(scope) => Some(scope.clone()),
                                    _ => None,
                                })
                                .collect(),
                        ),
                        _ => None,
                    })
                    .collect();
                requirement.and(&Self {
                    authenticated: false,
                    scopes,
                });
            }
        }
        requirement
    }

    pub fn is_empty(&self) -> bool {
        !self.authenticated && self.scopes.is_empty()
    }

    /// Both this and `other` (composition's rule for a field required in several subgraphs,
    /// and the rule for a field whose type has requirements too).
    pub fn and(&mut self, other: &Self) {
        self.authenticated |= other.authenticated;
        if other.scopes.is_empty() {
            return;
        }
        if self.scopes.is_empty() {
            self.scopes = other.scopes.clone();
            return;
        }
        let mut combined: Vec<BTreeSet<String>> = Vec::new();
        for mine in &self.scopes {
            for theirs in &other.scopes {
                let both: BTreeSet<String> = mine.union(theirs).cloned().collect();
                if !combined.contains(&both) {
                    combined.push(both);
                }
            }
        }
        self.scopes = combined;
    }

    pub fn allows(&self, caller: Option<&dyn Caller>) -> bool {
        let authenticated = caller.is_some() || !self.authenticated;
        let scoped = self.scopes.is_empty()
            || caller.is_some_and(|caller| {
                self.scopes
                    .iter()
                    .any(|all| all.iter().all(|scope| caller.has_scope(scope)))
            });
        authenticated && scoped
    }

    /// The directives as the supergraph writes them: ` @authenticated @requiresScopes(...)`.
    pub fn print(&self, out: &mut String) {
        if self.authenticated {
            out.push_str(" @authenticated");
        }
        if !self.scopes.is_empty() {
            let alternatives: Vec<String> = self
                .scopes
                .iter()
                .map(|all| {
                    let quoted: Vec<String> = all
                        .iter()
                        .map(|s| serde_json::to_string(s).unwrap_or_default())
                        .collect();
                    format!("[{}]", quoted.join(", "))
                })
                .collect();
            let _ = write!(
                out,
                " @requiresScopes(scopes: [{}])",
                alternatives.join(", ")
            );
        }
    }
}

/// The requirements of a supergraph, by type and by field.
#[derive(Debug, Default)]
pub struct Access {
    types: HashMap<Name, Requirement>,
    /// What a field needs: its own, its type's and its parent type's requirements.
    fields: HashMap<(Name, Name), Requirement>,
}

impl Access {
    pub fn read(schema: &Schema) -> Self {
        let mut access = Self::default();
        for (name, ty) in &schema.types {
            let requirement = Requirement::read(ty.directives().iter().map(|d| &***d));
            if !requirement.is_empty() {
                access.types.insert(name.clone(), requirement);
            }
        }
        for (name, ty) in &schema.types {
            let fields: Vec<_> = match ty {
                apollo_compiler::schema::ExtendedType::Object(object) => {
                    object.fields.values().collect()
                }
                apollo_compiler::schema::ExtendedType::Interface(interface) => {
                    interface.fields.values().collect()
                }
                _ => continue,
            };
            for field in fields {
                let mut requirement = Requirement::read(field.directives.iter().map(|d| &**d));
                for ty in [name, field.ty.inner_named_type()] {
                    if let Some(type_requirement) = access.types.get(ty) {
                        requirement.and(type_requirement);
                    }
                }
                if !requirement.is_empty() {
                    access
                        .fields
                        .insert((name.clone(), field.name.clone()), requirement);
                }
            }
        }
        access
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Takes out of `operation` what `caller` may not see; says what was taken.
    pub fn filter(
        &self,
        api: &Schema,
        operation: &mut Operation,
        caller: Option<&dyn Caller>,
    ) -> Denial {
        let mut denial = Denial::default();
        if self.is_empty() {
            return denial;
        }
        let mut path = Vec::new();
        let root = operation.root_type.clone();
        self.filter_selections(
            api,
            &root,
            &mut operation.selections,
            &mut path,
            caller,
            &mut denial,
        );
        denial
    }

    fn filter_selections(
        &self,
        api: &Schema,
        parent: &Name,
        selections: &mut Vec<Selection>,
        path: &mut Vec<(Name, bool)>,
        caller: Option<&dyn Caller>,
        denial: &mut Denial,
    ) {
        selections.retain_mut(|selection| match selection {
            Selection::Field(field) => {
                if field.name.starts_with("__") {
                    return true;
                }
                let Ok(definition) = api.type_field(parent, &field.name) else {
                    return true;
                };
                let nullable = !definition.ty.is_non_null();
                path.push((field.response_key().clone(), nullable));
                let allowed = self
                    .fields
                    .get(&(parent.clone(), field.name.clone()))
                    .is_none_or(|r| r.allows(caller));
                if allowed && !field.selections.is_empty() {
                    let child = definition.ty.inner_named_type().clone();
                    self.filter_selections(
                        api,
                        &child,
                        &mut field.selections,
                        path,
                        caller,
                        denial,
                    );
                    if field.selections.is_empty() {
                        // Every sub-field was taken: a placeholder keeps the selection valid.
                        let mut placeholder = Field::new(Name::new_unchecked("__typename"));
                        placeholder.alias = Some(Name::new_unchecked(PLACEHOLDER));
                        field.selections.push(Selection::Field(placeholder));
                        denial
                            .placeholders
                            .push(path.iter().map(|(key, _)| key.clone()).collect());
                    }
                }
                if !allowed {
                    denial.denied.push(path.clone());
                }
                path.pop();
                allowed
            }
            Selection::Fragment(fragment) => {
                let condition = fragment.type_condition.clone();
                self.filter_selections(
                    api,
                    &condition,
                    &mut fragment.selections,
                    path,
                    caller,
                    denial,
                );
                !fragment.selections.is_empty()
            }
        });
    }
}

const PLACEHOLDER: &str = "__junction_unauthorized";

/// What was taken out of one operation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Denial {
    /// Each taken field's path by response key, with whether each field on it is nullable.
    denied: Vec<Vec<(Name, bool)>>,
    /// Fields left with only a placeholder selection.
    placeholders: Vec<Vec<Name>>,
}

impl Denial {
    pub fn is_empty(&self) -> bool {
        self.denied.is_empty()
    }

    /// Identifies the outcome for plan cache keys: equal denials share plans.
    pub fn fingerprint(&self) -> String {
        let mut text = String::new();
        for path in &self.denied {
            for (key, _) in path {
                text.push_str(key);
                text.push('.');
            }
            text.push('|');
        }
        text
    }

    /// Puts the taken fields back as `null` (with GraphQL's null propagation) and adds one
    /// error for each, to a `{"data": ..., "errors": [...]}` body.
    pub fn complete(&self, body: &mut Value) {
        if self.is_empty() {
            return;
        }
        if let Some(data) = body.get_mut("data") {
            if data.is_null() {
                // Nothing to put back into: an error elsewhere already took the data.
            } else {
                for path in &self.placeholders {
                    remove_placeholders(data, path);
                }
                for path in &self.denied {
                    if null_out(data, path) {
                        *data = Value::Null;
                    }
                }
            }
        }
        let errors = self.denied.iter().map(|path| {
            let keys: Vec<&str> = path.iter().map(|(key, _)| key.as_str()).collect();
            json!({
                "message": "Unauthorized field or type",
                "path": keys,
                "extensions": {"code": "UNAUTHORIZED_FIELD_OR_TYPE"},
            })
        });
        match body.get_mut("errors") {
            Some(Value::Array(existing)) => existing.extend(errors),
            _ => {
                if let Value::Object(map) = body {
                    map.insert("errors".into(), Value::Array(errors.collect()));
                }
            }
        }
    }
}

/// Sets the field at `path` to null in every object it reaches (through lists); returns
/// whether `value` itself must become null (a non-null field was nulled beneath it).
fn null_out(value: &mut Value, path: &[(Name, bool)]) -> bool {
    let Some(((key, nullable), rest)) = path.split_first() else {
        return false;
    };
    match value {
        Value::Array(items) => {
            for item in items {
                if null_out(item, path) {
                    *item = Value::Null;
                }
            }
            false
        }
        Value::Object(map) => {
            if rest.is_empty() {
                map.insert(key.to_string(), Value::Null);
                return !nullable;
            }
            let Some(child) = map.get_mut(key.as_str()) else {
                return false;
            };
            if null_out(child, rest) {
                *child = Value::Null;
                return !nullable;
            }
            false
        }
        _ => false,
    }
}

fn remove_placeholders(value: &mut Value, path: &[Name]) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(|i| remove_placeholders(i, path)),
        Value::Object(map) => match path.split_first() {
            None => {
                map.remove(PLACEHOLDER);
            }
            Some((key, rest)) => {
                if let Some(child) = map.get_mut(key.as_str()) {
                    remove_placeholders(child, rest);
                }
            }
        },
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A caller holding `scopes`.
    fn caller(scopes: &'static [&'static str]) -> impl Fn(&str) -> bool {
        move |scope| scopes.contains(&scope)
    }

    fn scopes(alternatives: &[&[&str]]) -> Requirement {
        Requirement {
            authenticated: false,
            scopes: alternatives
                .iter()
                .map(|all| all.iter().map(|s| (*s).to_owned()).collect())
                .collect(),
        }
    }

    #[test]
    fn scopes_need_every_scope_of_one_alternative() {
        let needs = scopes(&[&["orders:read", "orders:admin"], &["root"]]);
        assert!(needs.allows(Some(&caller(&["orders:read", "orders:admin"]))));
        assert!(needs.allows(Some(&caller(&["root"]))));
        assert!(!needs.allows(Some(&caller(&["orders:read"]))));
        assert!(!needs.allows(None));
        assert!(Requirement::default().allows(None));
        let signed_in = Requirement {
            authenticated: true,
            scopes: Vec::new(),
        };
        assert!(!signed_in.allows(None));
        assert!(signed_in.allows(Some(&caller(&[]))));
    }

    #[test]
    fn requirements_combine_as_a_conjunction() {
        let mut a = scopes(&[&["a"], &["b"]]);
        a.and(&scopes(&[&["c"]]));
        assert_eq!(a, scopes(&[&["a", "c"], &["b", "c"]]));
        let mut none = Requirement::default();
        none.and(&scopes(&[&["x"]]));
        assert_eq!(none, scopes(&[&["x"]]));
        let mut printed = String::new();
        a.print(&mut printed);
        assert_eq!(
            printed,
            r#" @requiresScopes(scopes: [["a", "c"], ["b", "c"]])"#
        );
    }

    #[test]
    fn nulls_propagate_through_non_null_fields_and_lists() {
        let key = |k: &str| Name::new_unchecked(k);
        let mut body = json!({"data": {"me": {"name": "Ada", "orders": [{"id": 1}, {"id": 2}]}}});
        let denial = Denial {
            denied: vec![vec![
                (key("me"), true),
                (key("orders"), true),
                (key("total"), false),
            ]],
            placeholders: Vec::new(),
        };
        denial.complete(&mut body);
        // `total` is non-null: each order becomes null (the list's items are nullable here).
        assert_eq!(body["data"]["me"]["orders"], json!([null, null]));
        assert_eq!(body["errors"][0]["path"], json!(["me", "orders", "total"]));
        assert_eq!(
            body["errors"][0]["extensions"]["code"],
            "UNAUTHORIZED_FIELD_OR_TYPE"
        );

        let mut body = json!({"data": {"secret": "x"}});
        let all_non_null = Denial {
            denied: vec![vec![(key("secret"), false)]],
            placeholders: Vec::new(),
        };
        all_non_null.complete(&mut body);
        assert_eq!(
            body["data"],
            Value::Null,
            "a non-null root field nulls the data"
        );
    }
}
