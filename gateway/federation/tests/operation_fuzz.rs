//! GraphQL documents generated from supergraph schemas, then mutated, run through the
//! router's parse, normalize and plan steps: no input may panic, and each one's time is
//! measured (the slowest is reported; the README keeps the figures of the long run).
//!
//! The generator writes operations as a client might (fields with arguments of every type,
//! aliases, inline fragments, named fragments spreading each other, `@skip`/`@include` with
//! literals and variables) and as an attacker would (fragment chains that double or branch,
//! deep nesting, numbers out of range); a quarter of the documents are then cut, repeated
//! or spliced at random so the parser meets broken text too.
//!
//! CI runs a bounded number of cases; the long run is
//! `JUNCTION_FUZZ_RUNS=1000000 cargo test --release -p junction-federation --test operation_fuzz -- --nocapture`.

use std::collections::HashMap;
use std::fmt::Write;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use apollo_compiler::ast::Type;
use apollo_compiler::schema::ExtendedType;
use apollo_compiler::{Name, Schema};
use junction_federation::compose::{SubgraphSource, compose};
use junction_federation::operation::{self, Limits};
use junction_federation::planner;
use junction_federation::supergraph::{Labels, Supergraph};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

/// The supergraphs fuzzed: the classic four subgraphs, and Junction's own two.
fn supergraphs() -> Vec<(&'static str, Supergraph)> {
    let classic = include_str!("supergraphs/classic.graphql");
    let own = compose(&[
        SubgraphSource {
            name: "webhooks".into(),
            url: "http://127.0.0.1:1/graphql".into(),
            sdl: include_str!("../../../schema/graphql/webhooks.graphql").into(),
        },
        SubgraphSource {
            name: "deliveries".into(),
            url: "http://127.0.0.1:2/graphql".into(),
            sdl: include_str!("../../../schema/graphql/deliveries.graphql").into(),
        },
    ])
    .expect("Junction's subgraphs compose");
    vec![
        ("classic", Supergraph::parse(classic).expect("classic")),
        ("junction", Supergraph::parse(&own).expect("junction")),
    ]
}

struct Generator<'a> {
    schema: &'a Schema,
    rng: StdRng,
    /// Object types each composite type may be at run time.
    possible: HashMap<Name, Vec<Name>>,
    /// Named fragments written so far: name and type condition.
    fragments: Vec<(String, Name)>,
    /// Aliases given so far in this document (each one new, so none conflict).
    aliases: usize,
    /// The arguments of each field selected without an alias in this document: always the
    /// same, so that two selections of it merge rather than conflict.
    arguments: HashMap<(Name, Name), String>,
}

impl<'a> Generator<'a> {
    fn new(schema: &'a Schema, seed: u64) -> Self {
        let mut possible: HashMap<Name, Vec<Name>> = HashMap::new();
        for (name, ty) in &schema.types {
            match ty {
                ExtendedType::Object(object) => {
                    possible.entry(name.clone()).or_default().push(name.clone());
                    for interface in &object.implements_interfaces {
                        possible
                            .entry(interface.name.clone())
                            .or_default()
                            .push(name.clone());
                    }
                }
                ExtendedType::Union(union) => {
                    let members = union.members.iter().map(|m| m.name.clone()).collect();
                    possible.insert(name.clone(), members);
                }
                _ => {}
            }
        }
        Self {
            schema,
            rng: StdRng::seed_from_u64(seed),
            possible,
            fragments: Vec::new(),
            aliases: 0,
            arguments: HashMap::new(),
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn pick<'t, T>(&mut self, items: &'t [T]) -> Option<&'t T> {
        (!items.is_empty()).then(|| &items[self.rng.random_range(0..items.len())])
    }

    fn composite_types(&self) -> Vec<Name> {
        self.schema
            .types
            .iter()
            .filter(|(name, ty)| {
                !name.starts_with("__")
                    && matches!(
                        ty,
                        ExtendedType::Object(_)
                            | ExtendedType::Interface(_)
                            | ExtendedType::Union(_)
                    )
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// One document: variables, fragments, an operation; sometimes an attack shape.
    fn document(&mut self) -> (String, Map<String, Value>) {
        self.fragments.clear();
        self.aliases = 0;
        self.arguments.clear();
        let mut fragments = Vec::new();
        let composites = self.composite_types();
        for i in 0..self.rng.random_range(0..4) {
            let Some(on) = self.pick(&composites).cloned() else {
                break;
            };
            let body = self.selection_set(&on, 0);
            fragments.push((format!("G{i}"), format!("fragment G{i} on {on} {body}\n")));
            self.fragments.push((format!("G{i}"), on));
        }
        let root = match self.schema.schema_definition.mutation.clone() {
            Some(mutation) if self.chance(0.15) => ("mutation", mutation.name.clone()),
            _ => (
                "query",
                self.schema
                    .schema_definition
                    .query
                    .clone()
                    .expect("a query type")
                    .name
                    .clone(),
            ),
        };
        let attack = if self.chance(0.05) {
            self.attack(&composites)
        } else {
            None
        };
        let mut body = self.selection_set(&root.1, 0);
        let mut extra = String::new();
        if let Some((spread_on, attack_fragments)) = attack {
            // Spread at the first field returning the attack's type, when there is one.
            if let Some(field) = self.field_returning(&root.1, &spread_on) {
                body = format!("{{ {field} {{ ...A0 }} }}");
                extra = attack_fragments;
            }
        }
        // Only what is used: an unused fragment or variable makes the document invalid.
        let mut used = format!("{body}{extra}");
        let mut kept = String::new();
        loop {
            let before = kept.len();
            for (name, text) in &fragments {
                let spread = format!("...{name} ");
                let spread_end = format!("...{name}}}");
                let directive = format!("...{name} @");
                if !kept.contains(text.as_str())
                    && (used.contains(&spread)
                        || used.contains(&spread_end)
                        || used.contains(&directive))
                {
                    kept.push_str(text);
                    used.push_str(text);
                }
            }
            if kept.len() == before {
                break;
            }
        }
        let declared: Vec<&str> = [
            ("$b0", "$b0: Boolean!"),
            ("$b1", "$b1: Boolean = false"),
            ("$i", "$i: Int"),
        ]
        .iter()
        .filter(|(name, _)| used.contains(name))
        .map(|(_, definition)| *definition)
        .collect();
        let variables_text = if declared.is_empty() {
            String::new()
        } else {
            format!("({})", declared.join(", "))
        };
        let text = format!("{} Fuzz{variables_text} {body}\n{kept}{extra}", root.0);
        let mut variables = Map::new();
        variables.insert("b0".into(), json!(self.chance(0.5)));
        if self.chance(0.5) {
            variables.insert("b1".into(), json!(self.chance(0.5)));
        }
        if self.chance(0.5) {
            variables.insert("i".into(), json!(self.rng.random_range(-3..50)));
        }
        let text = if self.chance(0.25) {
            self.mutate(text)
        } else {
            text
        };
        (text, variables)
    }

    /// A root field (without required arguments) returning `ty`, to hang an attack on.
    fn field_returning(&self, root: &Name, ty: &Name) -> Option<String> {
        let ExtendedType::Object(object) = self.schema.types.get(root)? else {
            return None;
        };
        object
            .fields
            .values()
            .find(|f| f.ty.inner_named_type() == ty && f.arguments.iter().all(|a| !a.is_required()))
            .map(|f| f.name.to_string())
    }

    /// Fragments `A0..An` on one object type: each spreading the next twice, or two fields
    /// of the type each spreading the next (a tree doubling per level).
    fn attack(&mut self, composites: &[Name]) -> Option<(Name, String)> {
        let on = self.pick(composites)?.clone();
        let ExtendedType::Object(object) = self.schema.types.get(&on)? else {
            return None;
        };
        let leaf = object
            .fields
            .values()
            .find(|f| self.is_leaf(f.ty.inner_named_type()) && f.arguments.is_empty())?
            .name
            .clone();
        let same: Vec<Name> = object
            .fields
            .values()
            .filter(|f| {
                f.ty.inner_named_type() == &on && f.arguments.iter().all(|a| !a.is_required())
            })
            .map(|f| f.name.clone())
            .collect();
        let n = self.rng.random_range(8..60);
        let mut text = String::new();
        for i in 0..n {
            let j = i + 1;
            if let (true, Some(a)) = (same.len() >= 2 && self.chance(0.5), same.first()) {
                let b = &same[1];
                let _ = writeln!(
                    text,
                    "fragment A{i} on {on} {{ {a} {{ ...A{j} }} {b} {{ ...A{j} }} }}"
                );
            } else {
                let _ = writeln!(text, "fragment A{i} on {on} {{ ...A{j} ...A{j} }}");
            }
        }
        let _ = writeln!(text, "fragment A{n} on {on} {{ {leaf} }}");
        Some((on, text))
    }

    fn is_leaf(&self, name: &Name) -> bool {
        matches!(
            self.schema.types.get(name),
            Some(ExtendedType::Scalar(_) | ExtendedType::Enum(_))
        )
    }

    fn selection_set(&mut self, ty: &Name, depth: usize) -> String {
        let mut out = String::from("{");
        let count = self.rng.random_range(1..=4);
        for _ in 0..count {
            out.push(' ');
            let roll: f64 = self.rng.random();
            if roll < 0.12 {
                self.inline_fragment(ty, depth, &mut out);
            } else if roll < 0.24 {
                if !self.spread(ty, &mut out) {
                    out.push_str("__typename");
                }
            } else {
                self.field(ty, depth, &mut out);
            }
        }
        out.push_str(" }");
        out
    }

    fn inline_fragment(&mut self, ty: &Name, depth: usize, out: &mut String) {
        let possible = self.possible.get(ty).cloned().unwrap_or_default();
        let on = if self.chance(0.2) {
            ty.clone()
        } else {
            match self.pick(&possible) {
                Some(on) => on.clone(),
                None => ty.clone(),
            }
        };
        let directive = self.directive();
        let body = self.selection_set(&on, depth);
        let _ = write!(out, "... on {on}{directive} {body}");
    }

    /// A named fragment whose type can apply here; false when none can.
    fn spread(&mut self, ty: &Name, out: &mut String) -> bool {
        let here = self.possible.get(ty).cloned().unwrap_or_default();
        let fitting: Vec<String> = self
            .fragments
            .iter()
            .filter(|(_, on)| {
                self.possible
                    .get(on)
                    .is_some_and(|types| types.iter().any(|t| here.contains(t)))
            })
            .map(|(name, _)| name.clone())
            .collect();
        let Some(name) = self.pick(&fitting).cloned() else {
            return false;
        };
        let directive = self.directive();
        let _ = write!(out, "...{name}{directive}");
        true
    }

    fn field(&mut self, ty: &Name, depth: usize, out: &mut String) {
        let fields: Vec<_> = match self.schema.types.get(ty) {
            Some(ExtendedType::Object(object)) => object.fields.values().cloned().collect(),
            Some(ExtendedType::Interface(interface)) => {
                interface.fields.values().cloned().collect()
            }
            _ => Vec::new(),
        };
        let Some(field) = self.pick(&fields).cloned() else {
            out.push_str("__typename");
            return;
        };
        let aliased = self.chance(0.15);
        if aliased {
            self.aliases += 1;
            let _ = write!(out, "a{}: ", self.aliases);
        }
        out.push_str(&field.name);
        let key = (ty.clone(), field.name.clone());
        let arguments = match self.arguments.get(&key) {
            Some(arguments) if !aliased => arguments.clone(),
            _ => {
                let mut arguments = Vec::new();
                for argument in &field.arguments {
                    if argument.is_required() || self.chance(0.4) {
                        let value = self.value(&argument.ty, 0);
                        arguments.push(format!("{}: {value}", argument.name));
                    }
                }
                let arguments = if arguments.is_empty() {
                    String::new()
                } else {
                    format!("({})", arguments.join(", "))
                };
                if !aliased {
                    self.arguments.insert(key, arguments.clone());
                }
                arguments
            }
        };
        out.push_str(&arguments);
        out.push_str(&self.directive());
        let inner = field.ty.inner_named_type().clone();
        if !self.is_leaf(&inner) {
            out.push(' ');
            if depth >= 6 && !self.chance(0.05) {
                out.push_str("{ __typename }");
            } else {
                let set = self.selection_set(&inner, depth + 1);
                out.push_str(&set);
            }
        }
    }

    fn directive(&mut self) -> String {
        if !self.chance(0.15) {
            return String::new();
        }
        let name = if self.chance(0.5) { "skip" } else { "include" };
        let condition = *self
            .pick(&["true", "false", "$b0", "$b1"])
            .expect("four conditions");
        format!(" @{name}(if: {condition})")
    }

    /// A literal for an argument of type `ty` (occasionally one out of range).
    fn value(&mut self, ty: &Type, depth: usize) -> String {
        if let Type::List(inner) | Type::NonNullList(inner) = ty {
            if self.chance(0.3) {
                return self.value(inner, depth);
            }
            let items: Vec<String> = (0..self.rng.random_range(0..3))
                .map(|_| self.value(inner, depth + 1))
                .collect();
            return format!("[{}]", items.join(", "));
        }
        let name = ty.inner_named_type();
        match name.as_str() {
            "Int" if self.chance(0.2) && !ty.is_non_null() => "$i".into(),
            "Int" => self.rng.random_range(-3..100).to_string(),
            "Float" => {
                if self.chance(0.05) {
                    "1e400".into()
                } else {
                    "2.5".into()
                }
            }
            "Boolean" => "true".into(),
            "String" | "ID" => format!("\"v{}\"", self.rng.random_range(0..9)),
            _ => match self.schema.types.get(name) {
                Some(ExtendedType::Enum(enumeration)) => {
                    let values: Vec<Name> = enumeration.values.keys().cloned().collect();
                    self.pick(&values)
                        .map_or_else(|| "A".into(), |v| v.to_string())
                }
                Some(ExtendedType::InputObject(input)) if depth < 4 => {
                    let fields: Vec<_> = input.fields.values().cloned().collect();
                    let mut parts = Vec::new();
                    for field in fields {
                        if field.is_required() || self.chance(0.3) {
                            let value = self.value(&field.ty, depth + 1);
                            parts.push(format!("{}: {value}", field.name));
                        }
                    }
                    format!("{{{}}}", parts.join(", "))
                }
                // Custom scalars (JSON, DateTime, ...): any literal.
                _ => match self.rng.random_range(0..5) {
                    0 => "{a: [1, 2.5, \"x\"], b: {c: null}}".into(),
                    1 => "\"2026-01-01T00:00:00Z\"".into(),
                    2 => "{a: 1e400}".into(),
                    3 => "12".into(),
                    _ => "\"text\"".into(),
                },
            },
        }
    }

    /// The text cut, repeated or spliced somewhere, or a token of GraphQL punctuation put in.
    fn mutate(&mut self, text: String) -> String {
        let bytes = text.as_bytes();
        let len = bytes.len();
        if len < 2 {
            return text;
        }
        let a = self.rng.random_range(0..len);
        let b = self.rng.random_range(a..len.min(a + 40) + 1).min(len);
        let mut out = Vec::with_capacity(len + 64);
        match self.rng.random_range(0..4) {
            0 => {
                out.extend_from_slice(&bytes[..a]);
                out.extend_from_slice(&bytes[b..]);
            }
            1 => {
                out.extend_from_slice(&bytes[..b]);
                out.extend_from_slice(&bytes[a..b]);
                out.extend_from_slice(&bytes[b..]);
            }
            2 => {
                let token = *self
                    .pick(&[
                        "{", "}", "...", "$", "@", "(", ")", ":", "\"", "#", "on", "1e999",
                    ])
                    .expect("tokens");
                out.extend_from_slice(&bytes[..a]);
                out.extend_from_slice(token.as_bytes());
                out.extend_from_slice(&bytes[a..]);
            }
            _ => {
                let c = self.rng.random_range(0..len);
                out.extend_from_slice(&bytes[..a]);
                out.extend_from_slice(&bytes[c..len.min(c + 30)]);
                out.extend_from_slice(&bytes[a..]);
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The time `text` takes through parse, normalize and plan.
fn run_once(supergraph: &Supergraph, text: &str, variables: &Map<String, Value>) -> Duration {
    let limits = Limits::default();
    let started = Instant::now();
    if let Ok(document) = operation::parse(&supergraph.api, text, &limits)
        && let Ok((normalized, _)) = operation::normalize(&document, None, variables, &limits)
    {
        let _ = planner::plan_with(supergraph, &normalized, &Labels::new());
    }
    started.elapsed()
}

#[derive(Default)]
struct Tally {
    runs: u64,
    parsed: u64,
    normalized: u64,
    planned: u64,
    slowest: Duration,
    slowest_input: String,
    slowest_variables: Map<String, Value>,
    total: Duration,
}

/// Runs `runs` generated documents against `supergraph`; a panic fails with the input.
fn fuzz(name: &str, supergraph: &Supergraph, runs: u64, seed: u64) -> Tally {
    let limits = Limits::default();
    let mut generator = Generator::new(&supergraph.api, seed);
    let labels = Labels::new();
    let mut tally = Tally::default();
    let show_refusals = std::env::var_os("JUNCTION_FUZZ_SHOW").is_some();
    for _ in 0..runs {
        let (text, variables) = generator.document();
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let document = match operation::parse(&supergraph.api, &text, &limits) {
                Ok(document) => document,
                Err(refused) => {
                    if show_refusals {
                        println!("{name}: refused: {refused}\n{text}\n");
                    }
                    return (false, false, false);
                }
            };
            let Ok((normalized, _)) = operation::normalize(&document, None, &variables, &limits)
            else {
                return (true, false, false);
            };
            let planned = planner::plan_with(supergraph, &normalized, &labels).is_ok();
            (true, true, planned)
        }));
        let took = started.elapsed();
        let Ok((parsed, normalized, planned)) = outcome else {
            panic!("{name}: this input panicked:\n{text}\nvariables: {variables:?}");
        };
        tally.runs += 1;
        tally.parsed += u64::from(parsed);
        tally.normalized += u64::from(normalized);
        tally.planned += u64::from(planned);
        tally.total += took;
        if took > tally.slowest {
            tally.slowest = took;
            tally.slowest_input = text;
            tally.slowest_variables = variables;
        }
    }
    tally
}

#[test]
fn generated_and_mutated_operations_never_panic() {
    let runs: u64 = std::env::var("JUNCTION_FUZZ_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let seed: u64 = std::env::var("JUNCTION_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    for (name, supergraph) in supergraphs() {
        let tally = fuzz(name, &supergraph, runs, seed);
        println!(
            "{name}: {} runs, {} parsed and valid, {} normalized, {} planned; mean {:?}, slowest {:?}",
            tally.runs,
            tally.parsed,
            tally.normalized,
            tally.planned,
            tally.total / tally.runs.max(1) as u32,
            tally.slowest,
        );
        // A busy machine can stretch any one run: the slowest input, timed again alone, says
        // whether it is slow itself.
        let again = (0..10)
            .map(|_| run_once(&supergraph, &tally.slowest_input, &tally.slowest_variables))
            .min()
            .unwrap_or_default();
        println!(
            "{name}: slowest input ({} bytes, {again:?} when timed again): {:.300}",
            tally.slowest_input.len(),
            tally.slowest_input
        );
        // A generator that makes nothing valid would test only the parser's refusals.
        assert!(tally.planned * 5 > tally.runs, "{name}: too few plans");
    }
}
