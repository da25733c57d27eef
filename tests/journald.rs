//! Under systemd, stderr is the journal: the daemon then logs natively to journald with its
//! fields as journal fields (`CAMERA=`, `STAGE=`), not as text. The test stands in for
//! journald on its socket, which exists only where no journald runs (CI containers, this
//! machine); elsewhere it says why it did not run.

mod support;

use std::collections::HashMap;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use support::{ConfigDir, Daemon, Redis, TestCam, fixture, wait_for};

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// The fake journald's socket; removed (with the folders it made) on drop.
struct FakeJournal {
    socket: UnixDatagram,
    made: Vec<&'static Path>,
}

impl FakeJournal {
    fn bind() -> Result<FakeJournal, String> {
        if Path::new(JOURNAL_SOCKET).exists() {
            return Err(format!("{JOURNAL_SOCKET} exists: a real journald runs here"));
        }
        let mut made = Vec::new();
        for dir in ["/run/systemd", "/run/systemd/journal"] {
            let dir = Path::new(dir);
            if !dir.exists() {
                std::fs::create_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                made.push(dir);
            }
        }
        let socket = UnixDatagram::bind(JOURNAL_SOCKET).map_err(|e| format!("cannot bind {JOURNAL_SOCKET}: {e}"))?;
        socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        Ok(FakeJournal { socket, made })
    }

    /// Every datagram received so far, parsed.
    fn drain(&self, into: &mut Vec<HashMap<String, String>>) {
        let mut buf = vec![0u8; 256 * 1024];
        while let Ok(n) = self.socket.recv(&mut buf) {
            if n > 0 {
                into.push(parse(&buf[..n]));
            }
        }
    }
}

impl Drop for FakeJournal {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(JOURNAL_SOCKET);
        for dir in self.made.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// journald's native protocol: `KEY=value\n`, or `KEY\n` + 64-bit LE length + bytes + `\n`.
fn parse(mut data: &[u8]) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    while !data.is_empty() {
        let line_end = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
        let line = &data[..line_end];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            fields.insert(String::from_utf8_lossy(&line[..eq]).into_owned(), String::from_utf8_lossy(&line[eq + 1..]).into_owned());
            data = &data[(line_end + 1).min(data.len())..];
        } else {
            let key = String::from_utf8_lossy(line).into_owned();
            let rest = &data[line_end + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            fields.insert(key, String::from_utf8_lossy(&rest[8..8 + len]).into_owned());
            data = &rest[(8 + len + 1).min(rest.len())..];
        }
    }
    fields
}

#[test]
fn logs_go_to_the_journal_with_camera_and_stage_fields() {
    let journal = match FakeJournal::bind() {
        Ok(journal) => journal,
        Err(why) => {
            eprintln!("not run: {why}");
            return;
        }
    };
    let redis = Redis::start();
    let cam = TestCam::start(&fixture("scenetext01.jpg"), 0);
    let config = ConfigDir::new(&redis.url(), "");
    config.camera("north", &cam.url, "fps = 5");
    let daemon = Daemon::start_on_journal_stream(&config);

    let mut entries = Vec::new();
    let live = wait_for(Duration::from_secs(60), "`Camera live.` in the journal", || {
        journal.drain(&mut entries);
        entries.iter().find(|e| e.get("MESSAGE").is_some_and(|m| m.starts_with("Camera live."))).cloned()
    });
    assert_eq!(live.get("CAMERA").map(String::as_str), Some("north"), "{live:?}");
    assert_eq!(live.get("STAGE").map(String::as_str), Some("capture"), "{live:?}");
    assert_eq!(live.get("PRIORITY").map(String::as_str), Some("6"), "info: {live:?}");
    assert_eq!(live.get("SYSLOG_IDENTIFIER").map(String::as_str), Some("roadsightd"));
    let (code, text) = daemon.stop();
    assert_eq!(code, Some(0));
    journal.drain(&mut entries);
    assert!(entries.iter().any(|e| e.get("MESSAGE").is_some_and(|m| m.starts_with("Camera summary."))));
    assert!(!text.contains("Camera live."), "nothing as text on stderr when it is the journal: {text}");
}
