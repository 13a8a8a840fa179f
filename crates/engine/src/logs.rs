//! A container's output through the engine's logs API: the way to read logs of any log
//! driver that supports reading (`local`, `journald`, ...) and of remote engines, where the
//! json-file is on another machine.

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use crate::{Engine, Error};

/// One frame of output, as the engine sent it (a whole line, or a piece of a long one).
#[derive(Debug, Clone)]
pub struct LogChunk {
    /// `stdout` or `stderr` (`stdout` for a container with a TTY, whose streams are merged).
    pub stream: &'static str,
    /// The engine's timestamp (RFC 3339 with ns), a space, then the output.
    pub bytes: Bytes,
}

impl Engine {
    /// Follows stdout and stderr of container `id` with timestamps, from `since_secs` (unix
    /// seconds; the engine's `since` has no finer grain) for as long as the container runs.
    /// The stream ends when the container stops or the engine goes away.
    pub fn follow_logs(
        &self,
        id: &str,
        since_secs: i64,
    ) -> BoxStream<'static, Result<LogChunk, Error>> {
        match self.client() {
            Ok(docker) => self.chunks(docker.logs(id, Some(follow_options(since_secs)))),
            Err(err) => futures_util::stream::once(async { Err(err) }).boxed(),
        }
    }

    /// Follows the output of Swarm task `id` through a manager (which gets it from the task's
    /// node), as [`Engine::follow_logs`] does a container's; the stream ends when the task does.
    pub fn follow_task_logs(
        &self,
        id: &str,
        since_secs: i64,
    ) -> BoxStream<'static, Result<LogChunk, Error>> {
        match self.client() {
            Ok(docker) => self.chunks(docker.task_logs(id, Some(follow_options(since_secs)))),
            Err(err) => futures_util::stream::once(async { Err(err) }).boxed(),
        }
    }

    fn chunks(
        &self,
        stream: impl futures_util::Stream<
            Item = Result<bollard::container::LogOutput, bollard::errors::Error>,
        > + Send
        + 'static,
    ) -> BoxStream<'static, Result<LogChunk, Error>> {
        let host = self.host.clone();
        stream
            .filter_map(move |item| {
                let out = match item {
                    Ok(bollard::container::LogOutput::StdErr { message }) => Some(Ok(LogChunk {
                        stream: "stderr",
                        bytes: message,
                    })),
                    Ok(
                        bollard::container::LogOutput::StdOut { message }
                        | bollard::container::LogOutput::Console { message },
                    ) => Some(Ok(LogChunk {
                        stream: "stdout",
                        bytes: message,
                    })),
                    Ok(bollard::container::LogOutput::StdIn { .. }) => None,
                    Err(e) => Some(Err(Error::from_bollard(&host, e))),
                };
                std::future::ready(out)
            })
            .boxed()
    }
}

/// Both streams, stamped, followed from `since_secs`.
fn follow_options(since_secs: i64) -> bollard::query_parameters::LogsOptions {
    bollard::query_parameters::LogsOptions {
        follow: true,
        stdout: true,
        stderr: true,
        timestamps: true,
        since: since_secs.clamp(0, i64::from(i32::MAX)) as i32,
        tail: "all".into(),
        ..Default::default()
    }
}
