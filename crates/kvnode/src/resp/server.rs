//! Accept loop and per-connection task.

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::codec::{Decoder, Framed};

use super::codec::{CodecError, Limits, Reply, RespCodec};
use super::command::{self, Command};
use crate::dispatch::Dispatcher;

/// Serves RESP on `listener` until `shutdown` turns true; each connection gets its own task.
pub async fn serve(
    listener: TcpListener,
    dispatcher: Arc<Dispatcher>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let for_connections = shutdown.clone();
    loop {
        tokio::select! {
            _ = crate::node::stopped(&mut shutdown) => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let d = dispatcher.clone();
                    let sd = for_connections.clone();
                    tokio::spawn(connection(stream, d, limits, sd));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "resp accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Most requests taken from one read of the socket and executed as one pipeline.
const MAX_PIPELINE: usize = 256;

async fn connection(
    stream: TcpStream,
    dispatcher: Arc<Dispatcher>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut framed = Framed::new(stream, RespCodec::new(limits));
    // The codec is stateless: a second instance drains requests already buffered in `framed`.
    let mut drain = RespCodec::new(limits);
    // One client session per connection: its writes apply at most once, even when retried.
    let session = dispatcher.new_session();
    loop {
        let next = tokio::select! {
            _ = crate::node::stopped(&mut shutdown) => return,
            n = framed.next() => n,
        };
        let first = match next {
            None | Some(Err(CodecError::Io(_))) => return,
            Some(Ok(args)) => Ok(args),
            Some(Err(CodecError::Protocol(msg))) => Err(msg),
        };
        // Everything the client already pipelined, up to the first malformed request.
        let mut requests = Vec::new();
        let mut protocol_error = None;
        match first {
            Ok(args) => requests.push(args),
            Err(msg) => protocol_error = Some(msg),
        }
        while protocol_error.is_none() && requests.len() < MAX_PIPELINE {
            match drain.decode(framed.read_buffer_mut()) {
                Ok(Some(args)) => requests.push(args),
                Ok(None) => break,
                Err(CodecError::Protocol(msg)) => protocol_error = Some(msg),
                Err(CodecError::Io(_)) => return,
            }
        }
        let mut cmds: Vec<Result<Command, String>> =
            requests.into_iter().map(command::parse).collect();
        // QUIT answers +OK and ends the connection; later requests are not executed.
        let quit_at = cmds.iter().position(|c| matches!(c, Ok(Command::Quit)));
        if let Some(q) = quit_at {
            cmds.truncate(q);
        }
        let replies = dispatcher
            .in_session(session.clone(), dispatcher.run_pipeline(cmds))
            .await;
        for reply in replies {
            if framed.feed(reply).await.is_err() {
                return;
            }
        }
        let closing = quit_at.is_some() || protocol_error.is_some();
        if quit_at.is_some() {
            let _ = framed.feed(Reply::Simple("OK")).await;
        } else if let Some(msg) = protocol_error {
            let _ = framed
                .feed(Reply::err(format!("Protocol error: {msg}")))
                .await;
        }
        if (closing || framed.read_buffer().is_empty()) && framed.flush().await.is_err() {
            return;
        }
        if closing {
            return;
        }
    }
}
