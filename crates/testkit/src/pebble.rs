//! A real ACME server: Debian's `pebble` (the test server Let's Encrypt publishes) with
//! `pebble-challtestsrv` as its DNS server (every name is 127.0.0.1), both on loopback. Pebble
//! validates HTTP-01 and TLS-ALPN-01 on the ports the test gives: capstan's proxy's.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::{Child, Command};

const PEBBLE: &str = "/usr/bin/pebble";
const CHALLTESTSRV: &str = "/usr/bin/pebble-challtestsrv";

pub struct Pebble {
    dir: tempfile::TempDir,
    /// `https://127.0.0.1:PORT/dir`.
    pub directory: String,
    management: u16,
    _children: (Child, Child),
}

impl Pebble {
    /// Starts pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port` of
    /// 127.0.0.1, refusing to issue for `blocked` names; waits until it answers.
    pub async fn start(http_port: u16, tls_port: u16, blocked: &[&str]) -> Self {
        for binary in [PEBBLE, CHALLTESTSRV] {
            assert!(
                std::path::Path::new(binary).exists(),
                "{binary} is missing: run the tests with scripts/test, which installs pebble"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("capt-pebble-")
            .tempdir()
            .unwrap();
        // pebble's own listener: a certificate of the test's CA (given to capstan as ca_file)
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "capstan test ACME listener CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        let (listen, management, dns) =
            (crate::free_port(), crate::free_port(), crate::free_port());
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{listen}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": dir.path().join("cert.pem"),
                "privateKey": dir.path().join("key.pem"),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
                "domainBlocklist": blocked,
            }
        });
        std::fs::write(dir.path().join("pebble.json"), config.to_string()).unwrap();
        let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
        let challtestsrv = Command::new(CHALLTESTSRV)
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{}", crate::free_port())])
            .stdout(log("challtestsrv.log"))
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pebble = Command::new(PEBBLE)
            .arg("-config")
            .arg(dir.path().join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            // no waits before validating, and no nonce refused at random (a client retries
            // those, but the test is about capstan, not pebble's chaos)
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log("pebble.log"))
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let p = Self {
            directory: format!("https://127.0.0.1:{listen}/dir"),
            management,
            dir,
            _children: (pebble, challtestsrv),
        };
        let client = p.client();
        crate::eventually(
            std::time::Duration::from_secs(30),
            "pebble to answer",
            || async {
                client
                    .get(&p.directory)
                    .send()
                    .await
                    .ok()?
                    .status()
                    .is_success()
                    .then_some(())
            },
        )
        .await;
        p
    }

    /// The CA that pebble's own HTTPS listener is signed by (what capstan's `[acme] ca_file`
    /// names).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn client(&self) -> reqwest::Client {
        let ca = std::fs::read(self.ca_file()).unwrap();
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
            .build()
            .unwrap()
    }

    /// The root this pebble run issues under (PEM): what a client of the apps trusts.
    pub async fn root(&self) -> String {
        self.client()
            .get(format!("https://127.0.0.1:{}/roots/0", self.management))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// What pebble logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }
}
