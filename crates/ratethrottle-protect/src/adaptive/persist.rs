//! Saving the model while running: [`Saver`] (the `adaptive.persistence` section).

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use ratethrottle::store::Store;

use super::{AdaptiveError, AdaptiveLimiter, Persistence};

/// Saves an adaptive limiter's model every so often on a thread of its own, and once more
/// when stopped or dropped (a process's graceful shutdown). A failed save is logged and
/// tried again at the next tick.
#[derive(Debug)]
pub struct Saver {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Loads the model if asked, then starts the saver.
pub(super) fn start<S: Store>(
    adaptive: &Arc<AdaptiveLimiter<S>>,
    persistence: Persistence,
) -> Result<Saver, AdaptiveError> {
    if persistence.load_on_start {
        if persistence.path.exists() {
            let loaded = adaptive.load_model(&persistence.path)?;
            tracing::info!(path = %persistence.path.display(), loaded, "adaptive model loaded");
        } else {
            tracing::info!(
                path = %persistence.path.display(),
                "no adaptive model saved yet; starting fresh"
            );
        }
    }
    let (stop, stopped) = mpsc::channel::<()>();
    let weak: Weak<AdaptiveLimiter<S>> = Arc::downgrade(adaptive);
    let thread = std::thread::Builder::new()
        .name("ratethrottle-adaptive-save".to_owned())
        .spawn(move || {
            let save = || {
                let Some(adaptive) = weak.upgrade() else {
                    return;
                };
                match adaptive.export_model(&persistence.path) {
                    Ok(()) => {
                        tracing::debug!(path = %persistence.path.display(), "adaptive model saved")
                    }
                    Err(error) => tracing::warn!(%error, "adaptive model not saved; will retry"),
                }
            };
            loop {
                let wait = persistence.save_every.unwrap_or(std::time::Duration::MAX);
                match stopped.recv_timeout(wait) {
                    Err(RecvTimeoutError::Timeout) => save(),
                    // Stopped, or the saver dropped: one last save.
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                        save();
                        return;
                    }
                }
            }
        })
        .map_err(|source| AdaptiveError::Save {
            path: std::path::PathBuf::from("(saver thread)"),
            source,
        })?;
    Ok(Saver {
        stop: Some(stop),
        thread: Some(thread),
    })
}

impl Saver {
    /// Saves one last time and stops; waits for the save.
    pub fn stop(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Saver {
    fn drop(&mut self) {
        self.finish();
    }
}
