//! Log set-up. When stderr is the journal (systemd sets `JOURNAL_STREAM` to its `dev:ino`),
//! events go to journald natively, with their fields as journal fields (`camera` → `CAMERA=`,
//! `stage` → `STAGE=`); otherwise plain text on stderr. The level comes from `RUST_LOG` when
//! set, else from the config (`[logging] level`), and a reload can change it.

use std::io::IsTerminal as _;
use std::os::fd::AsFd as _;
use std::os::unix::fs::MetadataExt as _;

use tracing_journald::{Priority, PriorityMappings};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// Changes the level of the installed subscriber.
pub struct LogControl {
    handle: Option<reload::Handle<EnvFilter, Registry>>,
    /// `RUST_LOG` was set: it wins over the config.
    from_env: bool,
}

impl LogControl {
    /// Applies `[logging] level` (already validated) unless `RUST_LOG` overrides it.
    pub fn set_level(&self, level: &str) {
        if self.from_env {
            return;
        }
        if let (Some(handle), Ok(filter)) = (&self.handle, EnvFilter::try_new(level)) {
            let _ = handle.reload(filter);
        }
    }
}

/// Installs the global subscriber at `default_level`; a second call changes nothing.
pub fn init_logging(default_level: &str) -> LogControl {
    let env = EnvFilter::try_from_default_env().ok();
    let from_env = env.is_some();
    let filter = env.unwrap_or_else(|| EnvFilter::new(default_level));
    let (filter, handle) = reload::Layer::new(filter);
    let journald = stderr_is_journal()
        .then(|| tracing_journald::layer().ok())
        .flatten()
        .map(|layer| {
            layer
                .with_field_prefix(None)
                .with_syslog_identifier("roadsightd".into())
                .with_priority_mappings(syslog_priorities())
        });
    let plain = journald.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
    });
    let installed = tracing_subscriber::registry().with(filter).with(journald).with(plain).try_init().is_ok();
    LogControl { handle: installed.then_some(handle), from_env }
}

/// syslog's meaning of the levels (info = 6, debug = 7), so `journalctl -p info` shows what a
/// terminal shows at `info`; tracing-journald's default shifts each level one up.
fn syslog_priorities() -> PriorityMappings {
    PriorityMappings { info: Priority::Informational, debug: Priority::Debug, trace: Priority::Debug, ..PriorityMappings::new() }
}

/// Whether stderr is the stream systemd connected to the journal: `JOURNAL_STREAM` is inherited
/// by children whose stderr may be redirected elsewhere, so compare it with stderr's own
/// device and inode.
fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else { return false };
    let Ok(stderr) = std::io::stderr().as_fd().try_clone_to_owned() else { return false };
    let Ok(meta) = std::fs::File::from(stderr).metadata() else { return false };
    journal_stream_matches(&value.to_string_lossy(), meta.dev(), meta.ino())
}

/// `JOURNAL_STREAM` is `<device>:<inode>` in decimal.
fn journal_stream_matches(value: &str, dev: u64, ino: u64) -> bool {
    value.split_once(':').is_some_and(|(d, i)| d.parse() == Ok(dev) && i.parse() == Ok(ino))
}

#[cfg(test)]
mod tests {
    use super::journal_stream_matches;

    #[test]
    fn journal_stream_must_name_stderr_exactly() {
        assert!(journal_stream_matches("8:12345", 8, 12345));
        assert!(!journal_stream_matches("8:12345", 8, 12346));
        assert!(!journal_stream_matches("9:12345", 8, 12345));
        assert!(!journal_stream_matches("garbage", 8, 12345));
        assert!(!journal_stream_matches("", 0, 0));
    }
}
