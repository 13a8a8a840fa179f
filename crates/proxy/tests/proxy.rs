//! The proxy against real sockets: backends are small servers on loopback (the replicas' part);
//! the proxy runs as it does under the daemon, driven over its unix socket. The e2e suite runs
//! it in front of real containers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use capstan_proxy::{Backend, Mode, ProxyClient, Route};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An HTTP/1 server answering its `name`; `/slow` takes a second; an `Upgrade` request is
/// switched to an echo of raw bytes.
async fn http_backend(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |mut req: Request<Incoming>| async move {
                        if req.headers().contains_key(hyper::header::UPGRADE) {
                            let upgrade = hyper::upgrade::on(&mut req);
                            tokio::spawn(async move {
                                let mut io = TokioIo::new(upgrade.await.unwrap());
                                let mut buf = [0_u8; 64];
                                while let Ok(n) = io.read(&mut buf).await {
                                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                        return;
                                    }
                                }
                            });
                            let mut resp = Response::new(Full::new(Bytes::new()));
                            *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                            resp.headers_mut()
                                .insert(hyper::header::UPGRADE, "echo".parse().unwrap());
                            resp.headers_mut()
                                .insert(hyper::header::CONNECTION, "upgrade".parse().unwrap());
                            return Ok::<_, Infallible>(resp);
                        }
                        if req.uri().path() == "/slow" {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        let seen = req
                            .headers()
                            .get("x-forwarded-for")
                            .map(|v| v.to_str().unwrap().to_owned())
                            .unwrap_or_default();
                        let mut resp = Response::new(Full::new(Bytes::from(name)));
                        resp.headers_mut()
                            .insert("x-seen-forwarded-for", seen.parse().unwrap());
                        Ok(resp)
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// A TCP server that speaks first (`hello NAME\n`), then echoes.
async fn banner_backend(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                stream
                    .write_all(format!("hello {name}\n").as_bytes())
                    .await
                    .unwrap();
                let mut buf = [0_u8; 64];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// An address where nothing listens.
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

struct Fixture {
    dir: tempfile::TempDir,
    client: ProxyClient,
    task: tokio::task::JoinHandle<Result<(), capstan_proxy::Error>>,
}

async fn proxy() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let task = tokio::spawn(async move { capstan_proxy::run(&data).await });
    let client = ProxyClient::new(dir.path(), None);
    for _ in 0..200 {
        if client.status().await.is_ok() {
            return Fixture { dir, client, task };
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the proxy did not answer");
}

fn route(key: &str, mode: Mode, backends: &[(&str, SocketAddr)]) -> Route {
    Route {
        key: key.into(),
        bind: "127.0.0.1:0".parse().unwrap(),
        mode,
        backends: backends
            .iter()
            .map(|(id, addr)| Backend {
                id: (*id).into(),
                addr: *addr,
            })
            .collect(),
    }
}

/// Applies one route and returns the address it got.
async fn serve(p: &Fixture, r: Route) -> SocketAddr {
    let key = r.key.clone();
    let (status, errors) = p.client.apply(vec![r]).await.unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    status.routes.iter().find(|s| s.key == key).unwrap().local
}

/// One keep-alive connection to `addr`.
async fn connect(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

async fn get(
    send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    path: &str,
) -> (StatusCode, String) {
    send.ready().await.unwrap();
    let resp = send
        .send_request(
            Request::get(path)
                .header("host", "app.test")
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn one_keepalive_connection_is_spread_over_the_replicas() {
    let p = proxy().await;
    let a = http_backend("a").await;
    let b = http_backend("b").await;
    let addr = serve(&p, route("app/web/80", Mode::Auto, &[("a", a), ("b", b)])).await;
    let mut send = connect(addr).await;
    let mut seen = Vec::new();
    for _ in 0..6 {
        let (status, body) = get(&mut send, "/").await;
        assert_eq!(status, StatusCode::OK);
        seen.push(body);
    }
    assert_eq!(seen, ["a", "b", "a", "b", "a", "b"]);
    let status = p.client.status().await.unwrap();
    let served: Vec<u64> = status.routes[0].backends.iter().map(|b| b.served).collect();
    assert_eq!(served, [3, 3]);
    assert_eq!(status.routes[0].connections, 1);
}

#[tokio::test]
async fn a_drained_replica_finishes_its_request_and_gets_no_new_one() {
    let p = proxy().await;
    let a = http_backend("a").await;
    let b = http_backend("b").await;
    let r = route("app/web/80", Mode::Http, &[("a", a), ("b", b)]);
    let addr = serve(&p, r.clone()).await;
    // the slow request lands on a (round-robin starts there)
    let mut slow_conn = connect(addr).await;
    let slow = tokio::spawn(async move { get(&mut slow_conn, "/slow").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // a leaves the rotation; its request is still open
    let only_b = Route {
        backends: vec![r.backends[1].clone()],
        ..r
    };
    p.client.apply(vec![only_b]).await.unwrap();
    let mut send = connect(addr).await;
    for _ in 0..4 {
        assert_eq!(get(&mut send, "/").await.1, "b");
    }
    let open = p
        .client
        .wait_idle(vec!["a".into()], Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(open, 0);
    assert_eq!(slow.await.unwrap(), (StatusCode::OK, "a".to_owned()));
    // nothing open and out of every route: forgotten
    let open = p
        .client
        .wait_idle(vec!["a".into()], Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(open, 0);
}

#[tokio::test]
async fn a_drain_that_outlasts_its_timeout_says_how_much_is_open() {
    let p = proxy().await;
    let a = http_backend("a").await;
    let addr = serve(&p, route("app/web/80", Mode::Http, &[("a", a)])).await;
    let mut conn = connect(addr).await;
    let slow = tokio::spawn(async move { get(&mut conn, "/slow").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let open = p
        .client
        .wait_idle(vec!["a".into()], Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(open, 1);
    assert_eq!(slow.await.unwrap().0, StatusCode::OK);
}

#[tokio::test]
async fn a_refusing_replica_is_skipped_for_http_and_tcp() {
    let p = proxy().await;
    let good = http_backend("good").await;
    let dead = closed_port();
    let addr = serve(
        &p,
        route("app/web/80", Mode::Auto, &[("dead", dead), ("good", good)]),
    )
    .await;
    let mut send = connect(addr).await;
    for _ in 0..4 {
        assert_eq!(
            get(&mut send, "/").await,
            (StatusCode::OK, "good".to_owned())
        );
    }
    assert!(failures(&p, "dead").await >= 1);

    let banner = banner_backend("tcp").await;
    // (the table is replaced whole: now only the TCP route)
    let addr = serve(
        &p,
        route(
            "app/tcp/25",
            Mode::Tcp,
            &[("dead2", closed_port()), ("tcp", banner)],
        ),
    )
    .await;
    for _ in 0..3 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0_u8; 10];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello tcp\n");
    }
}

/// How many times the proxy failed to reach backend `id`.
async fn failures(p: &Fixture, id: &str) -> u64 {
    let status = p.client.status().await.unwrap();
    status
        .routes
        .iter()
        .flat_map(|r| &r.backends)
        .find(|b| b.id == id)
        .unwrap()
        .failures
}

/// A replica that is going away: it reads each request and closes the connection unanswered.
async fn hanging_up_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0_u8; 1024];
                let _ = stream.read(&mut buf).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_idempotent_request_a_replica_drops_goes_to_another_and_a_post_does_not() {
    let p = proxy().await;
    let good = http_backend("good").await;
    let gone = hanging_up_backend().await;
    let addr = serve(
        &p,
        route("app/web/80", Mode::Http, &[("gone", gone), ("good", good)]),
    )
    .await;
    let mut send = connect(addr).await;
    for _ in 0..4 {
        assert_eq!(
            get(&mut send, "/").await,
            (StatusCode::OK, "good".to_owned())
        );
    }
    assert!(
        failures(&p, "gone").await >= 1,
        "the dropping replica was tried"
    );

    // a POST may have been acted on: it is not sent again, the client hears it failed
    let addr = serve(&p, route("app/api/80", Mode::Http, &[("gone", gone)])).await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = send
        .send_request(
            Request::post("/")
                .header("host", "app.test")
                .body(Full::new(Bytes::from_static(b"x")))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn a_server_speaks_first_protocol_works_in_auto_mode() {
    let p = proxy().await;
    let banner = banner_backend("smtp").await;
    let addr = serve(&p, route("app/mail/25", Mode::Auto, &[("m", banner)])).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    // the client waits for the server: the proxy stops sniffing and connects
    let mut buf = [0_u8; 11];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"hello smtp\n");
    s.write_all(b"EHLO x\r\n").await.unwrap();
    let mut echo = [0_u8; 8];
    s.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"EHLO x\r\n");
}

#[tokio::test]
async fn an_upgraded_connection_is_tunnelled() {
    let p = proxy().await;
    let a = http_backend("a").await;
    let addr = serve(&p, route("app/ws/80", Mode::Auto, &[("a", a)])).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0_u8; 1];
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    s.write_all(b"ping").await.unwrap();
    let mut buf = [0_u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
}

#[tokio::test]
async fn requests_wait_for_a_replica_to_join() {
    let p = proxy().await;
    let r = route("app/web/80", Mode::Http, &[]);
    let addr = serve(&p, r.clone()).await;
    let waiting = tokio::spawn(async move {
        let mut send = connect(addr).await;
        get(&mut send, "/").await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = http_backend("late").await;
    let with_a = Route {
        backends: vec![Backend {
            id: "late".into(),
            addr: a,
        }],
        ..r
    };
    p.client.apply(vec![with_a]).await.unwrap();
    assert_eq!(waiting.await.unwrap(), (StatusCode::OK, "late".to_owned()));
}

#[tokio::test]
async fn the_forwarded_headers_name_the_client() {
    let p = proxy().await;
    let a = http_backend("a").await;
    let addr = serve(&p, route("app/web/80", Mode::Http, &[("a", a)])).await;
    let resp = reqwest_like_get(addr).await;
    assert!(resp.contains("x-seen-forwarded-for: 127.0.0.1"), "{resp}");
}

/// A raw HTTP/1.0 exchange (the response head and body as text).
async fn reqwest_like_get(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).to_lowercase()
}

#[tokio::test]
async fn a_taken_port_is_reported_and_the_other_routes_are_served() {
    let p = proxy().await;
    let a = http_backend("a").await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let blocked = Route {
        bind: taken_addr,
        ..route("app/blocked/80", Mode::Http, &[("a", a)])
    };
    let fine = route("app/fine/80", Mode::Http, &[("a", a)]);
    let (status, errors) = p.client.apply(vec![blocked, fine]).await.unwrap();
    assert!(
        errors["app/blocked/80"].contains(&format!("cannot listen on {taken_addr}")),
        "{errors:?}"
    );
    assert_eq!(status.routes.len(), 1);
    assert_eq!(status.routes[0].key, "app/fine/80");
    let mut send = connect(status.routes[0].local).await;
    assert_eq!(get(&mut send, "/").await.1, "a");
    // two routes on one address are refused whole
    let twice = Route {
        bind: "127.0.0.1:1".parse().unwrap(),
        ..route("x/1", Mode::Tcp, &[])
    };
    let err = p
        .client
        .apply(vec![
            twice.clone(),
            Route {
                key: "x/2".into(),
                ..twice
            },
        ])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("both ask for 127.0.0.1:1"),
        "{err}"
    );
    assert_eq!(p.client.status().await.unwrap().routes.len(), 1);
}

#[tokio::test]
async fn a_route_keeps_its_socket_across_updates_and_closes_when_removed() {
    let p = proxy().await;
    let a = http_backend("a").await;
    let b = http_backend("b").await;
    let port = closed_port();
    let r = Route {
        bind: port,
        ..route("app/web/80", Mode::Http, &[("a", a)])
    };
    serve(&p, r.clone()).await;
    let mut send = connect(port).await;
    assert_eq!(get(&mut send, "/").await.1, "a");
    // renamed and re-pointed on the same address: the open connection carries on
    let renamed = Route {
        key: "app/site/80".into(),
        backends: vec![Backend {
            id: "b".into(),
            addr: b,
        }],
        ..r
    };
    serve(&p, renamed).await;
    assert_eq!(get(&mut send, "/").await.1, "b");
    p.client.apply(Vec::new()).await.unwrap();
    assert!(TcpStream::connect(port).await.is_err());
}

#[tokio::test]
async fn one_proxy_per_data_dir_and_stop_ends_it() {
    let p = proxy().await;
    let err = capstan_proxy::run(p.dir.path()).await.unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("(pid {})", std::process::id())),
        "{err}"
    );
    p.client.stop().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), p.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(
        p.client.status().await,
        Err(capstan_proxy::Error::NotRunning)
    ));
}

/// An HTTP/1 server answering `NAME PATH PROTO HOST` (what reached it, and how).
async fn echo_backend(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<Incoming>| async move {
                        let header = |h: &str| {
                            req.headers()
                                .get(h)
                                .map(|v| v.to_str().unwrap().to_owned())
                                .unwrap_or_default()
                        };
                        let text = format!(
                            "{name} {} {} {}",
                            req.uri(),
                            header("x-forwarded-proto"),
                            header("host")
                        );
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn site(key: &str, host: &str, path: &str, backends: &[(&str, SocketAddr)]) -> capstan_proxy::Site {
    capstan_proxy::Site {
        key: key.into(),
        host: host.into(),
        path: path.into(),
        strip_prefix: false,
        redirect: false,
        backends: backends
            .iter()
            .map(|(id, addr)| Backend {
                id: (*id).into(),
                addr: *addr,
            })
            .collect(),
    }
}

#[tokio::test]
async fn host_names_share_the_http_and_https_ports_with_http2_redirects_and_challenges() {
    let p = proxy().await;
    let (web, api) = (echo_backend("web").await, echo_backend("api").await);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["shop.test".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let mut api_site = site(
        "shop/api/8080/shop.test/api",
        "shop.test",
        "/api",
        &[("a1", api)],
    );
    api_site.strip_prefix = true;
    let mut web_site = site("shop/web/80/shop.test/", "shop.test", "/", &[("w1", web)]);
    web_site.redirect = true;
    let plain = site("blog/web/80/blog.test/", "blog.test", "/", &[("b1", web)]);
    let edge = capstan_proxy::Edge {
        http: Some("127.0.0.1:0".parse().unwrap()),
        https: Some("127.0.0.1:0".parse().unwrap()),
        certificates: vec![capstan_proxy::Certificate {
            names: vec!["shop.test".into()],
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }],
    };
    let (status, errors) = p
        .client
        .apply_all(Vec::new(), vec![web_site, api_site, plain], edge.clone())
        .await
        .unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    let (http, https) = (status.http.unwrap(), status.https.unwrap());
    assert_eq!(status.certified, ["shop.test"]);
    assert_eq!(status.sites.len(), 3, "{status:?}");

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .resolve("shop.test", https)
        .resolve("blog.test", http)
        .resolve("nowhere.test", http)
        .tls_certs_only([reqwest::Certificate::from_pem(cert.pem().as_bytes()).unwrap()])
        .build()
        .unwrap();
    // HTTPS by name, HTTP/2 offered and taken; the longest prefix wins, and is cut off
    let resp = client
        .get(format!("https://shop.test:{}/api/items?x=1", https.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let body = resp.text().await.unwrap();
    assert_eq!(
        body,
        format!("api /items?x=1 https shop.test:{}", https.port())
    );
    let body = client
        .get(format!("https://shop.test:{}/apix", https.port()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.starts_with("web /apix https"), "{body}");
    // plain HTTP: a name with a certificate redirects (keeping path and query), one without
    // is served
    let plain_get = |host: &'static str, path: &'static str| {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        async move {
            client
                .get(format!("http://{http}{path}"))
                .header("host", host)
                .send()
                .await
                .unwrap()
        }
    };
    let resp = plain_get("shop.test", "/cart?id=2").await;
    assert_eq!(resp.status(), 308);
    assert_eq!(
        resp.headers()["location"],
        format!("https://shop.test:{}/cart?id=2", https.port()).as_str()
    );
    let resp = plain_get("blog.test:80", "/post").await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.text()
            .await
            .unwrap()
            .starts_with("web /post http blog.test")
    );
    // a name nothing serves: 404, naming nothing that is served
    let resp = plain_get("nowhere.test", "/").await;
    assert_eq!(resp.status(), 404);
    let body = resp.text().await.unwrap();
    assert!(!body.contains("shop") && !body.contains("blog"), "{body}");
    // a TLS client asking for a name without a certificate gets no handshake
    let err = client
        .get(format!("https://nowhere.test:{}/", https.port()))
        .send()
        .await;
    assert!(err.is_err());
    // HTTP-01: the proxy answers what the daemon says, on the HTTP port of any name
    p.client
        .challenges(capstan_proxy::Challenges {
            http01: [("tok123".to_owned(), "tok123.thumb".to_owned())].into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let resp = plain_get("new.test", "/.well-known/acme-challenge/tok123").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "tok123.thumb");
    let resp = plain_get("new.test", "/.well-known/acme-challenge/other").await;
    assert_eq!(resp.status(), 404);
    // a certificate that cannot be read is reported by name, the rest still served
    let mut broken = edge;
    broken.certificates.push(capstan_proxy::Certificate {
        names: vec!["bad.test".into()],
        chain_pem: "not pem".into(),
        key_pem: String::new(),
    });
    let (_, errors) = p
        .client
        .apply_all(
            Vec::new(),
            vec![site(
                "shop/web/80/shop.test/",
                "shop.test",
                "/",
                &[("w1", web)],
            )],
            broken,
        )
        .await
        .unwrap();
    assert!(errors.contains_key("certificate:bad.test"), "{errors:?}");
    let resp = client
        .get(format!("https://shop.test:{}/", https.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    drop(p);
}
