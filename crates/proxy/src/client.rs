//! The daemon's side: talks to the proxy of a data dir, starting it when none answers.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tracing::info;

use crate::Error;
use crate::protocol::{Challenges, Edge, Request, Response, Route, Site, Status};
use crate::server::Paths;

/// How long a newly started proxy may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request other than `wait_idle` may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How to start a proxy when none answers: the program and its arguments (the daemon passes
/// its own executable and `proxy --data DIR`).
#[derive(Debug, Clone)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

/// A handle on the proxy of one data dir.
#[derive(Debug, Clone)]
pub struct ProxyClient {
    paths: Paths,
    launch: Option<Launch>,
}

impl ProxyClient {
    /// A client for the proxy of `data`; with `launch`, a proxy is started when none answers.
    pub fn new(data: &std::path::Path, launch: Option<Launch>) -> Self {
        Self {
            paths: Paths::in_dir(data),
            launch,
        }
    }

    /// Replaces the proxy's table; returns what it serves now and, by route key, the routes it
    /// could not listen for (an address in use).
    ///
    /// # Errors
    /// [`Error::Refused`] for a table the proxy rejects whole, or a transport error.
    pub async fn apply(
        &self,
        routes: Vec<Route>,
    ) -> Result<(Status, BTreeMap<String, String>), Error> {
        self.apply_all(routes, Vec::new(), Edge::default()).await
    }

    /// [`Self::apply`] with host names on the shared ports, which `edge` says where to bind
    /// and which certificates to serve.
    ///
    /// # Errors
    /// As [`Self::apply`].
    pub async fn apply_all(
        &self,
        routes: Vec<Route>,
        sites: Vec<Site>,
        edge: Edge,
    ) -> Result<(Status, BTreeMap<String, String>), Error> {
        let resp = self
            .call(
                &Request::Apply {
                    routes,
                    sites,
                    edge,
                },
                CALL_TIMEOUT,
            )
            .await?;
        Ok((resp.status.unwrap_or_default(), resp.errors))
    }

    /// Replaces the ACME challenges the proxy answers (starting it when none runs: a challenge
    /// can come before any app is served).
    ///
    /// # Errors
    /// A transport error.
    pub async fn challenges(&self, open: Challenges) -> Result<(), Error> {
        self.call(&Request::Challenges(open), CALL_TIMEOUT)
            .await
            .map(drop)
    }

    /// Waits until none of `ids` has a connection or request open, up to `timeout`; returns how
    /// many were still open. Never starts a proxy: with none running, nothing is open.
    ///
    /// # Errors
    /// A transport error.
    pub async fn wait_idle(&self, ids: Vec<String>, timeout: Duration) -> Result<u64, Error> {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let Ok(stream) = UnixStream::connect(&self.paths.socket).await else {
            return Ok(0);
        };
        let resp = exchange(
            stream,
            &Request::WaitIdle { ids, timeout_ms },
            timeout + CALL_TIMEOUT,
        )
        .await?;
        Ok(resp.open.unwrap_or(0))
    }

    /// What the proxy serves; never starts one.
    ///
    /// # Errors
    /// [`Error::NotRunning`] when no proxy answers.
    pub async fn status(&self) -> Result<Status, Error> {
        let stream = UnixStream::connect(&self.paths.socket)
            .await
            .map_err(|_| Error::NotRunning)?;
        let resp = exchange(stream, &Request::Status, CALL_TIMEOUT).await?;
        Ok(resp.status.unwrap_or_default())
    }

    /// Asks the proxy to stop (it lets open connections finish first).
    ///
    /// # Errors
    /// [`Error::NotRunning`] when no proxy answers.
    pub async fn stop(&self) -> Result<(), Error> {
        let stream = UnixStream::connect(&self.paths.socket)
            .await
            .map_err(|_| Error::NotRunning)?;
        exchange(stream, &Request::Stop, CALL_TIMEOUT)
            .await
            .map(drop)
    }

    async fn call(&self, req: &Request, timeout: Duration) -> Result<Response, Error> {
        let stream = match UnixStream::connect(&self.paths.socket).await {
            Ok(s) => s,
            Err(_) if self.launch.is_some() => self.start().await?,
            Err(_) => return Err(Error::NotRunning),
        };
        exchange(stream, req, timeout).await
    }

    /// Starts a proxy in its own process group (so it outlives the daemon and a Ctrl-C to the
    /// daemon's terminal), logging to `proxy.log`, and waits until it answers.
    async fn start(&self) -> Result<UnixStream, Error> {
        let Some(launch) = &self.launch else {
            return Err(Error::NotRunning);
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.paths.log)
            .map_err(|e| Error::Io {
                what: format!("cannot open {}", self.paths.log.display()),
                source: e,
            })?;
        let mut child = tokio::process::Command::new(&launch.program)
            .args(&launch.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| Error::Io {
                what: format!("cannot start the proxy ({})", launch.program.display()),
                source: e,
            })?;
        let pid = child.id();
        // reap it if it exits while this daemon lives
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(s) = UnixStream::connect(&self.paths.socket).await {
                info!(pid, "started the proxy");
                return Ok(s);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Start {
                    log: self.paths.log.display().to_string(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn exchange(stream: UnixStream, req: &Request, timeout: Duration) -> Result<Response, Error> {
    let work = async {
        let (read, mut write) = stream.into_split();
        let mut line = serde_json::to_vec(req).map_err(|e| Error::Protocol(e.to_string()))?;
        line.push(b'\n');
        write.write_all(&line).await.map_err(|e| Error::Io {
            what: "cannot write to the proxy".into(),
            source: e,
        })?;
        let mut answer = String::new();
        BufReader::new(read)
            .read_line(&mut answer)
            .await
            .map_err(|e| Error::Io {
                what: "cannot read the proxy's answer".into(),
                source: e,
            })?;
        if answer.is_empty() {
            return Err(Error::Protocol("the proxy closed the connection".into()));
        }
        serde_json::from_str::<Response>(&answer).map_err(|e| Error::Protocol(e.to_string()))
    };
    let resp = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| Error::Protocol(format!("no answer within {timeout:?}")))??;
    if resp.ok {
        Ok(resp)
    } else {
        Err(Error::Refused(resp.error.unwrap_or_default()))
    }
}
