//! The network sinks against strict local servers that check each protocol's documented wire
//! format: Elasticsearch's `_bulk` and Loki's push API (neither can be installed on this
//! machine; these servers stand for them), and a plain HTTP receiver. ClickHouse is tested
//! against the real server in the daemon's end-to-end tests.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use capstan_logs::sinks::{SinkConfig, SinkStats};
use capstan_logs::{Entry, Store};
use capstan_model::{LogLine, Origin};
use tokio_util::sync::CancellationToken;

const DAY: i64 = 86_400_000_000_000;
/// 2026-12-01T00:00:00Z
const DEC_1: i64 = 1_796_083_200_000_000_000;

fn lines(n: usize) -> Vec<LogLine> {
    (0..n)
        .map(|i| LogLine {
            id: format!("c1:0:{i}"),
            // the first half on Dec 1, the rest on Dec 2
            time_nano: DEC_1 + (i * 2 / n) as i64 * DAY + i as i64 * 1_000,
            raw: format!("line {i}"),
            message: format!("line {i}"),
            origin: Origin {
                stream: if i % 3 == 0 { "stderr" } else { "stdout" }.into(),
                host: "h1".into(),
                container_id: format!("{:064}", i % 2),
                container: format!("web-{}", i % 2),
                service: "web".into(),
                app: "shop".into(),
                ..Origin::default()
            },
            ..LogLine::default()
        })
        .collect()
}

struct Running {
    _dir: tempfile::TempDir,
    stats: Arc<SinkStats>,
    _committed: tokio::sync::watch::Sender<u64>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) -> Arc<SinkStats> {
        self.shutdown.cancel();
        self.task.await.unwrap();
        self.stats
    }
}

/// A store holding `n` lines and the sink `config` (JSON) running over it.
fn start(config: serde_json::Value, n: usize) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("logs")).unwrap());
    store
        .append(
            lines(n).into_iter().map(Entry::from).collect(),
            BTreeMap::new(),
            DEC_1,
        )
        .unwrap();
    let config: SinkConfig = serde_json::from_value(config).unwrap();
    config.check().unwrap();
    let (committed, rx) = tokio::sync::watch::channel(store.checkpoint().seq);
    let stats = Arc::new(SinkStats::default());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(capstan_logs::sinks::run(
        config,
        store,
        dir.path().join("sinks"),
        rx,
        Arc::clone(&stats),
        shutdown.clone(),
    ));
    Running {
        _dir: dir,
        stats,
        _committed: committed,
        shutdown,
        task,
    }
}

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_mins(1);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the strict `_bulk` server saw and holds.
#[derive(Default)]
struct Bulk {
    /// The ids of each request, in order.
    requests: Vec<Vec<String>>,
    /// Stored documents by id, with their index.
    docs: HashMap<String, (String, serde_json::Value)>,
    /// Items that fail once with this status, then pass.
    fail_once: HashMap<String, u16>,
    /// Items refused every time (a mapping conflict).
    always_bad: BTreeSet<String>,
    /// A wire-format violation, if any.
    violation: Option<String>,
}

/// Elasticsearch's `_bulk` as documented: `application/x-ndjson`, an action line before every
/// document, a newline after the last line; the answer has `errors: true` when any item failed,
/// with each item's own status.
fn bulk(
    state: &Mutex<Bulk>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<serde_json::Value, String> {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if ct != "application/x-ndjson" {
        return Err(format!("content-type {ct:?}, not application/x-ndjson"));
    }
    let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
    if !text.ends_with('\n') {
        return Err("the body does not end with a newline".into());
    }
    let rows: Vec<&str> = text[..text.len() - 1].split('\n').collect();
    if !rows.len().is_multiple_of(2) {
        return Err(format!("{} rows: not action + document pairs", rows.len()));
    }
    let mut st = state.lock().unwrap();
    let mut items = Vec::new();
    let mut ids = Vec::new();
    let mut errors = false;
    for pair in rows.chunks(2) {
        let action: serde_json::Value =
            serde_json::from_str(pair[0]).map_err(|e| format!("action: {e}"))?;
        let doc: serde_json::Value =
            serde_json::from_str(pair[1]).map_err(|e| format!("document: {e}"))?;
        let obj = action.as_object().ok_or("an action is not an object")?;
        if obj.len() != 1 || !obj.contains_key("create") {
            return Err(format!("action {action}: want exactly one create"));
        }
        let meta = &action["create"];
        let index = meta["_index"].as_str().ok_or("no _index")?.to_owned();
        let id = meta["_id"].as_str().ok_or("no _id")?.to_owned();
        let date_part = index.strip_prefix("capstan-logs-").ok_or("index prefix")?;
        if date_part.len() != 10
            || chrono::NaiveDate::parse_from_str(date_part, "%Y.%m.%d").is_err()
        {
            return Err(format!("index {index} is not capstan-logs-YYYY.MM.DD"));
        }
        if !doc.is_object() || doc.get("@timestamp").and_then(|t| t.as_str()).is_none() {
            return Err(format!("document {doc} has no @timestamp"));
        }
        ids.push(id.clone());
        let (status, error) = if st.always_bad.contains(&id) {
            (
                400,
                Some(
                    serde_json::json!({"type": "mapper_parsing_exception", "reason": "failed to parse field [fields.status]"}),
                ),
            )
        } else if let Some(s) = st.fail_once.remove(&id) {
            (
                s,
                Some(
                    serde_json::json!({"type": if s == 429 { "es_rejected_execution_exception" } else { "unavailable_shards_exception" }, "reason": "try later"}),
                ),
            )
        } else if st.docs.contains_key(&id) {
            (
                409,
                Some(
                    serde_json::json!({"type": "version_conflict_engine_exception", "reason": "document already exists"}),
                ),
            )
        } else {
            st.docs.insert(id.clone(), (index.clone(), doc));
            (201, None)
        };
        errors |= status >= 300;
        let mut item = serde_json::json!({"_index": index, "_id": id, "status": status});
        if let Some(e) = error {
            item["error"] = e;
        }
        items.push(serde_json::json!({ "create": item }));
    }
    st.requests.push(ids);
    Ok(serde_json::json!({"took": 3, "errors": errors, "items": items}))
}

#[tokio::test]
async fn a_partial_bulk_failure_retries_only_the_failed_items() {
    let state = Arc::new(Mutex::new(Bulk::default()));
    {
        let mut st = state.lock().unwrap();
        for i in 10..15 {
            st.fail_once.insert(format!("c1:0:{i}"), 429);
        }
        for i in 20..23 {
            st.fail_once.insert(format!("c1:0:{i}"), 503);
        }
        st.always_bad.insert("c1:0:30".into());
        // delivered before capstan's last crash: the repeat is a 409, which is delivered
        st.docs.insert(
            "c1:0:40".into(),
            ("capstan-logs-2026.12.01".into(), serde_json::json!({})),
        );
    }
    let s = Arc::clone(&state);
    let router = axum::Router::new().route(
        "/_bulk",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let s = Arc::clone(&s);
            async move {
                match bulk(&s, &headers, &body) {
                    Ok(answer) => axum::Json(answer).into_response(),
                    Err(violation) => {
                        s.lock().unwrap().violation = Some(violation.clone());
                        (StatusCode::BAD_REQUEST, violation).into_response()
                    }
                }
            }
        }),
    );
    let endpoint = serve(router).await;
    let sink = start(
        serde_json::json!({"name": "es", "type": "elasticsearch", "endpoint": endpoint}),
        100,
    );
    let live = Arc::clone(&sink.stats);
    until("the batch delivered", || live.snapshot("es").cursor == 100).await;
    let counters = sink.stop().await.snapshot("es");
    let st = state.lock().unwrap();
    assert_eq!(st.violation, None);
    assert_eq!(
        st.requests.len(),
        2,
        "one batch, then only the failed items"
    );
    assert_eq!(st.requests[0].len(), 100);
    let retried: BTreeSet<&str> = st.requests[1].iter().map(String::as_str).collect();
    let want: BTreeSet<String> = (10..15)
        .chain(20..23)
        .map(|i| format!("c1:0:{i}"))
        .collect();
    assert_eq!(retried, want.iter().map(String::as_str).collect());
    assert_eq!(st.docs.len(), 99, "all but the refused one");
    assert!(!st.docs.contains_key("c1:0:30"));
    let indices: BTreeSet<&str> = st.docs.values().map(|(i, _)| i.as_str()).collect();
    assert_eq!(
        indices,
        ["capstan-logs-2026.12.01", "capstan-logs-2026.12.02"].into()
    );
    let (index, doc) = &st.docs["c1:0:99"];
    assert_eq!(index, "capstan-logs-2026.12.02");
    assert_eq!(doc["raw"], "line 99");
    assert_eq!(doc["service"], "web");
    assert_eq!(
        (counters.shipped, counters.retried, counters.rejected),
        (99, 8, 1)
    );
}

type Labels = BTreeMap<String, String>;

/// What the strict Loki server saw.
#[derive(Default)]
struct Push {
    /// When each request came, and its status.
    requests: Vec<(Instant, u16)>,
    /// Accepted lines, by raw text, with their labels.
    accepted: BTreeMap<String, BTreeMap<String, String>>,
    violation: Option<String>,
}

/// Loki's push API as documented: JSON `{"streams": [{"stream": {labels}, "values": [["<unix
/// ns>", "<line>"]]}]}`, label names `[a-zA-Z_][a-zA-Z0-9_]*`, values in time order per stream.
fn push(
    body: &[u8],
    headers: &HeaderMap,
    allowed: &[&str],
) -> Result<Vec<(String, Labels)>, String> {
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
        return Err("content-type is not application/json".into());
    }
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for stream in v["streams"].as_array().ok_or("no streams")? {
        let labels: BTreeMap<String, String> =
            serde_json::from_value(stream["stream"].clone()).map_err(|e| format!("labels: {e}"))?;
        if labels.is_empty() {
            return Err("a stream without labels".into());
        }
        for (k, val) in &labels {
            let ok_name = k
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok_name || !allowed.contains(&k.as_str()) || val.is_empty() {
                return Err(format!("label {k}={val:?} is not allowed"));
            }
        }
        let mut last = 0_i128;
        for value in stream["values"].as_array().ok_or("no values")? {
            let pair = value
                .as_array()
                .filter(|p| p.len() == 2)
                .ok_or("a value is not a pair")?;
            let ts = pair[0].as_str().ok_or("the timestamp is not a string")?;
            if ts.is_empty() || !ts.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("timestamp {ts:?} is not unix ns"));
            }
            let ts: i128 = ts.parse().map_err(|_| "timestamp")?;
            if ts < last {
                return Err("values out of order".into());
            }
            last = ts;
            out.push((
                pair[1]
                    .as_str()
                    .ok_or("the line is not a string")?
                    .to_owned(),
                labels.clone(),
            ));
        }
    }
    Ok(out)
}

#[tokio::test]
async fn loki_push_retries_429_and_5xx_and_honours_retry_after() {
    let state = Arc::new(Mutex::new(Push::default()));
    let s = Arc::clone(&state);
    let router = axum::Router::new().route(
        "/loki/api/v1/push",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let s = Arc::clone(&s);
            async move {
                let mut st = s.lock().unwrap();
                let n = st.requests.len();
                let status: u16 = match n {
                    0 => 429,
                    1 => 500,
                    _ => 204,
                };
                st.requests.push((Instant::now(), status));
                match push(&body, &headers, &["host", "app", "service", "stream"]) {
                    Err(v) => {
                        st.violation = Some(v.clone());
                        (StatusCode::BAD_REQUEST, v).into_response()
                    }
                    Ok(_) if status == 429 => (
                        StatusCode::TOO_MANY_REQUESTS,
                        [("retry-after", "1")],
                        "slow down",
                    )
                        .into_response(),
                    Ok(_) if status == 500 => {
                        (StatusCode::INTERNAL_SERVER_ERROR, "ingester down").into_response()
                    }
                    Ok(lines) => {
                        st.accepted.extend(lines);
                        StatusCode::NO_CONTENT.into_response()
                    }
                }
            }
        }),
    );
    let endpoint = serve(router).await;
    let sink = start(
        serde_json::json!({"name": "loki", "type": "loki", "endpoint": endpoint, "labels": ["host", "app", "service", "stream"]}),
        50,
    );
    let live = Arc::clone(&sink.stats);
    until("the batch delivered", || live.snapshot("loki").cursor == 50).await;
    let counters = sink.stop().await.snapshot("loki");
    let st = state.lock().unwrap();
    assert_eq!(st.violation, None);
    let statuses: Vec<u16> = st.requests.iter().map(|r| r.1).collect();
    assert_eq!(statuses, [429, 500, 204]);
    // correctness, not speed: the second try waited at least what Retry-After asked
    assert!(st.requests[1].0 - st.requests[0].0 >= Duration::from_secs(1));
    assert_eq!(st.accepted.len(), 50);
    assert_eq!(
        st.accepted["line 3"],
        BTreeMap::from([
            ("app".to_owned(), "shop".to_owned()),
            ("host".to_owned(), "h1".to_owned()),
            ("service".to_owned(), "web".to_owned()),
            ("stream".to_owned(), "stderr".to_owned()),
        ])
    );
    assert_eq!(
        (counters.shipped, counters.failures, counters.rejected),
        (50, 2, 0)
    );
}

#[tokio::test]
async fn an_http_sink_sends_a_failed_batch_again_whole_and_skips_a_refused_one() {
    #[derive(Default)]
    struct Seen {
        bodies: Vec<Vec<LogLine>>,
        auth: Vec<String>,
        tenant: Vec<String>,
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = Arc::clone(&seen);
    let router = axum::Router::new().route(
        "/in",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let s = Arc::clone(&s);
            async move {
                let mut st = s.lock().unwrap();
                let get = |h: &str| {
                    headers
                        .get(h)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                st.auth.push(get("authorization"));
                st.tenant.push(get("x-team"));
                let lines: Vec<LogLine> = serde_json::from_slice(&body).unwrap();
                let first = st.bodies.is_empty();
                st.bodies.push(lines);
                if first {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let endpoint = serve(router).await;
    let config = serde_json::json!({
        "name": "hook", "type": "http", "url": format!("{endpoint}/in"),
        "token": "t0ken", "headers": {"x-team": "ops"}, "batch_max_lines": 20,
    });
    let sink = start(config, 50);
    let live = Arc::clone(&sink.stats);
    until("every line", || live.snapshot("hook").cursor == 50).await;
    let counters = sink.stop().await.snapshot("hook");
    {
        let st = seen.lock().unwrap();
        // 503 on the first try, then batches of 20, 20, 10
        let sizes: Vec<usize> = st.bodies.iter().map(Vec::len).collect();
        assert_eq!(sizes, [20, 20, 20, 10]);
        assert_eq!(
            st.bodies[0], st.bodies[1],
            "the failed batch comes again whole"
        );
        assert!(st.auth.iter().all(|a| a == "Bearer t0ken"));
        assert!(st.tenant.iter().all(|t| t == "ops"));
        assert_eq!(
            (counters.shipped, counters.failures, counters.batches),
            (50, 1, 3)
        );
    }

    // a receiver that refuses the data itself (400): the batch is counted and skipped
    let router = axum::Router::new().route(
        "/in",
        axum::routing::post(|| async { (StatusCode::BAD_REQUEST, "schema mismatch") }),
    );
    let endpoint = serve(router).await;
    let sink = start(
        serde_json::json!({"name": "hook", "type": "http", "url": format!("{endpoint}/in")}),
        10,
    );
    let live = Arc::clone(&sink.stats);
    until("the refused batch skipped", || {
        live.snapshot("hook").cursor == 10
    })
    .await;
    let counters = sink.stop().await.snapshot("hook");
    assert_eq!((counters.shipped, counters.rejected), (0, 10));
    assert!(counters.last_error.unwrap().contains("schema mismatch"));
}

/// A CA, and certificates it signed for a server on 127.0.0.1 and for a client, in PEM files.
struct Pki {
    dir: tempfile::TempDir,
    server: (Vec<rustls::pki_types::CertificateDer<'static>>, String),
    ca_der: rustls::pki_types::CertificateDer<'static>,
}

use tokio_rustls::rustls;

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "capstan test CA");
        let ca =
            rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate().unwrap()).unwrap();
        let leaf = |names: Vec<String>, usage| {
            let mut p = rcgen::CertificateParams::new(names).unwrap();
            p.extended_key_usages = vec![usage];
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &ca).unwrap();
            (cert, key)
        };
        let (server, server_key) = leaf(
            vec!["127.0.0.1".into()],
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client, client_key) = leaf(
            vec!["capstan".into()],
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        );
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        write("ca.pem", ca.pem());
        write("client.pem", client.pem());
        write("client.key", client_key.serialize_pem());
        Self {
            server: (vec![server.der().clone()], server_key.serialize_pem()),
            ca_der: ca.der().clone(),
            dir,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Serves `router` over TLS with the server certificate; with `client_auth`, only to a
    /// client whose certificate the CA signed.
    async fn serve(&self, router: axum::Router, client_auth: bool) -> String {
        use rustls::pki_types::pem::PemObject;
        let key =
            rustls::pki_types::PrivateKeyDer::from_pem_slice(self.server.1.as_bytes()).unwrap();
        let builder = rustls::ServerConfig::builder();
        let builder = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.ca_der.clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder
            .with_single_cert(self.server.0.clone(), key)
            .unwrap();
        let listener = TlsListener {
            tcp: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            tls: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            refused: Arc::default(),
        };
        let addr = listener.tcp.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        format!("https://{addr}")
    }
}

/// Accepts TLS connections; a failed handshake is dropped (and counted), not served.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    refused: Arc<std::sync::atomic::AtomicU64>,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            match self.tls.accept(tcp).await {
                Ok(tls) => return (tls, addr),
                Err(_) => {
                    self.refused
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// An `https://` endpoint: its certificate is checked against the system's CAs and
/// `tls.ca_file`; a server that asks for a client certificate gets `tls.crt_file`. A sink
/// that cannot verify the server sends nothing, says why, and delivers once it can.
#[tokio::test]
async fn an_https_endpoint_is_verified_and_can_ask_for_a_client_certificate() {
    let pki = Pki::new();
    let received = Arc::new(Mutex::new(0_usize));
    let r = Arc::clone(&received);
    let router = axum::Router::new().route(
        "/in",
        axum::routing::post(move |body: Bytes| {
            let r = Arc::clone(&r);
            async move {
                let lines: Vec<LogLine> = serde_json::from_slice(&body).unwrap();
                *r.lock().unwrap() += lines.len();
                StatusCode::OK
            }
        }),
    );
    let endpoint = pki.serve(router.clone(), false).await;
    let url = format!("{endpoint}/in");

    // the system's CAs do not know the test CA: nothing is sent, the error says so
    let sink = start(
        serde_json::json!({"name": "tls", "type": "http", "url": url}),
        10,
    );
    let live = Arc::clone(&sink.stats);
    until("a failed try", || live.snapshot("tls").failures >= 1).await;
    let counters = sink.stop().await.snapshot("tls");
    assert_eq!(counters.shipped, 0);
    assert_eq!(*received.lock().unwrap(), 0);
    let error = counters.last_error.unwrap_or_default();
    eprintln!("without the CA: {error}");
    assert!(
        error.contains("certificate") && error.contains("tls.ca_file"),
        "{error}"
    );
    // the status shows where the sink sends, never the path (a webhook's path is its secret)
    assert!(
        error.contains(&endpoint) && !error.contains("/in"),
        "{error}"
    );

    // trusting the CA: delivered
    let sink = start(
        serde_json::json!({"name": "tls", "type": "http", "url": url,
            "tls": {"ca_file": pki.path("ca.pem")}}),
        10,
    );
    let live = Arc::clone(&sink.stats);
    until("every line over TLS", || live.snapshot("tls").cursor == 10).await;
    assert_eq!(sink.stop().await.snapshot("tls").shipped, 10);
    assert_eq!(*received.lock().unwrap(), 10);

    // a server that wants a client certificate: refused without one, served with one
    *received.lock().unwrap() = 0;
    let endpoint = pki.serve(router, true).await;
    let url = format!("{endpoint}/in");
    let sink = start(
        serde_json::json!({"name": "tls", "type": "http", "url": url,
            "tls": {"ca_file": pki.path("ca.pem")}}),
        10,
    );
    let live = Arc::clone(&sink.stats);
    until("a refused try", || live.snapshot("tls").failures >= 1).await;
    assert_eq!(sink.stop().await.snapshot("tls").shipped, 0);
    let sink = start(
        serde_json::json!({"name": "tls", "type": "http", "url": url,
            "tls": {"ca_file": pki.path("ca.pem"), "crt_file": pki.path("client.pem"),
                    "key_file": pki.path("client.key")}}),
        10,
    );
    let live = Arc::clone(&sink.stats);
    until("every line over mutual TLS", || {
        live.snapshot("tls").cursor == 10
    })
    .await;
    assert_eq!(sink.stop().await.snapshot("tls").shipped, 10);
    assert_eq!(*received.lock().unwrap(), 10);
}

/// Bad `tls` settings are refused when the config is checked, naming the key and the file.
#[test]
fn bad_tls_settings_name_the_key() {
    let pki = Pki::new();
    let check = |tls: serde_json::Value, kind: &str| {
        let mut config = serde_json::json!({"name": "s", "type": kind, "tls": tls});
        if kind == "file" {
            config["path"] = "/tmp/capstan-x.ndjson".into();
        } else {
            config["url"] = "https://127.0.0.1:1/in".into();
        }
        let config: SinkConfig = serde_json::from_value(config).unwrap();
        config.check().unwrap_err().to_string()
    };
    let e = check(
        serde_json::json!({"ca_file": "/nonexistent/ca.pem"}),
        "http",
    );
    assert!(
        e.starts_with("tls.ca_file: cannot read /nonexistent/ca.pem"),
        "{e}"
    );
    let e = check(
        serde_json::json!({"ca_file": pki.path("client.key")}),
        "http",
    );
    assert!(
        e.contains("tls.ca_file") && e.contains("no PEM certificate"),
        "{e}"
    );
    let e = check(
        serde_json::json!({"crt_file": pki.path("client.pem")}),
        "http",
    );
    assert!(e.starts_with("tls.crt_file: give key_file"), "{e}");
    let e = check(
        serde_json::json!({"crt_file": pki.path("client.pem"), "key_file": pki.path("ca.pem")}),
        "http",
    );
    assert!(
        e.contains("not a PEM certificate and its private key"),
        "{e}"
    );
    let e = check(serde_json::json!({"ca_file": pki.path("ca.pem")}), "file");
    assert!(e.starts_with("tls: a file sink has no TLS"), "{e}");
    // and a misspelt key inside tls
    let bad: Result<SinkConfig, _> = serde_json::from_value(serde_json::json!({
        "name": "s", "type": "http", "url": "https://h/in", "tls": {"ca": "x"},
    }));
    assert!(bad.unwrap_err().to_string().contains("unknown field `ca`"));
}
