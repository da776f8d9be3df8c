//! A minimal RESP2 client for the workload: one request, one reply, no pipelining.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A decoded reply (only what the workload looks at).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+OK`, `:n`, `$..` and arrays collapse to `Ok`; the workload ignores payloads.
    Ok,
    /// `-ERR ...`.
    Err(String),
}

/// Why a request failed at the connection level.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Connect, read or write failed, or timed out.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent something that is not RESP2.
    #[error("bad reply: {0}")]
    Protocol(String),
    /// The server refused `AUTH`.
    #[error("auth refused: {0}")]
    Auth(String),
}

/// One connection.
pub struct Client {
    stream: BufReader<TcpStream>,
}

const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest bulk reply the workload accepts.
const MAX_BULK: i64 = 16 << 20;

impl Client {
    /// Connects to `addr`.
    ///
    /// # Errors
    /// [`ClientError::Io`].
    pub async fn connect(addr: SocketAddr) -> Result<Self, ClientError> {
        let s = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(std::io::Error::other)??;
        s.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::new(s),
        })
    }

    /// Connects to `addr` and, with a `password`, authenticates with `AUTH <password>`.
    ///
    /// # Errors
    /// [`ClientError::Io`], or [`ClientError::Auth`] when the server refuses the password.
    pub async fn connect_auth(
        addr: SocketAddr,
        password: Option<&str>,
    ) -> Result<Self, ClientError> {
        let mut c = Self::connect(addr).await?;
        if let Some(p) = password {
            match c.call(&[b"AUTH", p.as_bytes()]).await? {
                Value::Ok => {}
                Value::Err(e) => return Err(ClientError::Auth(e)),
            }
        }
        Ok(c)
    }

    /// Sends one command and reads its reply.
    ///
    /// # Errors
    /// [`ClientError`] on I/O failure, timeout or a malformed reply.
    pub async fn call(&mut self, args: &[&[u8]]) -> Result<Value, ClientError> {
        let mut buf = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            buf.extend_from_slice(a);
            buf.extend_from_slice(b"\r\n");
        }
        tokio::time::timeout(TIMEOUT, async {
            self.stream.get_mut().write_all(&buf).await?;
            self.read_value().await
        })
        .await
        .map_err(std::io::Error::other)?
    }

    async fn read_line(&mut self) -> Result<String, ClientError> {
        let mut line = String::new();
        let n = (&mut self.stream)
            .take(64 * 1024)
            .read_line(&mut line)
            .await?;
        if n == 0 || !line.ends_with("\r\n") {
            return Err(ClientError::Protocol(
                "connection closed or line too long".into(),
            ));
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }

    async fn read_value(&mut self) -> Result<Value, ClientError> {
        // Iterative: count how many values are still owed (arrays add their length).
        let mut owed: i64 = 1;
        let mut first_err = None;
        while owed > 0 {
            owed -= 1;
            let line = self.read_line().await?;
            let (tag, rest) = line
                .split_at_checked(1)
                .ok_or_else(|| ClientError::Protocol("empty line".into()))?;
            let num = || {
                rest.parse::<i64>()
                    .map_err(|_| ClientError::Protocol(format!("bad length {rest}")))
            };
            match tag {
                "+" | ":" => {}
                "-" => {
                    first_err.get_or_insert(rest.to_string());
                }
                "$" => {
                    let len = num()?;
                    if len > MAX_BULK {
                        return Err(ClientError::Protocol("bulk too large".into()));
                    }
                    if len >= 0 {
                        let mut skip = vec![0u8; len as usize + 2];
                        self.stream.read_exact(&mut skip).await?;
                    }
                }
                "*" => owed += num()?.max(0),
                other => return Err(ClientError::Protocol(format!("unknown type {other}"))),
            }
        }
        Ok(match first_err {
            Some(e) => Value::Err(e),
            None => Value::Ok,
        })
    }
}
