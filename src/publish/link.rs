//! The publisher's connection to the local Redis: one request at a time over TCP or a unix
//! socket, the command written from a reused buffer and the reply read into another, so that
//! an `XADD` costs no heap allocation. redis-rs still parses the URL and packs the command
//! ([`redis::Cmd`]); its connections allocate on every command (the packed command, a reply
//! channel, the reply value; README "Pipeline benchmark"), which is what this file avoids. It
//! speaks only what the publisher needs: RESP2, and replies that are not aggregates (those of
//! `XADD`, `AUTH`, `SELECT`, `CLIENT SETNAME`). Everything else that reads or writes Redis
//! (the uplink, `status`, tests) uses redis-rs.

use std::io::{Error, ErrorKind};
use std::path::PathBuf;
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo};
use futures_util::FutureExt as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

/// The read buffer's first size; an `XADD` reply (the entry ID) is about 25 bytes.
const INITIAL_READ: usize = 1024;
/// The longest reply accepted; longer ones end the connection as a protocol error.
const MAX_REPLY: usize = 64 * 1024;

/// Where the local Redis listens, and how to open the session.
#[derive(Clone)]
pub(crate) struct LinkTarget {
    addr: Addr,
    username: Option<String>,
    password: Option<String>,
    db: i64,
}

#[derive(Clone)]
enum Addr {
    Tcp(String, u16),
    Unix(PathBuf),
}

impl LinkTarget {
    /// From a parsed `redis://` or `unix://` URL, with the credentials already set.
    pub(crate) fn new(info: &ConnectionInfo) -> Result<Self, String> {
        let addr = match info.addr() {
            ConnectionAddr::Tcp(host, port) => Addr::Tcp(host.clone(), *port),
            ConnectionAddr::Unix(path) => Addr::Unix(path.clone()),
            _ => return Err("TLS to the local Redis is not supported: expected redis:// or unix://".into()),
        };
        let settings = info.redis_settings();
        Ok(Self {
            addr,
            username: settings.username().map(str::to_owned),
            password: settings.password().map(str::to_owned),
            db: settings.db(),
        })
    }
}

/// A reply that is not an error.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply<'a> {
    /// A status line, integer or bulk string: its bytes.
    Value(&'a [u8]),
    Nil,
    /// An error reply: Redis refused the command, the connection is fine.
    Error(&'a str),
}

/// Why a link could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The socket failed, timed out, or Redis said something the link does not speak. The
    /// connection is unusable.
    #[error("{0}")]
    Io(#[from] Error),
    /// Redis refused a command of the session's opening (`AUTH`, `SELECT`): the configuration
    /// is wrong, and retrying will not fix it. `NOAUTH` (a password is needed and none was
    /// configured) counts as a refused `AUTH`.
    #[error("{command} refused: {message}")]
    Refused { command: &'static str, message: String },
}

/// An open session with the local Redis.
pub(crate) struct Link {
    stream: Box<dyn Stream>,
    /// The packed command being sent.
    out: Vec<u8>,
    /// Bytes read: `buf[..filled]`, of which the first `consumed` belong to the last reply.
    buf: Vec<u8>,
    filled: usize,
    consumed: usize,
    response_timeout: Duration,
    /// Whether the last request's command left whole. After a failed request that did not,
    /// Redis cannot have run it, and it may be sent again on a new connection.
    sent_whole: bool,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

impl Link {
    /// Connects within `connect_timeout`, then authenticates and selects the database, each
    /// reply (and each later one) within `response_timeout`.
    pub(crate) async fn connect(target: &LinkTarget, connect_timeout: Duration, response_timeout: Duration) -> Result<Self, LinkError> {
        let stream: Box<dyn Stream> = match &target.addr {
            Addr::Tcp(host, port) => {
                let tcp = within(connect_timeout, TcpStream::connect((host.as_str(), *port))).await?;
                // One small command at a time: never wait for Nagle.
                tcp.set_nodelay(true)?;
                Box::new(tcp)
            }
            Addr::Unix(path) => Box::new(within(connect_timeout, UnixStream::connect(path)).await?),
        };
        let mut link =
            Link { stream, out: Vec::new(), buf: vec![0; INITIAL_READ], filled: 0, consumed: 0, response_timeout, sent_whole: false };
        if let Some(password) = &target.password {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = &target.username {
                auth.arg(user);
            }
            auth.arg(password);
            let reply = link.request(&auth).await.map(|r| refusal(&r));
            // The password must not stay in the command buffer.
            link.out.fill(0);
            if let Some(message) = reply? {
                return Err(opening_refusal("AUTH", message));
            }
        }
        if target.db != 0 {
            let reply = link.request(redis::cmd("SELECT").arg(target.db)).await?;
            if let Some(message) = refusal(&reply) {
                return Err(opening_refusal("SELECT", message));
            }
        }
        // The name shows in `CLIENT LIST`. An ACL may forbid `CLIENT`: that is no reason not to
        // publish, but a missing password is.
        let reply = link.request(redis::cmd("CLIENT").arg("SETNAME").arg("roadsightd-publish")).await?;
        match refusal(&reply) {
            Some(message) if message.starts_with("NOAUTH") => return Err(opening_refusal("AUTH", message)),
            Some(message) => tracing::debug!(stage = "publish", error = %message, "CLIENT SETNAME refused; going on."),
            None => {}
        }
        Ok(link)
    }

    /// Sends `cmd` and reads its reply, within the response timeout. After an `Err` the
    /// connection is unusable: the caller drops it.
    pub(crate) async fn request(&mut self, cmd: &redis::Cmd) -> Result<Reply<'_>, Error> {
        // The previous reply's bytes go; anything after them (never, in RESP2 without
        // pipelining) moves to the front.
        self.buf.copy_within(self.consumed..self.filled, 0);
        self.filled -= self.consumed;
        self.consumed = 0;
        self.out.clear();
        cmd.write_packed_command(&mut self.out);
        self.sent_whole = false;
        self.check_open()?;
        let timeout = self.response_timeout;
        let parsed = within(timeout, async {
            self.stream.write_all(&self.out).await?;
            self.sent_whole = true;
            self.read_reply().await
        })
        .await?;
        self.consumed = parsed.end;
        let line = &self.buf[parsed.start..parsed.line_end];
        Ok(match parsed.kind {
            Kind::Value => Reply::Value(line),
            Kind::Bulk(len) => Reply::Value(&self.buf[parsed.line_end + 2..parsed.line_end + 2 + len]),
            Kind::Nil => Reply::Nil,
            Kind::Error => Reply::Error(std::str::from_utf8(line).unwrap_or("(error reply not UTF-8)")),
        })
    }

    /// Whether the last failed [`Link::request`] had sent its command whole: if not, Redis did
    /// not run it.
    pub(crate) fn sent_whole(&self) -> bool {
        self.sent_whole
    }

    /// Fails if the server already closed the connection (a Redis restart, a killed client):
    /// seen before writing, the command is known not to have been run.
    fn check_open(&mut self) -> Result<(), Error> {
        if self.filled == self.buf.len() {
            return Ok(()); // a reply is being read: nothing to look at
        }
        match self.stream.read(&mut self.buf[self.filled..]).now_or_never() {
            Some(Ok(0)) => Err(Error::new(ErrorKind::UnexpectedEof, "Redis closed the connection")),
            Some(Ok(n)) => {
                self.filled += n; // unsolicited bytes: parsed as the next reply, and refused there
                Ok(())
            }
            Some(Err(e)) => Err(e),
            None => Ok(()),
        }
    }

    /// Reads until `buf` holds one whole reply.
    async fn read_reply(&mut self) -> Result<Parsed, Error> {
        loop {
            if let Some(parsed) = parse(&self.buf[..self.filled])? {
                return Ok(parsed);
            }
            if self.filled == self.buf.len() {
                if self.buf.len() >= MAX_REPLY {
                    return Err(Error::new(ErrorKind::InvalidData, format!("reply longer than {MAX_REPLY} bytes")));
                }
                self.buf.resize((self.buf.len() * 4).min(MAX_REPLY), 0);
            }
            let n = self.stream.read(&mut self.buf[self.filled..]).await?;
            if n == 0 {
                return Err(Error::new(ErrorKind::UnexpectedEof, "Redis closed the connection"));
            }
            self.filled += n;
        }
    }
}

/// The message of an error reply.
fn refusal(reply: &Reply<'_>) -> Option<String> {
    match reply {
        Reply::Error(message) => Some((*message).to_owned()),
        _ => None,
    }
}

async fn within<T>(limit: Duration, f: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| Err(Error::new(ErrorKind::TimedOut, format!("no answer within {} ms", limit.as_millis()))))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Value,
    /// A bulk string of this many bytes, after the header line.
    Bulk(usize),
    Nil,
    Error,
}

/// Where one reply lies in the bytes read: its header line without type byte and CRLF is
/// `start..line_end`; it ends at `end`.
#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    kind: Kind,
    start: usize,
    line_end: usize,
    end: usize,
}

/// One RESP2 reply at the start of `bytes`: `None` while incomplete.
fn parse(bytes: &[u8]) -> Result<Option<Parsed>, Error> {
    let Some(line_end) = bytes.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let bad = |what: &str| Error::new(ErrorKind::InvalidData, format!("unexpected reply from Redis: {what}"));
    let (kind, end) = match bytes[0] {
        b'+' | b':' => (Kind::Value, line_end + 2),
        b'-' => (Kind::Error, line_end + 2),
        b'$' => {
            let len: i64 = std::str::from_utf8(&bytes[1..line_end])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("a bulk string without a length"))?;
            match usize::try_from(len) {
                Err(_) if len == -1 => (Kind::Nil, line_end + 2),
                Err(_) => return Err(bad("a negative bulk string length")),
                Ok(len) if len > MAX_REPLY => return Err(bad("a bulk string longer than 64 KiB")),
                Ok(len) => {
                    let end = line_end + 2 + len + 2;
                    if bytes.len() < end {
                        return Ok(None);
                    }
                    if &bytes[end - 2..end] != b"\r\n" {
                        return Err(bad("a bulk string not ended by CRLF"));
                    }
                    (Kind::Bulk(len), end)
                }
            }
        }
        _ => return Err(bad("an aggregate or unknown type")),
    };
    Ok(Some(Parsed { kind, start: 1, line_end, end }))
}

/// A refusal of the session's opening. The configuration's fault (a wrong password or user, a
/// database that does not exist) is [`LinkError::Refused`]: retrying will not help. Anything
/// else is the server's state (`-ERR max number of clients reached`, which Redis sends on
/// accept, `LOADING`, …): an I/O error, and the connection is tried again.
fn opening_refusal(command: &'static str, message: String) -> LinkError {
    let about_credentials = ["WRONGPASS", "NOAUTH", "NOPERM"].iter().any(|code| message.starts_with(code));
    let about_settings = message.starts_with("ERR")
        && ["password", "AUTH", "DB index", "invalid DB"].iter().any(|words| message.contains(words));
    if about_credentials || about_settings {
        LinkError::Refused { command, message }
    } else {
        LinkError::Io(Error::other(format!("{command}: {message}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_about_the_configuration_are_config_errors() {
        for message in [
            "WRONGPASS invalid username-password pair or user is disabled.",
            "NOAUTH Authentication required.",
            "NOPERM this user has no permissions to run the 'select' command",
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            "ERR DB index is out of range",
        ] {
            assert!(matches!(opening_refusal("AUTH", message.into()), LinkError::Refused { .. }), "{message}");
        }
        for message in ["ERR max number of clients reached", "LOADING Redis is loading the dataset in memory"] {
            assert!(matches!(opening_refusal("AUTH", message.into()), LinkError::Io(_)), "{message}");
        }
    }

    fn parsed(bytes: &[u8]) -> Option<Parsed> {
        parse(bytes).expect("valid")
    }

    #[test]
    fn parses_the_replies_the_publisher_meets() {
        let id = b"$15\r\n1700000000000-0\r\n";
        assert_eq!(parsed(id), Some(Parsed { kind: Kind::Bulk(15), start: 1, line_end: 3, end: id.len() }));
        assert_eq!(parsed(b"+OK\r\n").map(|p| (p.kind, p.line_end)), Some((Kind::Value, 3)));
        assert_eq!(parsed(b":12\r\n").map(|p| p.kind), Some(Kind::Value));
        assert_eq!(parsed(b"$-1\r\n").map(|p| p.kind), Some(Kind::Nil));
        assert_eq!(parsed(b"-OOM command not allowed\r\n").map(|p| (p.kind, p.line_end)), Some((Kind::Error, 24)));
        assert_eq!(parsed(b"$0\r\n\r\n").map(|p| p.kind), Some(Kind::Bulk(0)));
    }

    #[test]
    fn waits_for_the_rest_of_a_split_reply() {
        let id = b"$15\r\n1700000000000-0\r\n";
        for cut in 0..id.len() {
            assert_eq!(parsed(&id[..cut]), None, "cut at {cut}");
        }
        // Bytes after the reply are not part of it.
        assert_eq!(parsed(b"+OK\r\n+OK\r\n").map(|p| p.end), Some(5));
    }

    #[test]
    fn refuses_what_the_publisher_never_asks_for() {
        for bytes in [&b"*2\r\n"[..], b"%1\r\n", b"$x\r\n", b"$-5\r\n", b"$2\r\nabcd\r\n", b"$99999999\r\n"] {
            assert!(parse(bytes).is_err(), "{:?}", String::from_utf8_lossy(bytes));
        }
    }
}
