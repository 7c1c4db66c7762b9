//! The pre-built Stripe manifest (`manifests/stripe.yaml`) against localstripe, a stateful
//! Stripe test double from PyPI, started on 127.0.0.1 for this test only.
//!
//! localstripe must be installed: `python3 -m venv /var/tmp/localstripe &&
//! /var/tmp/localstripe/bin/pip install localstripe`, or `LOCALSTRIPE=/path/to/localstripe`.
//! Without it the test fails and says so: it never passes without having run.
//!
//! localstripe implements less of Stripe's list filtering than Stripe: `created[gte]` only on
//! events (customers and invoices refuse `created`, charges take only `created[gt]`). So the
//! conformance kit, whose incremental checks send the filter, runs on `events`; the other
//! streams are read in full and checked for every object created, schema and pagination.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use junction_connector_sdk::conformance::{Case, run};
use junction_connector_sdk::http::{AddressPolicy, HttpClient, HttpOptions};
use junction_connector_sdk::{
    Connection, Connector, Credentials, ErrorKind, ManifestConnector, Message,
};
use serde_json::{Value, json};

const SECRET_KEY: &str = "sk_test_junction";

/// localstripe, running; killed when dropped.
struct LocalStripe {
    child: Child,
    base_url: String,
}

impl Drop for LocalStripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn localstripe_binary() -> PathBuf {
    let binary = std::env::var_os("LOCALSTRIPE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/localstripe/bin/localstripe"));
    assert!(
        binary.exists(),
        "localstripe is not installed at {}: install it with `python3 -m venv /var/tmp/localstripe \
         && /var/tmp/localstripe/bin/pip install localstripe` (or set LOCALSTRIPE to its path)",
        binary.display()
    );
    binary
}

impl LocalStripe {
    async fn start() -> Self {
        let binary = localstripe_binary();
        // The `python` beside the script, so that the server binds 127.0.0.1 only (the
        // script's own entry point listens on every interface).
        let python = binary.with_file_name("python");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&python)
            .args([
                "-c",
                "import sys; from aiohttp import web; from localstripe.server import app; \
                 web.run_app(app, host='127.0.0.1', port=int(sys.argv[1]), print=None)",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start localstripe with {}: {e}", python.display()));
        let server = Self {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "localstripe did not listen within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    /// Creates an object as a Stripe client would (form-encoded POST).
    async fn create(&self, path: &str, fields: &[(&str, &str)]) -> Value {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let response = client()
            .reqwest()
            .post(format!("{}/v1/{path}", self.base_url))
            .bearer_auth(SECRET_KEY)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let object: Value = response.json().await.unwrap();
        assert!(status.is_success(), "POST {path}: {status} {object}");
        object
    }
}

/// The SDK's client, allowed to reach loopback.
fn client() -> HttpClient {
    HttpClient::new(HttpOptions {
        policy: AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]),
        ..HttpOptions::default()
    })
    .unwrap()
}

fn connector() -> ManifestConnector {
    let client = client();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/stripe.yaml");
    ManifestConnector::from_file(path, &client).unwrap_or_else(|e| panic!("{e}"))
}

fn connection(stripe: &LocalStripe, key: &str) -> Connection {
    Connection::new(
        // Small pages, so that a few dozen objects take several.
        json!({"base_url": stripe.base_url, "page_size": 10}),
        Credentials::new().with("secret_key", key),
    )
}

async fn read_ids(
    connector: &ManifestConnector,
    connection: &Connection,
    stream: &str,
) -> Vec<String> {
    let mut ids = Vec::new();
    let mut messages = connector.read(connection, stream, None);
    while let Some(message) = messages.next().await {
        if let Message::Record(record) = message.unwrap_or_else(|e| panic!("{stream}: {e}")) {
            ids.push(record.data["id"].as_str().unwrap().to_owned());
        }
    }
    ids
}

#[tokio::test]
async fn the_stripe_manifest_reads_localstripe() {
    let stripe = LocalStripe::start().await;
    let mut customers = Vec::new();
    for i in 0..23 {
        let email = format!("customer{i}@example.com");
        customers.push(
            stripe
                .create("customers", &[("email", &email), ("name", "Ada")])
                .await,
        );
    }
    let mut charges = Vec::new();
    for i in 0..12 {
        let token = stripe
            .create(
                "tokens",
                &[
                    ("card[number]", "4242424242424242"),
                    ("card[exp_month]", "12"),
                    ("card[exp_year]", "2040"),
                    ("card[cvc]", "123"),
                ],
            )
            .await;
        // localstripe charges a customer's card, not a token: a paying customer per charge.
        let payer = stripe
            .create("customers", &[("source", token["id"].as_str().unwrap())])
            .await;
        let amount = (1000 + i).to_string();
        charges.push(
            stripe
                .create(
                    "charges",
                    &[
                        ("amount", &amount),
                        ("currency", "eur"),
                        ("customer", payer["id"].as_str().unwrap()),
                    ],
                )
                .await,
        );
        customers.push(payer);
    }
    // An invoice comes from a subscription in localstripe.
    let payer = customers.last().unwrap()["id"].as_str().unwrap().to_owned();
    let product = stripe.create("products", &[("name", "Pro")]).await;
    let plan = stripe
        .create(
            "plans",
            &[
                ("product", product["id"].as_str().unwrap()),
                ("amount", "500"),
                ("currency", "eur"),
                ("interval", "month"),
            ],
        )
        .await;
    stripe
        .create(
            "subscriptions",
            &[
                ("customer", &payer),
                ("items[0][plan]", plan["id"].as_str().unwrap()),
            ],
        )
        .await;

    let connector = connector();
    let good = connection(&stripe, SECRET_KEY);
    connector.check(&good).await.unwrap();
    let refused = connector
        .check(&connection(&stripe, "pk_test_not_a_secret"))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Credentials, "{refused}");
    assert!(
        refused.message().contains("Stripe refused the secret key"),
        "{refused}"
    );

    // Every object created, each once, over pages of 10.
    let mut read = read_ids(&connector, &good, "customers").await;
    read.sort();
    let mut created: Vec<String> = customers
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    created.sort();
    assert_eq!(read, created);
    // The subscription's first invoice was paid with a charge of its own.
    let read = read_ids(&connector, &good, "charges").await;
    let unique: std::collections::BTreeSet<&String> = read.iter().collect();
    assert_eq!(unique.len(), read.len(), "a charge read twice: {read:?}");
    for charge in &charges {
        let id = charge["id"].as_str().unwrap().to_owned();
        assert!(unique.contains(&id), "charge {id} not read");
    }
    assert_eq!(read.len(), charges.len() + 1);
    let invoices = read_ids(&connector, &good, "invoices").await;
    assert!(
        !invoices.is_empty(),
        "the subscription's invoice was not read"
    );

    // The kit on events (every object above made at least one): pages, resume from the
    // middle, schema, the `created[gte]` filter from the final state, and a refused key.
    let events = read_ids(&connector, &good, "events").await;
    assert!(events.len() >= 23 + 12, "{} events", events.len());
    let report = run(&Case::new(&connector, good.clone())
        .streams(&["events"])
        .expect("events", events.len())
        .bad_credentials(connection(&stripe, "sk_")))
    .await;
    println!("{report}");
    report.assert_passed();
}
