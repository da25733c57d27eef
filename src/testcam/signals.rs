//! SIGINT/SIGTERM → [`Stopper::stop`]. glib 0.22 no longer wraps `g_unix_signal_add`, so a
//! small thread waits on tokio's signal streams (tokio is already a dependency) instead.

use std::io;
use std::thread::JoinHandle;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

use super::Stopper;

/// Installed handlers and the thread waiting on them; dropping it ends the thread.
pub(crate) struct SignalWatch {
    done: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl SignalWatch {
    /// Installs the handlers now (so a signal right after start is not lost) and waits for
    /// the first one on a thread of its own.
    pub(crate) fn install(stopper: Stopper) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (mut interrupt, mut terminate) = {
            let _entered = runtime.enter();
            (
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
            )
        };
        let (done, finished) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("testcam-signals".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let name = tokio::select! {
                        _ = interrupt.recv() => "SIGINT",
                        _ = terminate.recv() => "SIGTERM",
                        _ = finished => return,
                    };
                    tracing::info!(signal = name, "Stopping on signal.");
                    stopper.stop();
                });
            })?;
        Ok(Self {
            done: Some(done),
            thread: Some(thread),
        })
    }
}

impl Drop for SignalWatch {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
