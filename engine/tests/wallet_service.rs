//! `client serve` (issue 21) with real processes on 127.0.0.1: a committee of four
//! authorities, wallets served over HTTP. Every endpoint and its errors; a payment made once
//! per idempotency key across retries, a committee that cannot answer and restarts of the
//! service; the live stream of a merchant's wallet learning a payment from the committee; the
//! bearer token beyond loopback; the wallet lock.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{CLIENT, committee_balance, committee_with_accounts, new_account};
use serde_json::{Value, json};

/// A `client serve` process over wallet `wallet` of `dir`.
struct Service {
    child: Child,
    url: String,
    log: PathBuf,
    token: Option<String>,
}

impl Service {
    fn start(dir: &Path, wallet: &str, extra: &[&str]) -> Self {
        let port = free_tcp_port("127.0.0.1");
        Self::start_at(dir, wallet, &format!("127.0.0.1:{port}"), extra)
    }

    fn start_at(dir: &Path, wallet: &str, listen: &str, extra: &[&str]) -> Self {
        let log = dir.join(format!("serve-{wallet}-{}.log", listen.replace(':', "_")));
        let child = Command::new(&*CLIENT)
            .current_dir(dir)
            .args(["--committee", "committee.json", "--accounts", wallet])
            .args(["--timeout", "3", "serve", "--listen", listen])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::from(fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        let port = listen.rsplit(':').next().unwrap();
        let service = Service {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            token: None,
        };
        service.wait_listening();
        service
    }

    /// Waits (up to 20 s) until the service answers.
    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while agent()
            .get(format!("{}/openapi.json", self.url))
            .call()
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "the service never listened: {}",
                fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let mut request = agent().get(format!("{}{path}", self.url));
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        answer(request.call().unwrap())
    }

    fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let mut request = agent()
            .post(format!("{}{path}", self.url))
            .header("Content-Type", "application/json");
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        answer(request.send(body).unwrap())
    }

    fn pay(&self, from: &str, to: &str, amount: u64, key: &str) -> (u16, Value) {
        let body = json!({"from": from, "to": to, "amount": amount, "idempotency_key": key});
        self.post("/api/payments", &body.to_string())
    }

    fn balance(&self, account: &str) -> i64 {
        let (status, body) = self.get(&format!("/api/accounts/{account}"));
        assert_eq!(status, 200, "{body}");
        body["balance"].as_i64().unwrap()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP port free on `host` right now.
fn free_tcp_port(host: &str) -> u16 {
    TcpListener::bind((host, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A committee of four with two funded accounts in `accounts.json`, a merchant account in
/// `merchant.json`, and a service for each wallet: the authorities, the funded accounts, the
/// merchant's account, the payer's service and the merchant's.
fn payer_and_shop(
    dir: &Path,
) -> (
    Vec<common::Authority>,
    Vec<String>,
    String,
    Service,
    Service,
) {
    let (authorities, accounts) = committee_with_accounts(dir, 2);
    let merchant = new_account(dir, "merchant.json");
    let payer = Service::start(dir, "accounts.json", &[]);
    let shop = Service::start(dir, "merchant.json", &[]);
    (authorities, accounts, merchant, payer, shop)
}

/// An HTTP client that returns error statuses as answers, and gives up after 60 s.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn answer(mut response: ureq::http::Response<ureq::Body>) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The error code of an error answer.
fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("(none)")
}

#[test]
fn every_endpoint_answers_and_bad_input_gets_a_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (_authorities, accounts) = committee_with_accounts(dir, 2);
    let (a, b) = (&accounts[0], &accounts[1]);
    let service = Service::start(dir, "accounts.json", &[]);

    let (status, body) = service.get("/api/accounts");
    assert_eq!(status, 200, "{body}");
    let listed = body["accounts"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|x| x["balance"] == 100), "{body}");

    // Pay, then the same key again: one payment.
    let (status, paid) = service.pay(a, b, 5, "invoice-1");
    assert_eq!(status, 201, "{paid}");
    assert_eq!(paid["status"], "final");
    assert_eq!(paid["replayed"], false);
    assert_eq!(paid["certificate"], format!("{a}:0"));
    let (status, again) = service.pay(a, b, 5, "invoice-1");
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["replayed"], true);
    assert_eq!(again["certificate"], paid["certificate"]);
    assert_eq!(service.balance(a), 95);
    assert_eq!(committee_balance(dir, a), 95);

    // The history of both sides names the certificate.
    let (status, history) = service.get(&format!("/api/accounts/{a}/history"));
    assert_eq!(status, 200, "{history}");
    let sent = &history["payments"][0];
    assert_eq!(
        (&sent["direction"], &sent["counterparty"], &sent["amount"]),
        (&json!("sent"), &json!(b), &json!(5))
    );
    assert_eq!(sent["certificate"], paid["certificate"]);
    let (_, history) = service.get(&format!("/api/accounts/{b}/history"));
    assert_eq!(history["payments"][0]["direction"], "received", "{history}");
    assert_eq!(service.balance(b), 105);

    // Refusals, each with its status and code, and no payment.
    let cases: Vec<(u16, &str, (u16, Value))> = vec![
        (
            409,
            "idempotency_key_reused",
            service.pay(a, b, 6, "invoice-1"),
        ),
        (
            422,
            "insufficient_funds",
            service.pay(a, b, 1000, "invoice-2"),
        ),
        (
            404,
            "unknown_account",
            service.pay(&"ab".repeat(32), b, 1, "invoice-3"),
        ),
        (
            400,
            "bad_request",
            service.post(
                "/api/payments",
                &json!({"from": a, "to": b, "amount": "12.5", "idempotency_key": "k"}).to_string(),
            ),
        ),
        (
            400,
            "bad_request",
            service.post(
                "/api/payments",
                &json!({"from": a, "to": "nope", "amount": 1, "idempotency_key": "k"}).to_string(),
            ),
        ),
        (
            400,
            "bad_request",
            service.post("/api/payments", "{not json"),
        ),
        (
            404,
            "unknown_account",
            service.get(&format!("/api/accounts/{}", "cd".repeat(32))),
        ),
        (400, "bad_request", service.get("/api/accounts/xyz")),
        (
            400,
            "bad_request",
            service.get(&format!("/api/accounts/{a}/history?limit=many")),
        ),
        (400, "bad_request", service.get("/api/events")),
        (
            404,
            "unknown_account",
            service.get(&format!("/api/events?account={}", "cd".repeat(32))),
        ),
        (404, "not_found", service.get("/api/nothing-here")),
    ];
    for (status, expected, (got, body)) in cases {
        assert_eq!((got, code(&body)), (status, expected), "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    assert_eq!(committee_balance(dir, a), 95);

    // The description and the page.
    let (status, description) = service.get("/openapi.json");
    assert_eq!(status, 200);
    assert_eq!(description["openapi"], "3.1.0");
    let (status, page) = service.get("/");
    assert_eq!(status, 200);
    assert!(page.as_str().unwrap().contains("merchant-status"));
    let (status, _) = service.get("/app.js");
    assert_eq!(status, 200);

    // One process per wallet: the service holds the wallet.
    common::fails_with(
        common::client_with(dir, "accounts.json", &["sync"]),
        "in use",
    );
}

#[test]
fn the_same_key_never_pays_twice_across_an_outage_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (mut authorities, accounts) = committee_with_accounts(dir, 2);
    let (a, b) = (&accounts[0], &accounts[1]);
    let mut service = Service::start(dir, "accounts.json", &[]);
    let (status, first) = service.pay(a, b, 7, "order-7");
    assert_eq!(status, 201, "{first}");

    // A restart: the key is remembered (it is in the signed order the wallet keeps).
    service.kill();
    let mut service = Service::start(dir, "accounts.json", &[]);
    let (status, again) = service.pay(a, b, 7, "order-7");
    assert_eq!(
        (status, &again["certificate"]),
        (200, &first["certificate"])
    );

    // Two authorities down: no quorum, so a payment cannot finish. The service says so, and
    // the order it signed stays in the wallet.
    authorities[2].kill();
    authorities[3].kill();
    let (status, body) = service.pay(a, b, 3, "order-3");
    assert_eq!((status, code(&body)), (504, "committee_timeout"), "{body}");
    service.kill();
    for authority in &mut authorities[2..] {
        authority.start();
    }
    common::wait_serving(dir, a);

    // Retried after the committee and the service are back: the interrupted payment is
    // finished, not made again.
    let service = Service::start(dir, "accounts.json", &[]);
    let (status, done) = service.pay(a, b, 3, "order-3");
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["replayed"], true);
    assert_eq!(done["sequence_number"], 1);
    let (status, _) = service.pay(a, b, 3, "order-3");
    assert_eq!(status, 200);
    assert_eq!(committee_balance(dir, a), 90);
    assert_eq!(service.balance(a), 90);
}

#[test]
fn a_merchant_sees_a_payment_from_another_wallet_the_moment_it_is_final() {
    let dir = tempfile::tempdir().unwrap();
    let (_authorities, accounts, merchant, payer, shop) = payer_and_shop(dir.path());

    let response = agent()
        .get(format!("{}/api/events?account={merchant}", shop.url))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut lines = BufReader::new(response.into_body().into_reader()).lines();
    let mut next_event = move || {
        let mut name = String::new();
        loop {
            let line = lines.next().expect("the stream ended").unwrap();
            if let Some(rest) = line.strip_prefix("event:") {
                name = rest.trim().to_string();
            } else if let Some(rest) = line.strip_prefix("data:") {
                return (
                    name.clone(),
                    serde_json::from_str::<Value>(rest.trim()).unwrap(),
                );
            }
        }
    };
    assert_eq!(next_event().0, "ready");

    let (status, paid) = payer.pay(&accounts[0], &merchant, 12, "till-1");
    assert_eq!(status, 201, "{paid}");
    let (name, event) = next_event();
    assert_eq!(name, "payment");
    assert_eq!(event["account"], json!(merchant));
    assert_eq!(event["from"], json!(accounts[0]));
    assert_eq!(event["amount"], 12);
    assert_eq!(event["certificate"], paid["certificate"]);
    assert_eq!(shop.balance(&merchant), 12);
    let (_, history) = shop.get(&format!("/api/accounts/{merchant}/history"));
    assert_eq!(history["payments"][0]["certificate"], paid["certificate"]);
}

#[test]
fn beyond_loopback_the_service_needs_a_token() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (_authorities, accounts) = committee_with_accounts(dir, 2);
    let port = free_tcp_port("0.0.0.0");
    let listen = format!("0.0.0.0:{port}");
    let out = common::client_with(dir, "accounts.json", &["serve", "--listen", &listen]);
    common::fails_with(out, "--token-file");

    let token = "s3cret-token-of-some-length";
    let file = dir.join("token");
    fs::write(&file, format!("{token}\n")).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    let mut service = Service::start_at(dir, "accounts.json", &listen, &["--token-file", "token"]);
    let (status, body) = service.get("/api/accounts");
    assert_eq!((status, code(&body)), (401, "unauthorized"));
    service.token = Some("wrong-token-but-long-enough".into());
    assert_eq!(service.get("/api/accounts").0, 401);
    let (status, body) = service.pay(&accounts[0], &accounts[1], 1, "k");
    assert_eq!((status, code(&body)), (401, "unauthorized"));
    service.token = Some(token.into());
    let (status, body) = service.get("/api/accounts");
    assert_eq!(status, 200, "{body}");
    // The page itself holds no data and loads without the token (it asks for it).
    service.token = None;
    assert_eq!(service.get("/").0, 200);
}

/// The page in a real browser: headless Chromium, driven over WebDriver by chromedriver
/// (`scripts/browser-test.sh` installs both and runs this with `--ignored`). A merchant's page
/// waits for 12 to its account; the payer's page, of another wallet and service, pays it; the
/// merchant's page turns to "paid". Screenshots of both pages go to `$FASTPAY_SCREENSHOTS`
/// (default `target/browser`).
#[test]
#[ignore = "needs Chromium and chromedriver: run scripts/browser-test.sh"]
fn in_a_browser_the_merchant_page_turns_to_paid() {
    let dir = tempfile::tempdir().unwrap();
    let (_authorities, accounts, merchant, payer, shop) = payer_and_shop(dir.path());
    let driver = ChromeDriver::start();
    let screenshots = PathBuf::from(
        std::env::var("FASTPAY_SCREENSHOTS")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target/browser").into()),
    );
    fs::create_dir_all(&screenshots).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use fantoccini::Locator;
        let merchant_page = driver.session().await;
        let payer_page = driver.session().await;

        merchant_page.goto(&shop.url).await.unwrap();
        let option = element(&merchant_page, Locator::Css("#merchant-account option")).await;
        assert_eq!(
            option.attr("value").await.unwrap().as_deref(),
            Some(&*merchant)
        );
        type_into(&merchant_page, "merchant-amount", "12").await;
        click(&merchant_page, "merchant-wait").await;
        let status = element(&merchant_page, Locator::Id("merchant-status")).await;
        wait_for_attribute(&status, "data-listening", "yes").await;
        let text = status.text().await.unwrap();
        assert!(text.contains("waiting for 12"), "{text}");

        payer_page.goto(&payer.url).await.unwrap();
        element(&payer_page, Locator::Css("#pay-from option")).await;
        element(&payer_page, Locator::Id("pay-from"))
            .await
            .select_by_value(&accounts[0])
            .await
            .unwrap();
        type_into(&payer_page, "pay-to", &merchant).await;
        type_into(&payer_page, "pay-amount", "12").await;
        click(&payer_page, "pay-submit").await;
        let result = element(&payer_page, Locator::Id("pay-result")).await;
        wait_for_attribute(&result, "data-state", "paid").await;

        wait_for_attribute(&status, "data-state", "paid").await;
        let text = status.text().await.unwrap();
        assert!(text.starts_with("paid: 12 from"), "{text}");
        for (page, name) in [
            (&merchant_page, "merchant-paid.png"),
            (&payer_page, "payer-paid.png"),
        ] {
            let png = page.screenshot().await.unwrap();
            fs::write(screenshots.join(name), png).unwrap();
        }
        eprintln!("screenshots in {}", screenshots.display());
        merchant_page.close().await.unwrap();
        payer_page.close().await.unwrap();
    });
    assert_eq!(shop.balance(&merchant), 12);
}

/// The first element `locator` finds once the page has it.
async fn element(
    page: &fantoccini::Client,
    locator: fantoccini::Locator<'_>,
) -> fantoccini::elements::Element {
    page.wait().for_element(locator).await.unwrap()
}

/// Clicks the element `id`.
async fn click(page: &fantoccini::Client, id: &str) {
    let target = element(page, fantoccini::Locator::Id(id)).await;
    target.click().await.unwrap();
}

/// Types `text` into the input `id`.
async fn type_into(page: &fantoccini::Client, id: &str, text: &str) {
    let input = element(page, fantoccini::Locator::Id(id)).await;
    input.send_keys(text).await.unwrap();
}

/// Waits (up to 30 s) until `element`'s attribute `name` is `value`.
async fn wait_for_attribute(element: &fantoccini::elements::Element, name: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = element.attr(name).await.unwrap();
        if now.as_deref() == Some(value) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} is {now:?}, not {value:?}; the element says: {}",
            element.text().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A chromedriver process (`$FASTPAY_CHROMEDRIVER`, default `chromedriver`) on a free port.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    fn start() -> Self {
        let program =
            std::env::var("FASTPAY_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = free_tcp_port("127.0.0.1");
        let child = Command::new(&program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e} (install chromium-driver)"));
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while agent().get(format!("{url}/status")).call().is_err() {
            assert!(Instant::now() < deadline, "chromedriver never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        ChromeDriver { child, url }
    }

    /// A new headless Chromium session.
    async fn session(&self) -> fantoccini::Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                            "--disable-dev-shm-usage", "--window-size=1100,1000"]}),
        );
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
