//! The client against a real registry (Debian's `docker-registry`, the CNCF distribution
//! registry) of each test's own, whose access log is the count of what capstan asked for.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::PermissionsExt as _;

use capstan_model::CredentialOrigin;
use capstan_registry::{
    Client, CredentialSource, Credentials, Error, Options, Platform, Reference,
};
use capstan_testkit::{OCI_INDEX, OCI_MANIFEST, Registry, RegistryOptions};

fn reference(registry: &Registry, name: &str) -> Reference {
    Reference::parse(&format!("{}/{name}", registry.host())).unwrap()
}

#[tokio::test]
async fn heads_tag_pages_and_platform_children_from_a_real_registry() {
    let registry = Registry::start(RegistryOptions::default()).await;
    let tags = [
        "v1.0.0",
        "v1.0.1",
        "v1.1.0",
        "v2.0.0",
        "1.0.1-alpine",
        "latest",
    ];
    let mut pushed = HashMap::new();
    for tag in tags {
        pushed.insert(tag, registry.push("shop/api", tag, tag).await);
    }
    let client = Client::new(Options {
        page_size: Some(2),
        ..Options::default()
    })
    .unwrap();

    let head = client
        .head(&reference(&registry, "shop/api:v1.0.1"))
        .await
        .unwrap();
    assert_eq!(head.digest, pushed["v1.0.1"]);
    assert_eq!(head.media_type, OCI_MANIFEST);
    assert!(!head.is_index());
    assert_eq!(head.rate_limit, None, "only Docker Hub sends a budget");

    // every tag (this registry, distribution 2.8, sends them in one page whatever `n` asks;
    // pages are tested below against the spec's own pagination)
    let listed: BTreeSet<String> = client
        .tags(&reference(&registry, "shop/api"))
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(listed, tags.iter().map(|t| (*t).to_owned()).collect());

    // a multi-arch index: the host's child decides
    let host = Platform::host();
    let (index, children) = registry
        .push_index(
            "shop/multi",
            "1",
            &[("amd64", "a1"), ("arm64", "b1")],
            "att1",
        )
        .await;
    let multi = reference(&registry, "shop/multi:1");
    let head = client.head(&multi).await.unwrap();
    assert_eq!(
        (head.digest.as_str(), head.media_type.as_str()),
        (index.as_str(), OCI_INDEX)
    );
    assert!(head.is_index());
    let manifest = client.manifest(&multi, &head.digest).await.unwrap();
    assert_eq!(manifest.children.len(), 3);
    let child = |m: &capstan_registry::Manifest| m.child_for(&host).map(|c| c.digest.clone());
    if host.architecture == "amd64" {
        assert_eq!(child(&manifest), Some(children[0].clone()));
    }
    // another platform and the attestation change: a new index, the same child for amd64
    let (index2, children2) = registry
        .push_index(
            "shop/multi",
            "1",
            &[("amd64", "a1"), ("arm64", "b2")],
            "att2",
        )
        .await;
    assert_ne!(index2, index);
    assert_eq!(children2[0], children[0]);
    assert_ne!(children2[1], children[1]);
    let head2 = client.head(&multi).await.unwrap();
    assert_eq!(head2.digest, index2);
    let manifest2 = client.manifest(&multi, &head2.digest).await.unwrap();
    assert_eq!(child(&manifest2), child(&manifest));

    // a missing tag is NotFound, and says which
    let e = client
        .head(&reference(&registry, "shop/api:nope"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("shop/api:nope"), "{e}");

    // what the registry saw is exactly what the client counted, and never a blob
    let seen = registry.asked();
    let counts = client.counts();
    let n = |what: &str| seen.iter().filter(|s| *s == what).count() as u64;
    assert_eq!(n("HEAD manifests"), counts.manifest_heads, "{seen:?}");
    assert_eq!(n("GET manifests"), counts.manifest_gets, "{seen:?}");
    assert_eq!(n("GET tags"), counts.tag_pages, "{seen:?}");
    assert_eq!((counts.manifest_heads, counts.manifest_gets), (4, 2));
    assert_eq!(
        seen.len() as u64,
        counts.manifest_heads + counts.manifest_gets + counts.tag_pages
    );
}

#[tokio::test]
async fn basic_auth_takes_credentials_from_config_docker_config_or_a_helper() {
    let registry = Registry::start(RegistryOptions {
        user: Some(("capstan".into(), "s3cret".into())),
        ..RegistryOptions::default()
    })
    .await;
    let digest = registry.push("app", "1", "one").await;
    let app = reference(&registry, "app:1");
    let client = |credentials: CredentialSource| {
        Client::new(Options {
            credentials: std::sync::Arc::new(credentials),
            ..Options::default()
        })
        .unwrap()
    };

    // none: refused, and the error says how to give some
    let e = client(CredentialSource::default())
        .head(&app)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Unauthorized {
                had_credentials: false,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("docker login"), "{e}");

    // from capstan's config: the 401 is answered once, then the credentials go along
    let configured = client(CredentialSource {
        configured: HashMap::from([(registry.host(), Credentials::new("capstan", "s3cret"))]),
        ..CredentialSource::default()
    });
    assert_eq!(configured.head(&app).await.unwrap().digest, digest);
    assert_eq!(configured.head(&app).await.unwrap().digest, digest);
    let counts = configured.counts();
    assert_eq!((counts.manifest_heads, counts.auth_retries), (3, 1));

    // a wrong password: refused, saying the credentials were tried
    let wrong = client(CredentialSource {
        configured: HashMap::from([(registry.host(), Credentials::new("capstan", "nope"))]),
        ..CredentialSource::default()
    });
    let e = wrong.head(&app).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Unauthorized {
                had_credentials: true,
                ..
            }
        ),
        "{e}"
    );

    // from Docker's config: `auths` (base64 of user:password)
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        serde_json::json!({"auths": {
            format!("http://{}", registry.host()): {"auth": "Y2Fwc3RhbjpzM2NyZXQ="}
        }})
        .to_string(),
    )
    .unwrap();
    let from_file = client(CredentialSource {
        docker_config: Some(config.clone()),
        ..CredentialSource::default()
    });
    assert_eq!(from_file.head(&app).await.unwrap().digest, digest);

    // from a credential helper that Docker's config names for this registry
    let helper = dir.path().join("docker-credential-capstantest");
    std::fs::write(
        &helper,
        "#!/bin/sh\nread server\n[ \"$1\" = get ] || exit 1\nprintf '{\"ServerURL\":\"%s\",\"Username\":\"capstan\",\"Secret\":\"s3cret\"}' \"$server\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(
        &config,
        serde_json::json!({"credHelpers": {registry.host(): "capstantest"}}).to_string(),
    )
    .unwrap();
    let from_helper = client(CredentialSource {
        docker_config: Some(config.clone()),
        helper_dirs: Some(vec![dir.path().to_owned()]),
        ..CredentialSource::default()
    });
    assert_eq!(from_helper.head(&app).await.unwrap().digest, digest);

    // a login is checked as docker login checks it: right, wrong, and a registry that wants
    // none takes any
    let checker = client(CredentialSource::default());
    checker
        .check_login(&registry.host(), &Credentials::new("capstan", "s3cret"))
        .await
        .unwrap();
    let e = checker
        .check_login(&registry.host(), &Credentials::new("capstan", "nope"))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains(&registry.host()) && e.to_string().contains("wrong"),
        "{e}"
    );
    let open = Registry::start(RegistryOptions::default()).await;
    checker
        .check_login(&open.host(), &Credentials::new("any", "thing"))
        .await
        .unwrap();

    // every origin listed, the first one for a registry in effect, never a secret; a
    // credsStore is asked what it keeps
    let store = dir.path().join("docker-credential-capstanstore");
    std::fs::write(
        &store,
        format!(
            "#!/bin/sh
cat >/dev/null
[ \"$1\" = list ] || exit 1\nprintf '{{\"https://index.docker.io/v1/\":\"hubuser\",\"{}\":\"storeuser\"}}'\n",
            registry.host()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(
        &config,
        serde_json::json!({
            "credsStore": "capstanstore",
            "credHelpers": {"ghcr.io": "capstantest"},
            "auths": {"https://index.docker.io/v1/": {"auth": "aHViOnB3"}}
        })
        .to_string(),
    )
    .unwrap();
    let listing = CredentialSource {
        configured: HashMap::from([(registry.host(), Credentials::new("capstan", "s3cret"))]),
        docker_config: Some(config.clone()),
        helper_dirs: Some(vec![dir.path().to_owned()]),
        ..CredentialSource::default()
    }
    .list()
    .await
    .unwrap();
    let rows: Vec<(
        String,
        Option<String>,
        capstan_model::CredentialOrigin,
        bool,
    )> = listing
        .iter()
        .map(|l| {
            (
                l.registry.clone(),
                l.username.clone(),
                l.origin,
                l.in_effect,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (
                registry.host(),
                Some("capstan".into()),
                CredentialOrigin::Config,
                true
            ),
            (
                registry.host(),
                Some("storeuser".into()),
                CredentialOrigin::Helper,
                false
            ),
            (
                "docker.io".into(),
                Some("hubuser".into()),
                CredentialOrigin::Helper,
                true
            ),
            (
                "docker.io".into(),
                Some("hub".into()),
                CredentialOrigin::DockerConfig,
                false
            ),
            ("ghcr.io".into(), None, CredentialOrigin::Helper, true),
        ]
    );
    assert!(!serde_json::to_string(&listing).unwrap().contains("s3cret"));

    // a helper that is not installed is named
    std::fs::write(&config, r#"{"credsStore": "nowhere"}"#).unwrap();
    let missing = client(CredentialSource {
        docker_config: Some(config),
        helper_dirs: Some(vec![dir.path().to_owned()]),
        ..CredentialSource::default()
    });
    let e = missing.head(&app).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("docker-credential-nowhere is not installed"),
        "{e}"
    );
}

/// Tag listings follow `Link: <...>; rel="next"` to the end. Distribution 2.8 (the registry
/// Debian ships) answers every listing in one page, so this server pages strictly as the OCI
/// distribution spec says registries like Docker Hub, GHCR and Harbor do: `n` per page, the
/// next page from `last`, a `Link` to it while more remain.
#[tokio::test]
async fn tag_listings_follow_link_pages_to_the_end() {
    use axum::extract::Query;
    let all: Vec<String> = (0..7).map(|i| format!("1.{i}.0")).collect();
    let tags = all.clone();
    let router = axum::Router::new().route(
        "/v2/app/tags/list",
        axum::routing::get(move |Query(q): Query<HashMap<String, String>>| {
            let tags = tags.clone();
            async move {
                let n: usize = q["n"].parse().unwrap();
                let from = q
                    .get("last")
                    .map_or(0, |l| tags.iter().position(|t| t == l).unwrap() + 1);
                let page: Vec<&String> = tags.iter().skip(from).take(n).collect();
                let mut headers = axum::http::HeaderMap::new();
                if from + n < tags.len() {
                    let last = page.last().unwrap();
                    headers.insert(
                        "link",
                        format!("</v2/app/tags/list?n={n}&last={last}>; rel=\"next\"")
                            .parse()
                            .unwrap(),
                    );
                }
                (
                    headers,
                    axum::Json(serde_json::json!({"name": "app", "tags": page})),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let client = Client::new(Options {
        page_size: Some(3),
        ..Options::default()
    })
    .unwrap();
    let app = Reference::parse(&format!("{addr}/app")).unwrap();
    assert_eq!(client.tags(&app).await.unwrap(), all);
    assert_eq!(client.counts().tag_pages, 3);
}

/// Docker Hub's side, which cannot be reached from here, as its documented wire format says:
/// a `401` with a Bearer challenge, a token service that wants Basic credentials and answers
/// `{token, expires_in}`, `ratelimit-*` headers on a HEAD, and `429` with `Retry-After`.
#[tokio::test]
async fn bearer_tokens_rate_limit_headers_and_429_as_docker_hub_sends_them() {
    use std::sync::{Arc, Mutex};
    #[derive(Default)]
    struct Seen {
        token_requests: Vec<(String, String)>,
        heads: u32,
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (s1, s2) = (Arc::clone(&seen), Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let realm = format!("http://{addr}/token");
    let router = axum::Router::new()
        .route(
            "/token",
            axum::routing::get(
                move |headers: axum::http::HeaderMap,
                      axum::extract::RawQuery(q): axum::extract::RawQuery| {
                    let s = Arc::clone(&s1);
                    async move {
                        let auth = headers
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_owned())
                            .unwrap_or_default();
                        s.lock().unwrap().token_requests.push((q.unwrap_or_default(), auth));
                        axum::Json(serde_json::json!({"token": "t0k", "expires_in": 300}))
                    }
                },
            ),
        )
        .route(
            "/v2/library/app/manifests/{tag}",
            axum::routing::head(
                move |headers: axum::http::HeaderMap,
                      axum::extract::Path(tag): axum::extract::Path<String>| {
                    let s = Arc::clone(&s2);
                    let realm = realm.clone();
                    async move {
                        s.lock().unwrap().heads += 1;
                        let mut out = axum::http::HeaderMap::new();
                        if headers.get("authorization").map(|v| v.to_str().unwrap())
                            != Some("Bearer t0k")
                        {
                            out.insert(
                                "www-authenticate",
                                format!(
                                    r#"Bearer realm="{realm}",service="registry.docker.io",scope="repository:library/app:pull""#
                                )
                                .parse()
                                .unwrap(),
                            );
                            return (axum::http::StatusCode::UNAUTHORIZED, out);
                        }
                        if tag == "busy" {
                            out.insert("retry-after", "7".parse().unwrap());
                            return (axum::http::StatusCode::TOO_MANY_REQUESTS, out);
                        }
                        out.insert("docker-content-digest", "sha256:abc".parse().unwrap());
                        out.insert("content-type", OCI_INDEX.parse().unwrap());
                        out.insert("ratelimit-limit", "100;w=21600".parse().unwrap());
                        out.insert("ratelimit-remaining", "76;w=21600".parse().unwrap());
                        (axum::http::StatusCode::OK, out)
                    }
                },
            ),
        );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let client = Client::new(Options {
        credentials: std::sync::Arc::new(CredentialSource {
            configured: HashMap::from([(addr.to_string(), Credentials::new("me", "pw"))]),
            ..CredentialSource::default()
        }),
        ..Options::default()
    })
    .unwrap();
    // a one-word name on this host is not Docker Hub's `library/`: name it in full
    let app = Reference::parse(&format!("{addr}/library/app:1")).unwrap();
    let head = client.head(&app).await.unwrap();
    assert_eq!(head.digest, "sha256:abc");
    assert!(head.is_index());
    let budget = head.rate_limit.unwrap();
    assert_eq!(
        (budget.remaining, budget.limit, budget.window_s),
        (76, Some(100), Some(21600))
    );
    // the token is kept: a second HEAD asks for none
    client.head(&app).await.unwrap();
    {
        let s = seen.lock().unwrap();
        assert_eq!(s.token_requests.len(), 1);
        let (query, auth) = &s.token_requests[0];
        assert!(query.contains("service=registry.docker.io"), "{query}");
        assert!(
            query.contains("scope=repository%3Alibrary%2Fapp%3Apull"),
            "{query}"
        );
        assert_eq!(auth, "Basic bWU6cHc=");
        assert_eq!(s.heads, 3);
    }
    let e = client.head(&app.with_tag("busy")).await.unwrap_err();
    match e {
        Error::RateLimited { retry_after, .. } => {
            assert_eq!(retry_after, Some(std::time::Duration::from_secs(7)));
        }
        other => panic!("{other}"),
    }
    assert_eq!(client.counts().tokens, 1);
}
