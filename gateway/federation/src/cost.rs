//! Static operation cost (`[gateway.cost]`), after the GraphQL cost directives of IBM's
//! specification as Apollo's demand control uses them: before planning, every operation gets
//! an estimate from the schema alone, and one over the maximum is refused before any subgraph
//! is called. The same estimate can drive the rate limiter (`unit = "cost"`).
//!
//! Weights: a field returning an object, interface or union costs 1, a scalar or enum 0, a
//! mutation's root field 10; `@cost(weight: N)` on a field or on its type says otherwise, and
//! on an argument adds N when the argument is given. A list multiplies what its items cost
//! by its size: the value of a slicing argument (`@listSize(slicingArguments: ["first"])`),
//! else `@listSize(assumedSize: N)`, else `default_list_size`; `sizedFields` apply the size
//! to the named child lists (`edges`, `nodes` of a connection).

use std::collections::HashMap;

use apollo_compiler::ast::{OperationType, Value as AstValue};
use apollo_compiler::schema::ExtendedType;
use apollo_compiler::{Name, Node, Schema};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::operation::Operation;
use crate::selection::Selection;
use crate::spec::unprefixed;

/// `[gateway.cost]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CostConfig {
    /// Operations estimated above this are refused (`COST_ESTIMATED_TOO_EXPENSIVE`); no
    /// maximum when unset.
    pub max: Option<u64>,
    /// The size assumed for a list with neither a slicing argument nor `@listSize`.
    pub default_list_size: u64,
}

impl Default for CostConfig {
    fn default() -> Self {
        Self {
            max: None,
            default_list_size: 10,
        }
    }
}

const MUTATION_FIELD_WEIGHT: u64 = 10;

#[derive(Clone, Debug, Default, PartialEq)]
struct ListSize {
    assumed: Option<u64>,
    slicing: Vec<Name>,
    sized_fields: Vec<Name>,
}

/// The cost directives of a supergraph.
#[derive(Debug, Default)]
pub struct CostModel {
    types: HashMap<Name, u64>,
    fields: HashMap<(Name, Name), u64>,
    arguments: HashMap<(Name, Name, Name), u64>,
    lists: HashMap<(Name, Name), ListSize>,
}

fn weight<'a>(
    mut directives: impl Iterator<Item = &'a Node<apollo_compiler::ast::Directive>>,
) -> Option<u64> {
    directives
        .find(|d| unprefixed(&d.name) == "cost")
        .and_then(
            |d| match d.specified_argument_by_name("weight").map(|v| v.as_ref()) {
                Some(AstValue::Int(n)) => n.try_to_i32().ok().and_then(|n| u64::try_from(n).ok()),
                _ => None,
            },
        )
}

fn names(value: Option<&Node<AstValue>>) -> Vec<Name> {
    match value.map(|v| v.as_ref()) {
        Some(AstValue::List(items)) => items
            .iter()
            .filter_map(|item| match item.as_ref() {
                AstValue::String(s) => Name::new(s).ok(),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

impl CostModel {
    pub fn read(schema: &Schema) -> Self {
        let mut model = Self::default();
        for (type_name, ty) in &schema.types {
            if let Some(w) = weight(ty.directives().iter().map(|d| &d.node)) {
                model.types.insert(type_name.clone(), w);
            }
            let fields: Vec<_> = match ty {
                ExtendedType::Object(object) => object.fields.values().collect(),
                ExtendedType::Interface(interface) => interface.fields.values().collect(),
                _ => continue,
            };
            for field in fields {
                let key = (type_name.clone(), field.name.clone());
                if let Some(w) = weight(field.directives.iter()) {
                    model.fields.insert(key.clone(), w);
                }
                for argument in &field.arguments {
                    if let Some(w) = weight(argument.directives.iter()) {
                        model.arguments.insert(
                            (type_name.clone(), field.name.clone(), argument.name.clone()),
                            w,
                        );
                    }
                }
                if let Some(list_size) = field
                    .directives
                    .iter()
                    .find(|d| unprefixed(&d.name) == "listSize")
                {
                    let assumed = match list_size
                        .specified_argument_by_name("assumedSize")
                        .map(|v| v.as_ref())
                    {
                        Some(AstValue::Int(n)) => {
                            n.try_to_i32().ok().and_then(|n| u64::try_from(n).ok())
                        }
                        _ => None,
                    };
                    model.lists.insert(
                        key,
                        ListSize {
                            assumed,
                            slicing: names(
                                list_size.specified_argument_by_name("slicingArguments"),
                            ),
                            sized_fields: names(
                                list_size.specified_argument_by_name("sizedFields"),
                            ),
                        },
                    );
                }
            }
        }
        model
    }

    /// The estimated cost of `operation` with `variables`.
    pub fn estimate(
        &self,
        api: &Schema,
        operation: &Operation,
        variables: &Map<String, Value>,
        config: &CostConfig,
    ) -> u64 {
        let estimator = Estimator {
            model: self,
            api,
            variables,
            config,
        };
        let root_weight =
            (operation.kind == OperationType::Mutation).then_some(MUTATION_FIELD_WEIGHT);
        estimator.selections(
            &operation.root_type,
            &operation.selections,
            root_weight,
            None,
        )
    }
}

struct Estimator<'a> {
    model: &'a CostModel,
    api: &'a Schema,
    variables: &'a Map<String, Value>,
    config: &'a CostConfig,
}

impl Estimator<'_> {
    /// What `selections` on `parent` cost; `field_weight` overrides each field's own weight
    /// (mutation root fields); `sized` carries a parent's size to its `sizedFields`.
    fn selections(
        &self,
        parent: &Name,
        selections: &[Selection],
        field_weight: Option<u64>,
        sized: Option<(&[Name], u64)>,
    ) -> u64 {
        let mut total: u64 = 0;
        for selection in selections {
            let cost = match selection {
                Selection::Field(field) => {
                    if field.name.starts_with("__") {
                        continue;
                    }
                    let Ok(definition) = self.api.type_field(parent, &field.name) else {
                        continue;
                    };
                    let key = (parent.clone(), field.name.clone());
                    let child_type = definition.ty.inner_named_type();
                    let own = field_weight
                        .or_else(|| self.model.fields.get(&key).copied())
                        .or_else(|| self.model.types.get(child_type).copied())
                        .unwrap_or_else(|| match self.api.types.get(child_type) {
                            Some(
                                ExtendedType::Object(_)
                                | ExtendedType::Interface(_)
                                | ExtendedType::Union(_),
                            ) => 1,
                            _ => 0,
                        });
                    let arguments: u64 = field
                        .arguments
                        .iter()
                        .filter_map(|(name, _)| {
                            self.model.arguments.get(&(
                                parent.clone(),
                                field.name.clone(),
                                name.clone(),
                            ))
                        })
                        .sum();
                    let list_size = self.model.lists.get(&key);
                    let size = if definition.ty.is_list() {
                        match sized {
                            Some((fields, size)) if fields.contains(&field.name) => size,
                            _ => self.list_size(field, list_size),
                        }
                    } else {
                        1
                    };
                    // A connection's size reaches the lists it names.
                    let passed_size = list_size
                        .filter(|l| !l.sized_fields.is_empty())
                        .map(|l| (l.sized_fields.as_slice(), self.list_size(field, Some(l))));
                    let children =
                        self.selections(child_type, &field.selections, None, passed_size);
                    arguments.saturating_add(size.saturating_mul(own.saturating_add(children)))
                }
                Selection::Fragment(fragment) => self.selections(
                    &fragment.type_condition,
                    &fragment.selections,
                    field_weight,
                    sized,
                ),
            };
            total = total.saturating_add(cost);
        }
        total
    }

    /// A slicing argument's value, else the assumed size, else the default.
    fn list_size(&self, field: &crate::selection::Field, list: Option<&ListSize>) -> u64 {
        let sliced = list.and_then(|list| {
            field
                .arguments
                .iter()
                .filter(|(name, _)| list.slicing.contains(name))
                .filter_map(|(_, value)| self.int(value))
                .max()
        });
        sliced
            .or_else(|| list.and_then(|l| l.assumed))
            .unwrap_or(self.config.default_list_size)
    }

    fn int(&self, value: &Node<AstValue>) -> Option<u64> {
        match value.as_ref() {
            AstValue::Int(n) => n.try_to_i32().ok().and_then(|n| u64::try_from(n).ok()),
            AstValue::Variable(name) => self.variables.get(name.as_str())?.as_u64(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::{Limits, normalize, parse};

    const SCHEMA: &str = r#"
        directive @cost(weight: Int!) on ARGUMENT_DEFINITION | ENUM | FIELD_DEFINITION | INPUT_FIELD_DEFINITION | OBJECT | SCALAR
        directive @listSize(assumedSize: Int, slicingArguments: [String!], sizedFields: [String!], requireOneSlicingArgument: Boolean = true) on FIELD_DEFINITION
        type Query {
          products(first: Int, filter: String @cost(weight: 3)): [Product] @listSize(slicingArguments: ["first"], assumedSize: 20)
          orders(first: Int): OrderConnection @listSize(slicingArguments: ["first"], sizedFields: ["edges"])
          tags: [String]
          anything: [Product]
        }
        type Mutation { restock(upc: String!): Product }
        type Product { upc: String! name: String reviews: [Review] price: Int @cost(weight: 4) }
        type Review @cost(weight: 2) { body: String }
        type OrderConnection { edges: [OrderEdge] }
        type OrderEdge { node: Product }
    "#;

    fn cost(query: &str, variables: Value) -> u64 {
        let schema = Schema::parse_and_validate(SCHEMA, "schema.graphql").unwrap();
        let variables = variables.as_object().cloned().unwrap_or_default();
        let document = parse(&schema, query, &Limits::default()).unwrap();
        let (operation, _) = normalize(&document, None, &variables, &Limits::default()).unwrap();
        CostModel::read(&schema).estimate(&schema, &operation, &variables, &CostConfig::default())
    }

    #[test]
    fn objects_cost_one_scalars_nothing_and_lists_multiply() {
        // 20 assumed products, each 1 + price 4.
        assert_eq!(cost("{ products { upc price } }", json()), 20 * 5);
        // `first` slices; each product's reviews: 10 by default, each weighing 2.
        assert_eq!(
            cost("{ products(first: 3) { reviews { body } } }", json()),
            3 * (1 + 10 * 2)
        );
        assert_eq!(
            cost(
                "query($n: Int) { products(first: $n) { upc } }",
                serde_json::json!({"n": 7})
            ),
            7
        );
        assert_eq!(cost("{ tags }", json()), 0);
        assert_eq!(cost("{ anything { upc } }", json()), 10);
    }

    #[test]
    fn arguments_mutations_and_sized_fields_have_their_weights() {
        assert_eq!(
            cost("{ products(first: 1, filter: \"x\") { upc } }", json()),
            3 + 1
        );
        assert_eq!(
            cost("mutation { restock(upc: \"1\") { name } }", json()),
            10
        );
        // The connection is one object; its edges take `first`.
        assert_eq!(
            cost("{ orders(first: 5) { edges { node { upc } } } }", json()),
            1 + 5 * (1 + 1)
        );
    }

    fn json() -> Value {
        Value::Null
    }
}
