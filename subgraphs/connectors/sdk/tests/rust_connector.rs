//! The example connector (`examples/hello_connector.rs`) through the conformance kit: the kit
//! holds a connector written in Rust to the same promises as a manifest.

#[path = "../examples/hello_connector.rs"]
mod hello_connector;

use hello_connector::Greetings;
use junction_connector_sdk::conformance::{Case, run};
use junction_connector_sdk::{Connection, Credentials};
use serde_json::json;

#[tokio::test]
async fn the_example_connector_conforms() {
    let connector = Greetings::default();
    let good = Connection::new(json!({}), Credentials::new().with("token", "let-me-in"));
    let bad = Connection::new(json!({}), Credentials::new().with("token", "guess"));
    let report = run(&Case::new(&connector, good)
        .bad_credentials(bad)
        .expect("greetings", 7))
    .await;
    println!("{report}");
    report.assert_passed();
}
