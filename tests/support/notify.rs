//! A fake service manager: the unix datagram socket systemd hands a `Type=notify` service in
//! `NOTIFY_SOCKET`. Every datagram is kept with the time it arrived.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::wait_for;

/// One sd_notify datagram: `KEY=value` lines.
#[derive(Debug, Clone)]
pub struct Message {
    pub at: Instant,
    pub text: String,
}

impl Message {
    pub fn has(&self, line: &str) -> bool {
        self.text.lines().any(|l| l == line)
    }

    /// The value of `KEY=` in this datagram.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
    }
}

pub struct FakeSystemd {
    _dir: TempDir,
    path: PathBuf,
    messages: Arc<Mutex<Vec<Message>>>,
}

impl FakeSystemd {
    pub fn start() -> FakeSystemd {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&messages);
        // Ends when the test drops the socket file's directory and the process exits.
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                if let Ok(n) = socket.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    sink.lock().unwrap().push(Message { at: Instant::now(), text });
                }
            }
        });
        FakeSystemd { _dir: dir, path, messages }
    }

    /// The value for `NOTIFY_SOCKET`.
    pub fn socket(&self) -> PathBuf {
        self.path.clone()
    }

    pub fn messages(&self) -> Vec<Message> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits for a datagram after `since` that satisfies `pred`; returns it.
    pub fn wait(&self, since: Instant, what: &str, timeout: Duration, pred: impl Fn(&Message) -> bool) -> Message {
        wait_for(timeout, what, || self.messages().into_iter().find(|m| m.at >= since && pred(m)))
    }

    /// Arrival times of the `WATCHDOG=1` pings in `[from, to)`.
    pub fn pings(&self, from: Instant, to: Instant) -> Vec<Instant> {
        self.messages().iter().filter(|m| m.has("WATCHDOG=1") && m.at >= from && m.at < to).map(|m| m.at).collect()
    }

    /// Every `STATUS=` value so far.
    pub fn statuses(&self) -> Vec<String> {
        self.messages().iter().filter_map(|m| m.get("STATUS").map(str::to_owned)).collect()
    }
}
