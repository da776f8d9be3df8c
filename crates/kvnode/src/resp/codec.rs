//! RESP2 request decoder and reply encoder with hard limits.
//!
//! Requests are arrays of bulk strings (what every client sends) or inline commands (what a
//! human types into `telnet`). The decoder enforces [`Limits`]: a bulk longer than
//! `max_bulk_bytes`, an array longer than `max_args`, an inline line or length header longer
//! than Redis allows, or more than `max_request_bytes` buffered without a complete request is
//! a protocol error, which closes that connection only. Nothing is allocated from a
//! client-declared length before the bytes have arrived.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Longest inline command line (Redis `PROTO_INLINE_MAX_SIZE`).
pub const MAX_INLINE_BYTES: usize = 64 * 1024;
/// Longest `*n` / `$n` header line, CRLF excluded (an `i64` has at most 20 characters).
const MAX_HEADER_BYTES: usize = 20;
/// Most array elements a client that still has to authenticate may send (as Redis).
pub const UNAUTHENTICATED_MAX_ARGS: i64 = 10;
/// Longest bulk string a client that still has to authenticate may send (as Redis).
pub const UNAUTHENTICATED_MAX_BULK: i64 = 16 * 1024;

/// Protocol limits of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string (default 64 MiB; values are limited further, with an `-ERR`
    /// reply that keeps the connection, by [`crate::limits::MAX_VALUE_BYTES`]).
    pub max_bulk_bytes: usize,
    /// Most arguments in one request (default 65 536).
    pub max_args: usize,
    /// Most bytes buffered for one incomplete request (default 64 MiB, the
    /// `client_query_buffer_limit`).
    pub max_request_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bulk_bytes: 64 << 20,
            max_args: 65_536,
            max_request_bytes: 64 << 20,
        }
    }
}

impl Limits {
    /// Limits for a per-client query buffer of `query_buffer` bytes: no bulk or incomplete
    /// request may exceed it.
    #[must_use]
    pub fn for_query_buffer(query_buffer: usize) -> Self {
        Self {
            max_bulk_bytes: query_buffer,
            max_request_bytes: query_buffer,
            ..Self::default()
        }
    }
}

/// A malformed request or an I/O failure; either ends the connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The bytes are not valid RESP or exceed a limit. The text is sent to the client as
    /// `-ERR Protocol error: ...` before closing.
    #[error("Protocol error: {0}")]
    Protocol(String),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn protocol<T>(msg: &str) -> Result<T, CodecError> {
    Err(CodecError::Protocol(msg.to_owned()))
}

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+text`.
    Simple(&'static str),
    /// `-text` (the text includes its code, e.g. `ERR ...`).
    Error(String),
    /// `:n`.
    Int(i64),
    /// `$len\r\nbytes` or the null bulk `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*n` followed by the elements.
    Array(Vec<Reply>),
}

impl Reply {
    /// `-ERR text`.
    pub fn err(text: impl std::fmt::Display) -> Self {
        Reply::Error(format!("ERR {text}"))
    }

    /// A bulk string.
    pub fn bulk(b: impl Into<Vec<u8>>) -> Self {
        Reply::Bulk(Some(b.into()))
    }
}

/// The connection codec: decodes requests (arguments), encodes [`Reply`]s.
///
/// It keeps no state between calls except whether the client still has to authenticate
/// ([`RespCodec::set_restricted`]), so a request split over any number of reads decodes the
/// same as one read.
#[derive(Debug, Clone, Default)]
pub struct RespCodec {
    limits: Limits,
    restricted: bool,
}

impl RespCodec {
    /// A codec enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            restricted: false,
        }
    }

    /// While `restricted` (the connection must still `AUTH`), arrays longer than
    /// [`UNAUTHENTICATED_MAX_ARGS`] and bulks longer than [`UNAUTHENTICATED_MAX_BULK`] are
    /// protocol errors, as in Redis, so an anonymous client cannot make the node buffer much.
    pub fn set_restricted(&mut self, restricted: bool) {
        self.restricted = restricted;
    }
}

/// Position of the CRLF ending the header line that starts at `from`, `Ok(None)` if it has
/// not arrived yet; a header longer than [`MAX_HEADER_BYTES`] is a protocol error.
fn header_end(buf: &[u8], from: usize, what: &str) -> Result<Option<usize>, CodecError> {
    let window = &buf[from..buf.len().min(from + MAX_HEADER_BYTES + 2)];
    if let Some(p) = window.windows(2).position(|w| w == b"\r\n") {
        return Ok(Some(from + p));
    }
    if window.len() >= MAX_HEADER_BYTES + 2 {
        return Err(CodecError::Protocol(format!("too big {what} count string")));
    }
    Ok(None)
}

/// A decimal integer as Redis's `string2ll` accepts it: optional `-`, digits, nothing else.
fn parse_len(line: &[u8], what: &str) -> Result<i64, CodecError> {
    let digits = line.strip_prefix(b"-").unwrap_or(line);
    let ok = !digits.is_empty() && digits.iter().all(u8::is_ascii_digit);
    ok.then(|| std::str::from_utf8(line).ok()?.parse::<i64>().ok())
        .flatten()
        .ok_or_else(|| CodecError::Protocol(format!("invalid {what} length")))
}

impl RespCodec {
    /// Parses one request at the start of `buf`; `Ok(None)` when incomplete. Returns the
    /// arguments and the number of bytes consumed.
    fn parse(&self, buf: &[u8]) -> Result<Option<(Vec<Bytes>, usize)>, CodecError> {
        if buf[0] != b'*' {
            return self.parse_inline(buf);
        }
        let Some(end) = header_end(buf, 1, "mbulk")? else {
            return self.incomplete(buf);
        };
        let n = parse_len(&buf[1..end], "multibulk")?;
        // `*0` and `*-1` are empty requests, skipped as Redis does; other negatives are junk.
        if n < -1 || n > self.limits.max_args as i64 {
            return protocol("invalid multibulk length");
        }
        if self.restricted && n > UNAUTHENTICATED_MAX_ARGS {
            return protocol("unauthenticated multibulk length");
        }
        let mut pos = end + 2;
        if n <= 0 {
            return Ok(Some((Vec::new(), pos)));
        }
        let mut args = Vec::new();
        for _ in 0..n {
            if pos >= buf.len() {
                return self.incomplete(buf);
            }
            if buf[pos] != b'$' {
                let got = buf[pos];
                let shown = if got.is_ascii_graphic() {
                    (got as char).to_string()
                } else {
                    format!("\\x{got:02x}")
                };
                return Err(CodecError::Protocol(format!("expected '$', got '{shown}'")));
            }
            let Some(end) = header_end(buf, pos + 1, "bulk")? else {
                return self.incomplete(buf);
            };
            let len = parse_len(&buf[pos + 1..end], "bulk")?;
            if len < 0 || len > self.limits.max_bulk_bytes as i64 {
                return protocol("invalid bulk length");
            }
            if self.restricted && len > UNAUTHENTICATED_MAX_BULK {
                return protocol("unauthenticated bulk length");
            }
            let start = end + 2;
            let stop = start + len as usize;
            if buf.len() < stop + 2 {
                return self.incomplete(buf);
            }
            if &buf[stop..stop + 2] != b"\r\n" {
                return protocol("bulk string not terminated by CRLF");
            }
            args.push(Bytes::copy_from_slice(&buf[start..stop]));
            pos = stop + 2;
        }
        Ok(Some((args, pos)))
    }

    fn parse_inline(&self, buf: &[u8]) -> Result<Option<(Vec<Bytes>, usize)>, CodecError> {
        let window = &buf[..buf.len().min(MAX_INLINE_BYTES + 1)];
        let Some(nl) = window.iter().position(|b| *b == b'\n') else {
            if window.len() > MAX_INLINE_BYTES {
                return protocol("too big inline request");
            }
            return self.incomplete(buf);
        };
        let line = &buf[..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = std::str::from_utf8(line)
            .map_err(|_| CodecError::Protocol("inline command is not UTF-8".into()))?;
        let args: Vec<Bytes> = text
            .split_ascii_whitespace()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect();
        if args.len() > self.limits.max_args
            || (self.restricted && args.len() as i64 > UNAUTHENTICATED_MAX_ARGS)
        {
            return protocol("too many arguments");
        }
        Ok(Some((args, nl + 1)))
    }

    fn incomplete<T>(&self, buf: &[u8]) -> Result<Option<T>, CodecError> {
        if buf.len() > self.limits.max_request_bytes {
            return protocol("request too large");
        }
        Ok(None)
    }
}

impl Decoder for RespCodec {
    type Item = Vec<Bytes>;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Vec<Bytes>>, CodecError> {
        loop {
            if src.is_empty() {
                return Ok(None);
            }
            match self.parse(src)? {
                None => return Ok(None),
                Some((args, used)) => {
                    src.advance(used);
                    // Empty inline lines and `*0` are skipped, as Redis does.
                    if !args.is_empty() {
                        return Ok(Some(args));
                    }
                }
            }
        }
    }
}

fn write_reply(r: &Reply, dst: &mut BytesMut) {
    use std::fmt::Write as _;
    struct W<'a>(&'a mut BytesMut);
    impl std::fmt::Write for W<'_> {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0.extend_from_slice(s.as_bytes());
            Ok(())
        }
    }
    match r {
        Reply::Simple(s) => {
            let _ = write!(W(dst), "+{s}\r\n");
        }
        Reply::Error(s) => {
            // Error text must stay on one line.
            let clean: String = s
                .chars()
                .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
                .collect();
            let _ = write!(W(dst), "-{clean}\r\n");
        }
        Reply::Int(n) => {
            let _ = write!(W(dst), ":{n}\r\n");
        }
        Reply::Bulk(None) => dst.extend_from_slice(b"$-1\r\n"),
        Reply::Bulk(Some(b)) => {
            let _ = write!(W(dst), "${}\r\n", b.len());
            dst.extend_from_slice(b);
            dst.extend_from_slice(b"\r\n");
        }
        Reply::Array(items) => {
            let _ = write!(W(dst), "*{}\r\n", items.len());
            for i in items {
                write_reply(i, dst);
            }
        }
    }
}

impl Encoder<Reply> for RespCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Reply, dst: &mut BytesMut) -> Result<(), CodecError> {
        write_reply(&item, dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut RespCodec, input: &[u8]) -> Result<Vec<Vec<Bytes>>, CodecError> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(args) = codec.decode(&mut buf)? {
            out.push(args);
        }
        Ok(out)
    }

    #[test]
    fn pipelined_requests_decode_in_order() {
        let mut c = RespCodec::default();
        let got = decode_all(
            &mut c,
            b"*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\nGET k\r\n",
        )
        .expect("decode");
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[1],
            vec![Bytes::from("SET"), Bytes::from("k"), Bytes::from("v")]
        );
        assert_eq!(got[2], vec![Bytes::from("GET"), Bytes::from("k")]);
    }

    #[test]
    fn partial_request_waits_for_more_bytes() {
        let mut c = RespCodec::default();
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r"[..]);
        assert!(c.decode(&mut buf).expect("partial").is_none());
        buf.extend_from_slice(b"\nk\r\n");
        assert_eq!(
            c.decode(&mut buf).expect("complete"),
            Some(vec![Bytes::from("GET"), Bytes::from("k")])
        );
    }

    #[test]
    fn oversized_bulk_and_array_are_protocol_errors() {
        let limits = Limits {
            max_bulk_bytes: 4,
            max_args: 2,
            max_request_bytes: 64,
        };
        let mut c = RespCodec::new(limits);
        assert!(matches!(
            decode_all(&mut c, b"*1\r\n$5\r\nhello\r\n"),
            Err(CodecError::Protocol(_))
        ));
        assert!(matches!(
            decode_all(&mut c, b"*3\r\n"),
            Err(CodecError::Protocol(_))
        ));
        assert!(matches!(
            decode_all(&mut c, b"*1\r\n$99999999999999999999\r\n"),
            Err(CodecError::Protocol(_))
        ));
        let long_inline = vec![b'a'; 100];
        assert!(matches!(
            decode_all(&mut c, &long_inline),
            Err(CodecError::Protocol(_))
        ));
    }

    #[test]
    fn malformed_bulk_header_is_a_protocol_error() {
        let mut c = RespCodec::default();
        assert!(matches!(
            decode_all(&mut c, b"*1\r\n+OK\r\n"),
            Err(CodecError::Protocol(_))
        ));
        assert!(matches!(
            decode_all(&mut c, b"*1\r\n$x\r\n"),
            Err(CodecError::Protocol(_))
        ));
        assert!(matches!(
            decode_all(&mut c, b"*1\r\n$1\r\nab\r\n"),
            Err(CodecError::Protocol(_))
        ));
    }

    #[test]
    fn negative_and_junk_headers_are_protocol_errors_but_empty_arrays_are_skipped() {
        let mut c = RespCodec::default();
        for bad in [
            &b"*-5\r\n"[..],
            b"*1\r\n$-2\r\n",
            b"*1\r\n$-1\r\n",
            b"*abc\r\n",
            b"*+3\r\n",
            b"*1\r\n$ 3\r\nabc\r\n",
        ] {
            assert!(
                matches!(decode_all(&mut c, bad), Err(CodecError::Protocol(_))),
                "{:?} must be a protocol error",
                String::from_utf8_lossy(bad)
            );
        }
        let got = decode_all(&mut c, b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n").expect("decode");
        assert_eq!(got, vec![vec![Bytes::from("PING")]]);
        let overlong = b"*1\r\n$0000000000000000000000000000001\r\n";
        assert!(matches!(
            decode_all(&mut c, overlong),
            Err(CodecError::Protocol(m)) if m.contains("too big bulk count")
        ));
        let no_crlf = vec![b'1'; 100];
        let mut header = b"*".to_vec();
        header.extend_from_slice(&no_crlf);
        assert!(matches!(
            decode_all(&mut c, &header),
            Err(CodecError::Protocol(m)) if m.contains("too big mbulk count")
        ));
        let inline = vec![b'a'; MAX_INLINE_BYTES + 1];
        assert!(matches!(
            decode_all(&mut c, &inline),
            Err(CodecError::Protocol(m)) if m.contains("too big inline")
        ));
    }

    #[test]
    fn unauthenticated_clients_get_redis_small_limits() {
        let mut c = RespCodec::default();
        c.set_restricted(true);
        let many = format!("*11\r\n{}", "$1\r\na\r\n".repeat(11));
        assert!(matches!(
            decode_all(&mut c, many.as_bytes()),
            Err(CodecError::Protocol(m)) if m == "unauthenticated multibulk length"
        ));
        let big = b"*2\r\n$4\r\nAUTH\r\n$16385\r\n";
        assert!(matches!(
            decode_all(&mut c, big),
            Err(CodecError::Protocol(m)) if m == "unauthenticated bulk length"
        ));
        c.set_restricted(false);
        assert!(decode_all(&mut c, many.as_bytes()).is_ok());
    }

    /// Encodes `args` as a RESP array of bulk strings.
    fn encode_request(args: &[Vec<u8>]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// Feeds `input` in pieces as the server does and checks the buffering bound after every
    /// piece: whenever the decoder waits for more bytes, it holds at most the request limit.
    fn feed(
        codec: &mut RespCodec,
        input: &[u8],
        cuts: &[usize],
        limit: usize,
    ) -> Result<Vec<Vec<Bytes>>, CodecError> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        bounds.push(input.len());
        bounds.sort_unstable();
        let mut at = 0;
        for b in bounds {
            buf.extend_from_slice(&input[at..b]);
            at = b;
            loop {
                match codec.decode(&mut buf)? {
                    Some(args) => out.push(args),
                    None => {
                        assert!(buf.len() <= limit, "buffered {} > limit {limit}", buf.len());
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_or_buffer_past_the_limit(
            input in proptest::collection::vec(proptest::num::u8::ANY, 0..2048),
            cuts in proptest::collection::vec(0usize..4096, 0..8),
            restricted in proptest::bool::ANY,
        ) {
            let limits = Limits { max_bulk_bytes: 256, max_args: 16, max_request_bytes: 512 };
            let mut c = RespCodec::new(limits);
            c.set_restricted(restricted);
            if let Ok(reqs) = feed(&mut c, &input, &cuts, limits.max_request_bytes) {
                for r in reqs {
                    proptest::prop_assert!(r.len() <= limits.max_args);
                    proptest::prop_assert!(r.iter().all(|a| a.len() <= limits.max_request_bytes));
                }
            }
        }

        #[test]
        fn valid_pipelines_decode_the_same_however_they_are_split(
            reqs in proptest::collection::vec(
                proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..40), 1..6),
                1..12,
            ),
            cuts in proptest::collection::vec(0usize..8192, 0..12),
        ) {
            let input: Vec<u8> = reqs.iter().flat_map(|r| encode_request(r)).collect();
            let mut c = RespCodec::default();
            let got = feed(&mut c, &input, &cuts, Limits::default().max_request_bytes)
                .expect("valid pipeline");
            let want: Vec<Vec<Bytes>> = reqs
                .iter()
                .map(|r| r.iter().map(|a| Bytes::copy_from_slice(a)).collect())
                .collect();
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn replies_encode_as_resp2() {
        let mut c = RespCodec::default();
        let mut out = BytesMut::new();
        let r = Reply::Array(vec![
            Reply::Simple("OK"),
            Reply::Int(-3),
            Reply::Bulk(None),
            Reply::bulk("hi"),
            Reply::err("bad\r\nline"),
        ]);
        c.encode(r, &mut out).expect("encode");
        assert_eq!(
            &out[..],
            b"*5\r\n+OK\r\n:-3\r\n$-1\r\n$2\r\nhi\r\n-ERR bad  line\r\n"
        );
    }
}
