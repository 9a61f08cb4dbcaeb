//! Hot reload: [`ConfigWatcher`] re-reads the file when it changes and applies a valid one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};
use ratethrottle::Limiter;
use tokio::sync::mpsc;

use crate::env::Environment;
use crate::error::ConfigError;
use crate::schema::Config;
use crate::store::ConfiguredStore;

/// How long to wait for an editor's burst of writes to settle before reading the file.
const SETTLE: Duration = Duration::from_millis(50);

/// What the watcher has done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadStatus {
    /// Valid changes applied.
    pub applied: u64,
    /// Invalid changes rejected (the previous configuration stayed active).
    pub rejected: u64,
    /// The error of the last rejected change, if the last change was rejected.
    pub last_error: Option<String>,
}

struct Shared {
    path: PathBuf,
    env: Environment,
    limiter: Limiter<ConfiguredStore>,
    current: ArcSwap<Config>,
    status: parking_lot::Mutex<ReloadStatus>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    /// Run after each applied change, with the new configuration.
    hooks: parking_lot::Mutex<Vec<ReloadHook>>,
}

type ReloadHook = Box<dyn Fn(&Config) + Send + Sync>;

/// Watches a configuration file and keeps a limiter in step with it.
///
/// ## Behavior
///
/// On each change of the file (including editors that save by renaming a new file over it) the
/// file is read and validated. A valid file replaces the limiter's rule set in one atomic swap —
/// checks running meanwhile see either the old or the new rules, never a mix, and never wait —
/// and unchanged rules keep their state and counters; whitelist and blacklist entries the file
/// added or dropped are then added or removed. An invalid file is rejected: its error is logged
/// (with file, line and column) and kept in [`ReloadStatus::last_error`], and the previous
/// configuration stays active. Changes to `storage` need a restart (logged, not applied). If
/// the store fails while list changes are applied (Redis down), the change counts as rejected
/// and is applied in full at the next change or [`ConfigWatcher::reload_now`].
///
/// **Dropping the watcher stops it**: keep it as long as reloading should go on, or call
/// [`ConfigWatcher::detach`] to let it run until the runtime shuts down.
pub struct ConfigWatcher {
    shared: Arc<Shared>,
    _watcher: notify::RecommendedWatcher,
}

impl std::fmt::Debug for ConfigWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigWatcher")
            .field("path", &self.shared.path)
            .field("status", &*self.shared.status.lock())
            .finish()
    }
}

impl ConfigWatcher {
    /// Starts watching `path`, whose current contents are `config` (already applied to
    /// `limiter`, e.g. by [`Config::build_limiter`]). Reloads read variables from `env`. Must
    /// be called inside a tokio runtime.
    pub fn spawn(
        path: impl AsRef<Path>,
        config: Config,
        limiter: Limiter<ConfiguredStore>,
        env: Environment,
    ) -> Result<Self, ConfigError> {
        let path = path.as_ref().to_owned();
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConfigError::Read {
                path,
                source: std::io::Error::other(
                    "ConfigWatcher::spawn must be called inside a tokio runtime",
                ),
            });
        }
        let watch_error = |e: notify::Error| ConfigError::Read {
            path: path.clone(),
            source: std::io::Error::other(format!("cannot watch for changes: {e}")),
        };
        let (sender, mut changes) = mpsc::unbounded_channel::<()>();
        let file_name = path.file_name().map(ToOwned::to_owned);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let ours = event.is_ok_and(|e| {
                    !e.kind.is_access()
                        && e.paths
                            .iter()
                            .any(|p| p.file_name() == file_name.as_deref())
                });
                if ours {
                    let _ = sender.send(());
                }
            })
            .map_err(watch_error)?;
        // Watch the directory: saving by rename replaces the file's inode.
        let directory = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        watcher
            .watch(&directory, RecursiveMode::NonRecursive)
            .map_err(watch_error)?;
        let shared = Arc::new(Shared {
            path,
            env,
            limiter,
            current: ArcSwap::from_pointee(config),
            status: parking_lot::Mutex::default(),
            reloading: tokio::sync::Mutex::new(()),
            hooks: parking_lot::Mutex::default(),
        });
        let weak = Arc::downgrade(&shared);
        tokio::spawn(async move {
            while changes.recv().await.is_some() {
                tokio::time::sleep(SETTLE).await;
                while changes.try_recv().is_ok() {}
                let Some(shared) = weak.upgrade() else { break };
                // The outcome is logged and recorded in the status.
                let _ = reload(&shared).await;
            }
        });
        Ok(ConfigWatcher {
            shared,
            _watcher: watcher,
        })
    }

    /// The configuration in force.
    pub fn current(&self) -> Arc<Config> {
        self.shared.current.load_full()
    }

    /// What the watcher has done so far.
    pub fn status(&self) -> ReloadStatus {
        self.shared.status.lock().clone()
    }

    /// Runs `hook` with the new configuration after each applied change (settings that live
    /// outside the limiter, such as the HTTP middleware's `global.enabled`, follow reloads this
    /// way). A panicking hook is caught and logged.
    pub fn on_reload<F>(&self, hook: F)
    where
        F: Fn(&Config) + Send + Sync + 'static,
    {
        self.shared.hooks.lock().push(Box::new(hook));
    }

    /// Keeps watching until the tokio runtime shuts down, without holding on to the watcher
    /// (instead of `std::mem::forget`, which would also leak it past the runtime).
    pub fn detach(self) {
        tokio::spawn(async move {
            let _watching = self;
            std::future::pending::<()>().await;
        });
    }

    /// Re-reads the file now (as a change would); `Ok(true)` if it was applied, `Ok(false)`
    /// if it was unchanged.
    pub async fn reload_now(&self) -> Result<bool, ConfigError> {
        reload(&self.shared).await
    }
}

async fn reload(shared: &Shared) -> Result<bool, ConfigError> {
    let _one_at_a_time = shared.reloading.lock().await;
    let result: Result<bool, ConfigError> = async {
        let mut next = Config::load_with_env(&shared.path, &shared.env)?;
        let current = shared.current.load_full();
        if next == *current {
            return Ok(false);
        }
        if next.storage != current.storage {
            tracing::warn!(
                path = %shared.path.display(),
                "the storage section changed; storage changes take effect at the next restart"
            );
            // What is in force keeps the storage it was started with.
            next.storage = current.storage.clone();
        }
        next.apply_to(&shared.limiter, Some(&current)).await?;
        for warning in &next.warnings {
            tracing::warn!(path = %shared.path.display(), "{warning}");
        }
        let next = Arc::new(next);
        shared.current.store(Arc::clone(&next));
        for hook in shared.hooks.lock().iter() {
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&next)));
            if ran.is_err() {
                tracing::error!("a configuration reload hook panicked");
            }
        }
        Ok(true)
    }
    .await;
    let mut status = shared.status.lock();
    match &result {
        Ok(true) => {
            status.applied += 1;
            status.last_error = None;
            tracing::info!(path = %shared.path.display(), "configuration reloaded");
        }
        Ok(false) => {}
        Err(error) => {
            status.rejected += 1;
            status.last_error = Some(error.to_string());
            tracing::error!(%error, "configuration change rejected; the previous configuration stays active");
        }
    }
    result
}
