//! Notifications to the service manager (sd_notify(3)) through the pure-Rust `sd-notify` crate:
//! READY, STATUS, RELOADING, STOPPING, watchdog pings and start-timeout extensions.
//!
//! Every call is a no-op when `NOTIFY_SOCKET` is unset (a terminal, a test without a fake
//! systemd). A failed send is logged once at debug level and otherwise ignored: the daemon must
//! not stop because the service manager went away.

use std::time::Duration;

use sd_notify::NotifyState;

/// How the daemon talks to systemd; cheap to copy around.
#[derive(Debug, Clone, Copy)]
pub struct Notifier {
    /// The watchdog interval systemd asked for (`WATCHDOG_USEC` for this pid), if any.
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `WATCHDOG_USEC`/`WATCHDOG_PID` once.
    pub fn from_env() -> Self {
        Self { watchdog: sd_notify::watchdog_enabled().filter(|d| !d.is_zero()) }
    }

    /// The interval after which systemd kills a daemon that stopped pinging.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Config, model and local Redis are up; also ends a reload.
    pub fn ready(&self, status: &str) {
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// The one line `systemctl status` shows.
    pub fn status(&self, status: &str) {
        send(&[NotifyState::Status(status)]);
    }

    /// A reload started; [`Notifier::ready`] ends it. systemd ≥ 257 wants the monotonic time
    /// of the request with it; older versions ignore the field.
    pub fn reloading(&self, status: &str) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => send(&[NotifyState::Reloading, now, NotifyState::Status(status)]),
            Err(_) => send(&[NotifyState::Reloading, NotifyState::Status(status)]),
        }
    }

    /// Shutdown started.
    pub fn stopping(&self, status: &str) {
        send(&[NotifyState::Stopping, NotifyState::Status(status)]);
    }

    /// "Still alive": only called while the supervisor and inference make progress.
    pub fn watchdog(&self) {
        send(&[NotifyState::Watchdog]);
    }

    /// Start-up is slow but progressing (model load, TensorRT engine build): push the start
    /// timeout `by` further from now.
    pub fn extend_timeout(&self, by: Duration, status: &str) {
        let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
        send(&[NotifyState::ExtendTimeoutUsec(usec), NotifyState::Status(status)]);
    }
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed.");
    }
}
