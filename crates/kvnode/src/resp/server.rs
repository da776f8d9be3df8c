//! Accept loop and per-connection task.

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::codec::Framed;

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

async fn connection(
    stream: TcpStream,
    dispatcher: Arc<Dispatcher>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut framed = Framed::new(stream, RespCodec::new(limits));
    loop {
        let next = tokio::select! {
            _ = crate::node::stopped(&mut shutdown) => return,
            n = framed.next() => n,
        };
        let args = match next {
            None => return,
            Some(Ok(args)) => args,
            Some(Err(CodecError::Protocol(msg))) => {
                let _ = framed
                    .send(Reply::err(format!("Protocol error: {msg}")))
                    .await;
                return;
            }
            Some(Err(CodecError::Io(_))) => return,
        };
        let (reply, quit) = match command::parse(args) {
            Err(text) => (Reply::Error(text), false),
            Ok(Command::Quit) => (Reply::Simple("OK"), true),
            Ok(cmd) => (dispatcher.run(cmd).await, false),
        };
        if framed.feed(reply).await.is_err() {
            return;
        }
        if (quit || framed.read_buffer().is_empty()) && framed.flush().await.is_err() {
            return;
        }
        if quit {
            return;
        }
    }
}
