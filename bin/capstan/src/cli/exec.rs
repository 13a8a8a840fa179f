//! `capstan exec APP SERVICE [--replica N] [-i] [-t] -- CMD…`: a command in one replica, over
//! the daemon's WebSocket (`GET /api/v1/apps/{app}/exec`). With `-t` this terminal is put in
//! raw mode and its size follows the window; with `-i` what this terminal or pipe sends is the
//! command's input. The command's exit code is capstan's.

use std::io::{IsTerminal as _, Read as _, Write as _};

use capstan_model::ExitStatus;
use clap::Args;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::Failure;
use super::client::Client;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The app.
    app: String,
    /// The service.
    service: String,
    /// The replica (from 1).
    #[arg(long, default_value_t = 1)]
    replica: u32,
    /// Keep the command's input open: what this terminal or pipe sends.
    #[arg(short, long)]
    interactive: bool,
    /// Give the command a terminal (this one, in raw mode meanwhile).
    #[arg(short, long)]
    tty: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    cmd: Vec<String>,
}

/// This terminal in raw mode until dropped.
struct Raw {
    saved: rustix::termios::Termios,
}

impl Raw {
    fn on() -> Result<Self, Failure> {
        let stdin = std::io::stdin();
        let saved = rustix::termios::tcgetattr(&stdin).map_err(|e| {
            Failure::new(
                ExitStatus::Usage,
                format!("capstan exec: -t needs a terminal on stdin ({e}); drop -t to pipe"),
            )
        })?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw).map_err(
            |e| Failure::new(ExitStatus::Failure, format!("capstan exec: raw mode: {e}")),
        )?;
        Ok(Self { saved })
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin(),
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

/// This terminal's size (columns, rows), when there is one.
fn size() -> Option<(u16, u16)> {
    let w = rustix::termios::tcgetwinsize(std::io::stdout())
        .or_else(|_| rustix::termios::tcgetwinsize(std::io::stdin()))
        .ok()?;
    (w.ws_col > 0 && w.ws_row > 0).then_some((w.ws_col, w.ws_row))
}

/// Runs the command; its exit code.
///
/// # Errors
/// What kept it from running (no such replica, a viewer's token, no terminal for `-t`).
pub async fn run(args: ExecArgs) -> Result<i32, Failure> {
    if args.tty && !std::io::stdin().is_terminal() {
        return Err(Failure::new(
            ExitStatus::Usage,
            "capstan exec: -t needs a terminal on stdin; drop -t to pipe",
        ));
    }
    let client = Client::from_env()?;
    let mut query = vec![
        ("service", args.service.clone()),
        ("replica", args.replica.to_string()),
    ];
    query.extend(args.cmd.iter().map(|c| ("cmd", c.clone())));
    if args.tty {
        query.push(("tty", "true".to_owned()));
        if let Some((cols, rows)) = size() {
            query.push(("cols", cols.to_string()));
            query.push(("rows", rows.to_string()));
        }
    }
    let upgraded = client
        .websocket(
            &format!("/api/v1/apps/{}/exec", args.app),
            &query,
            "capstan.exec",
        )
        .await?;
    let socket =
        tokio_tungstenite::WebSocketStream::from_raw_socket(upgraded, Role::Client, None).await;
    let (mut sink, mut stream) = socket.split();
    let raw = if args.tty { Some(Raw::on()?) } else { None };

    // one writer: input, resizes and the end of input all go through it
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
    });
    let eof = || Message::Text(r#"{"eof":true}"#.into());
    if args.interactive {
        // a thread of its own: a read of a terminal cannot be cancelled, and the process
        // exits once the command has, whatever this thread waits on
        let input = tx.clone();
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0_u8; 8192];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = input.blocking_send(eof());
                        return;
                    }
                    Ok(n) => {
                        if input
                            .blocking_send(Message::Binary(buf[..n].to_vec().into()))
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
    } else {
        let _ = tx.send(eof()).await;
    }
    if args.tty {
        let resizes = tx.clone();
        tokio::spawn(async move {
            let Ok(mut changes) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
            else {
                return;
            };
            while changes.recv().await.is_some() {
                if let Some((cols, rows)) = size() {
                    let said = format!(r#"{{"resize":[{cols},{rows}]}}"#);
                    if resizes.send(Message::Text(said.into())).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
    drop(tx);

    let mut code = None;
    let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
    while let Some(message) = stream.next().await {
        let Ok(message) = message else { break };
        match message {
            Message::Binary(bytes) if args.tty => {
                let _ = stdout.write_all(&bytes);
                let _ = stdout.flush();
            }
            Message::Binary(bytes) => {
                if let Some((stream, data)) = bytes.split_first() {
                    let out: &mut dyn std::io::Write = if *stream == 2 {
                        &mut stderr
                    } else {
                        &mut stdout
                    };
                    let _ = out.write_all(data);
                    let _ = out.flush();
                }
            }
            Message::Text(text) => {
                code = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v["exit"].as_i64());
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    writer.abort();
    drop(raw);
    code.map(|c| i32::try_from(c).unwrap_or(1)).ok_or_else(|| {
        Failure::new(
            ExitStatus::Failure,
            "capstan exec: the command's exit code is unknown (the connection ended first)",
        )
    })
}
