//! The router's own selection tree: what the planner splits, what fetches send, and what the
//! final response is shaped by. Fragment spreads are already expanded and `@skip`/`@include`
//! already applied, so a selection means exactly what it says.

use std::fmt::Write;

use apollo_compiler::ast::Value;
use apollo_compiler::{Name, Node};

#[derive(Clone, Debug, PartialEq)]
pub enum Selection {
    Field(Field),
    /// `... on Type { ... }`
    Fragment(Fragment),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub alias: Option<Name>,
    pub name: Name,
    pub arguments: Vec<(Name, Node<Value>)>,
    pub selections: Vec<Selection>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Fragment {
    pub type_condition: Name,
    pub selections: Vec<Selection>,
}

impl Field {
    pub fn new(name: Name) -> Self {
        Self {
            alias: None,
            name,
            arguments: Vec::new(),
            selections: Vec::new(),
        }
    }

    /// The key this field has in a response: its alias, else its name.
    pub fn response_key(&self) -> &Name {
        self.alias.as_ref().unwrap_or(&self.name)
    }

    /// Two fields can share a response key only if they are the same field with the same
    /// arguments; then their sub-selections merge.
    fn same_field(&self, other: &Field) -> bool {
        self.response_key() == other.response_key()
            && self.name == other.name
            && self.arguments == other.arguments
    }
}

/// Adds `selection` to `selections`, merging it into an equal field or fragment already there.
pub fn merge(selections: &mut Vec<Selection>, selection: Selection) {
    match selection {
        Selection::Field(field) => {
            if let Some(Selection::Field(existing)) = selections
                .iter_mut()
                .find(|s| matches!(s, Selection::Field(f) if f.same_field(&field)))
            {
                for child in field.selections {
                    merge(&mut existing.selections, child);
                }
            } else {
                selections.push(Selection::Field(field));
            }
        }
        Selection::Fragment(fragment) => {
            if let Some(Selection::Fragment(existing)) = selections.iter_mut().find(
                |s| matches!(s, Selection::Fragment(f) if f.type_condition == fragment.type_condition),
            ) {
                for child in fragment.selections {
                    merge(&mut existing.selections, child);
                }
            } else {
                selections.push(Selection::Fragment(fragment));
            }
        }
    }
}

pub fn merge_all(selections: &mut Vec<Selection>, more: impl IntoIterator<Item = Selection>) {
    for selection in more {
        merge(selections, selection);
    }
}

/// `a` with `b` merged into it.
pub fn union(mut a: Vec<Selection>, b: Vec<Selection>) -> Vec<Selection> {
    merge_all(&mut a, b);
    a
}

/// About what `selections` hold on the heap: their nodes and argument lists (names and
/// argument values are shared with the document they came from).
pub fn heap_bytes(selections: &[Selection]) -> u64 {
    selections
        .iter()
        .map(|selection| {
            std::mem::size_of::<Selection>() as u64
                + match selection {
                    Selection::Field(field) => {
                        (field.arguments.len() * std::mem::size_of::<(Name, Node<Value>)>()) as u64
                            + heap_bytes(&field.selections)
                    }
                    Selection::Fragment(fragment) => heap_bytes(&fragment.selections),
                }
        })
        .sum()
}

/// `{ a b: c(x: 1) { d } ... on T { e } }`
pub fn print(selections: &[Selection]) -> String {
    let mut out = String::new();
    write_selections(&mut out, selections);
    out
}

pub fn write_selections(out: &mut String, selections: &[Selection]) {
    out.push('{');
    for selection in selections {
        out.push(' ');
        match selection {
            Selection::Field(field) => {
                if let Some(alias) = &field.alias {
                    let _ = write!(out, "{alias}: ");
                }
                out.push_str(&field.name);
                if !field.arguments.is_empty() {
                    out.push('(');
                    for (i, (name, value)) in field.arguments.iter().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        let _ = write!(out, "{name}: {value}");
                    }
                    out.push(')');
                }
                if !field.selections.is_empty() {
                    out.push(' ');
                    write_selections(out, &field.selections);
                }
            }
            Selection::Fragment(fragment) => {
                let _ = write!(out, "... on {} ", fragment.type_condition);
                write_selections(out, &fragment.selections);
            }
        }
    }
    out.push_str(" }");
}

/// Every variable a selection tree uses, in first-use order.
pub fn variables(selections: &[Selection], found: &mut Vec<Name>) {
    fn in_value(value: &Value, found: &mut Vec<Name>) {
        match value {
            Value::Variable(name) if !found.contains(name) => found.push(name.clone()),

            Value::List(items) => items.iter().for_each(|v| in_value(v, found)),
            Value::Object(fields) => fields.iter().for_each(|(_, v)| in_value(v, found)),
            _ => {}
        }
    }
    for selection in selections {
        match selection {
            Selection::Field(field) => {
                for (_, value) in &field.arguments {
                    in_value(value, found);
                }
                variables(&field.selections, found);
            }
            Selection::Fragment(fragment) => variables(&fragment.selections, found),
        }
    }
}

#[cfg(test)]
mod tests {
    use apollo_compiler::name;

    use super::*;

    fn field(name: Name, children: Vec<Selection>) -> Selection {
        Selection::Field(Field {
            selections: children,
            ..Field::new(name)
        })
    }

    #[test]
    fn merging_joins_equal_fields_and_fragments() {
        let mut selections = vec![field(name!("a"), vec![field(name!("x"), vec![])])];
        merge(
            &mut selections,
            field(name!("a"), vec![field(name!("y"), vec![])]),
        );
        merge(&mut selections, field(name!("b"), vec![]));
        merge(
            &mut selections,
            Selection::Fragment(Fragment {
                type_condition: name!("T"),
                selections: vec![field(name!("c"), vec![])],
            }),
        );
        merge(
            &mut selections,
            Selection::Fragment(Fragment {
                type_condition: name!("T"),
                selections: vec![field(name!("c"), vec![]), field(name!("d"), vec![])],
            }),
        );
        assert_eq!(print(&selections), "{ a { x y } b ... on T { c d } }");
    }
}
