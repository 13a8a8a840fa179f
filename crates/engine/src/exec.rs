//! A command run in a container (`docker exec`). The exec is created through the API and
//! started on a connection of its own that the engine hands over (an HTTP upgrade), so that a
//! terminal's bytes pass through as they come: a prompt with no newline shows at once.
//! Without a TTY the engine multiplexes stdout and stderr on that connection, in frames
//! [`demux`] reads.

use bollard::models::ExecConfig;
use bytes::{Buf as _, Bytes, BytesMut};
use hyper_util::rt::TokioIo;

use crate::{Engine, Error};

/// A started exec: its id (to resize it and read its exit code) and the connection its input
/// goes to and its output comes from.
pub struct Exec {
    pub id: String,
    pub tty: bool,
    pub io: TokioIo<hyper::upgrade::Upgraded>,
}

impl std::fmt::Debug for Exec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exec")
            .field("id", &self.id)
            .field("tty", &self.tty)
            .finish_non_exhaustive()
    }
}

/// One output frame of an exec without a TTY: `1` stdout, `2` stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub stream: u8,
    pub data: Bytes,
}

/// The next whole frame at the start of `buf` (taken out of it), if it has one.
pub fn demux(buf: &mut BytesMut) -> Option<Frame> {
    if buf.len() < 8 {
        return None;
    }
    let length = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    if buf.len() < 8 + length {
        return None;
    }
    let stream = buf[0];
    buf.advance(8);
    Some(Frame {
        stream,
        data: buf.split_to(length).freeze(),
    })
}

impl Engine {
    /// Starts `cmd` in container `id`, with a TTY of `size` (columns, rows) when `tty`.
    ///
    /// # Errors
    /// [`Error::NotFound`] for a container that is not there, [`Error::Api`] when the engine
    /// refuses (a container that is not running), [`Error::Unreachable`].
    pub async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        tty: bool,
        size: Option<(u16, u16)>,
    ) -> Result<Exec, Error> {
        let created = self
            .client()?
            .create_exec(
                id,
                ExecConfig {
                    attach_stdin: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(tty),
                    cmd: Some(cmd.to_vec()),
                    console_size: size
                        .filter(|_| tty)
                        .map(|(cols, rows)| vec![usize::from(rows), usize::from(cols)]),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| self.classify(e))?;
        let body = serde_json::json!({ "Detach": false, "Tty": tty }).to_string();
        let request = hyper::Request::post(format!("/exec/{}/start", created.id))
            .header("host", "docker")
            .header("content-type", "application/json")
            .header("connection", "Upgrade")
            .header("upgrade", "tcp")
            .body(http_body_util::Full::new(Bytes::from(body)))
            .map_err(|e| Error::Api {
                status: 0,
                message: e.to_string(),
            })?;
        let unreachable = |reason: String| Error::Unreachable {
            host: self.host().to_owned(),
            reason,
        };
        let Some(response) = self.raw(request, true).await? else {
            return Err(unreachable(
                "running a command needs the engine on a unix socket or plain tcp (an ssh or TLS engine's host can run `capstan exec` itself)".into(),
            ));
        };
        if response.status().as_u16() != 101 {
            return Err(crate::buildkit::api_error(response).await);
        }
        let upgraded = hyper::upgrade::on(response)
            .await
            .map_err(|e| unreachable(format!("the engine did not hand the exec over: {e}")))?;
        Ok(Exec {
            id: created.id,
            tty,
            io: TokioIo::new(upgraded),
        })
    }

    /// Resizes an exec's TTY to `cols` × `rows`.
    ///
    /// # Errors
    /// [`Error::Api`], [`Error::Unreachable`].
    pub async fn exec_resize(&self, id: &str, cols: u16, rows: u16) -> Result<(), Error> {
        self.client()?
            .resize_exec(
                id,
                bollard::query_parameters::ResizeExecOptions {
                    h: i32::from(rows),
                    w: i32::from(cols),
                },
            )
            .await
            .map_err(|e| self.classify(e))
    }

    /// An exec's exit code once it ended; `None` while it runs.
    ///
    /// # Errors
    /// [`Error::Api`], [`Error::Unreachable`].
    pub async fn exec_exit_code(&self, id: &str) -> Result<Option<i64>, Error> {
        let inspected = self
            .client()?
            .inspect_exec(id)
            .await
            .map_err(|e| self.classify(e))?;
        Ok(if inspected.running == Some(true) {
            None
        } else {
            inspected.exit_code
        })
    }

    /// Runs `cmd` in container `id` without a terminal or input, to its end: its exit code
    /// and the last 4 KiB of what it wrote (both streams).
    ///
    /// # Errors
    /// [`Error::Api`], [`Error::Unreachable`].
    pub async fn exec_to_end(&self, id: &str, cmd: &[String]) -> Result<(i64, String), Error> {
        use tokio::io::AsyncReadExt as _;
        const KEPT: usize = 4096;
        let mut exec = self.exec(id, cmd, false, None).await?;
        let mut frames = BytesMut::new();
        let mut output = Vec::new();
        let mut buf = [0_u8; 8192];
        loop {
            let n = exec.io.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            frames.extend_from_slice(&buf[..n]);
            while let Some(frame) = demux(&mut frames) {
                output.extend_from_slice(&frame.data);
                if output.len() > 2 * KEPT {
                    output.drain(..output.len() - KEPT);
                }
            }
        }
        let start = output.len().saturating_sub(KEPT);
        let text = String::from_utf8_lossy(&output[start..]).into_owned();
        // the stream ends a moment before the engine records the exit
        for _ in 0..100 {
            if let Some(code) = self.exec_exit_code(&exec.id).await? {
                return Ok((code, text));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Err(Error::Api {
            status: 0,
            message: format!("the engine did not say how `{}` ended", cmd.join(" ")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_read_whole_and_in_order() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 3]);
        buf.extend_from_slice(b"abc");
        buf.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 2, b'x']);
        assert_eq!(
            demux(&mut buf),
            Some(Frame {
                stream: 1,
                data: Bytes::from_static(b"abc")
            })
        );
        // the second is not whole yet
        assert_eq!(demux(&mut buf), None);
        buf.extend_from_slice(b"y");
        assert_eq!(
            demux(&mut buf),
            Some(Frame {
                stream: 2,
                data: Bytes::from_static(b"xy")
            })
        );
        assert!(buf.is_empty());
    }
}
