//! The document cache weighs a validated document by its query text's length
//! (`operation::document_weight`); this measures what documents of every shape really hold,
//! with an allocator that counts, and checks the weight is never less.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use junction_federation::operation::{self, Limits};
use junction_federation::supergraph::Supergraph;

/// Counts the bytes this thread holds, so the measurement ignores the test harness's threads.
struct Counting;

thread_local! {
    static HELD: Cell<isize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = HELD.try_with(|held| held.set(held.get() + layout.size() as isize));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = HELD.try_with(|held| held.set(held.get() - layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ =
            HELD.try_with(|held| held.set(held.get() + new_size as isize - layout.size() as isize));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn held() -> isize {
    HELD.with(Cell::get)
}

/// Queries of the largest size the default limits take, in the shapes that cost most per byte.
fn shapes() -> Vec<(&'static str, String)> {
    let limits = Limits::default();
    // As many `unit`s (of `tokens` lexical tokens each) as the size and token limits allow.
    let fill = |unit: &str, tokens: usize, open: &str, close: &str| {
        let room = limits.max_query_bytes - open.len() - close.len();
        let count = (room / unit.len()).min(limits.max_tokens / tokens - 10);
        format!("{open}{}{close}", unit.repeat(count))
    };
    vec![
        (
            "one short field, repeated",
            fill("upc ", 1, "{ topProducts { ", "} }"),
        ),
        (
            "fields with arguments",
            fill("topProducts(first: 1) { upc } ", 9, "{ ", "}"),
        ),
        (
            "inline fragments",
            fill("... on Product { upc } ", 6, "{ topProducts { ", "} }"),
        ),
        ("nested selections", {
            let inner = "reviews { body } ".repeat(3_000);
            format!("{{ me {{ reviews {{ author {{ reviews {{ author {{ {inner} }} }} }} }} }} }}")
        }),
        ("named fragments", {
            let mut query = String::from("{ topProducts { ...F0 } }\n");
            let mut i = 0;
            while query.len() < limits.max_query_bytes - 100 {
                query.push_str(&format!("fragment F{i} on Product {{ upc }}\n"));
                i += 1;
            }
            query.replacen(
                "...F0",
                &(0..i).map(|i| format!("...F{i} ")).collect::<String>(),
                1,
            )
        }),
        ("a long string argument", {
            let value = "x".repeat(limits.max_query_bytes - 100);
            format!("{{ user(id: \"{value}\") {{ id }} }}")
        }),
    ]
}

#[test]
fn document_weight_covers_what_a_document_holds() {
    let supergraph = Supergraph::parse(include_str!("supergraphs/classic.graphql")).unwrap();
    let limits = Limits {
        max_query_bytes: usize::MAX,
        max_tokens: usize::MAX,
        ..Limits::default()
    };
    for (shape, query) in shapes() {
        let before = held();
        let document = operation::parse(&supergraph.api, &query, &limits);
        let holds = (held() - before) as u64;
        let weight = operation::document_weight(&query);
        println!(
            "{shape}: {} bytes of text, the document holds {holds} ({:.1} per byte), weighed {weight}",
            query.len(),
            holds as f64 / query.len() as f64,
        );
        assert!(document.is_ok(), "{shape}: {:?}", document.err());
        assert!(holds <= weight, "{shape}: holds {holds}, weighed {weight}");
        drop(document);
    }
}
