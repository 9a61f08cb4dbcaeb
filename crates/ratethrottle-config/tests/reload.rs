//! Hot reload: valid changes swap rules and lists (counters of unchanged rules kept), invalid
//! ones are rejected and the previous configuration stays. Polls with a deadline; no fixed sleeps.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ratethrottle::Limiter;
use ratethrottle_config::{Config, ConfigWatcher, ConfiguredStore, Environment, ReloadStatus};

const V1: &str = "rules:\n  - name: api\n    limit: 3\n    window: 60\n    block_duration: 0\n  - name: burst\n    limit: 2\n    window: 60\nwhitelist: [w1]\nblacklist: [b1]\n";
const V2: &str = "rules:\n  - name: api\n    limit: 3\n    window: 60\n    block_duration: 0\n  - name: burst\n    limit: 5\n    window: 60\n  - name: new\n    rate: 1/s\nwhitelist: [w2]\nblacklist: [b1]\n";
const BROKEN: &str = "rules:\n  - name: api\n    limit: lots\n    window: 60\n";

/// `text` saved in a directory of its own (removed when dropped), and the configuration
/// loaded from it.
fn saved(text: &str) -> (tempfile::TempDir, PathBuf, Config) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ratethrottle.yaml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load_with_env(&path, &Environment::empty()).unwrap();
    (dir, path, config)
}

/// The limiter `text` describes, and a watcher applying changes of its file.
async fn watched(
    text: &str,
) -> (
    tempfile::TempDir,
    PathBuf,
    Limiter<ConfiguredStore>,
    ConfigWatcher,
) {
    let (dir, path, config) = saved(text);
    let limiter = config.build_limiter().await.unwrap();
    let watcher =
        ConfigWatcher::spawn(&path, config, limiter.clone(), Environment::empty()).unwrap();
    (dir, path, limiter, watcher)
}

/// Replaces the file the way editors save: write a new file, rename it over the old one.
fn save(path: &Path, text: &str) {
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

async fn wait_for(watcher: &ConfigWatcher, done: impl Fn(&ReloadStatus) -> bool) -> ReloadStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = watcher.status();
        if done(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "no reload happened: {status:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_changes_are_applied_or_rejected_while_checks_run() {
    let (_dir, path, limiter, watcher) = watched(V1).await;
    for _ in 0..2 {
        assert!(limiter.check("x", "api").await.unwrap().allowed);
    }

    // Checks of the unchanged rule keep running (and never fail) through every reload.
    let stop = Arc::new(AtomicBool::new(false));
    let checks = Arc::new(AtomicU64::new(0));
    let checker = tokio::spawn({
        let (limiter, stop, checks) = (limiter.clone(), stop.clone(), checks.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                limiter
                    .check("other", "api")
                    .await
                    .expect("api exists throughout");
                checks.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        }
    });

    save(&path, V2);
    let status = wait_for(&watcher, |s| s.applied == 1).await;
    assert_eq!(status.rejected, 0);
    assert_eq!(limiter.rule("burst").unwrap().limit, 5);
    assert!(limiter.rule("new").is_some());
    // `api` did not change: x used 2 of 3 before the reload.
    let status_x = limiter.peek("x", "api").await.unwrap();
    assert_eq!(status_x.remaining, 1);
    assert!(!limiter.is_whitelisted("w1").await.unwrap());
    assert!(limiter.is_whitelisted("w2").await.unwrap());
    assert!(limiter.is_blacklisted("b1").await.unwrap());
    assert_eq!(watcher.current().rules.len(), 3);

    save(&path, BROKEN);
    let status = wait_for(&watcher, |s| s.rejected == 1).await;
    let error = status.last_error.unwrap();
    assert!(
        error.ends_with(
            "ratethrottle.yaml:3:12: rules[0].limit: invalid type: string \"lots\", expected u64"
        ),
        "{error}"
    );
    assert_eq!(
        limiter.rule("burst").unwrap().limit,
        5,
        "the old rules stay"
    );
    assert_eq!(watcher.current().rules.len(), 3);

    // Fixing the file applies it again.
    save(&path, V1);
    wait_for(&watcher, |s| s.applied == 2).await;
    assert!(limiter.rule("new").is_none());
    assert_eq!(watcher.status().last_error, None);

    stop.store(true, Ordering::Relaxed);
    checker.await.unwrap();
    assert!(checks.load(Ordering::Relaxed) > 0);
}

#[tokio::test]
async fn reload_now_reports_whether_anything_changed() {
    let (_dir, path, limiter, watcher) = watched(V1).await;
    assert!(!watcher.reload_now().await.unwrap(), "unchanged file");
    std::fs::write(&path, "storage:\n  type: redis\nrules: []\n").unwrap();
    assert!(watcher.reload_now().await.unwrap());
    assert!(limiter.rules().is_empty());
    // Storage changes wait for a restart: what is in force keeps the memory store.
    assert_eq!(
        watcher.current().storage.kind,
        ratethrottle_config::StorageKind::Memory
    );
}

#[test]
fn spawning_outside_a_runtime_is_an_error_not_a_panic() {
    let (_dir, path, config) = saved(V1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let limiter = runtime.block_on(config.build_limiter()).unwrap();
    let error = ConfigWatcher::spawn(&path, config, limiter, Environment::empty()).unwrap_err();
    assert!(
        error.to_string().contains("inside a tokio runtime"),
        "{error}"
    );
}

/// Issue 15 (19): a reload that lowers a limit hands out no fresh allowance; hooks see each
/// applied change; a detached watcher keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lowered_limit_counts_what_was_used_and_hooks_follow_reloads() {
    let rules = |limit: u64| {
        format!(
            "global:\n  headers_enabled: {}\nrules:\n  - name: api\n    limit: {limit}\n    window: 60\n    block_duration: 0\n",
            limit > 5
        )
    };
    let (_dir, path, limiter, watcher) = watched(&rules(10)).await;
    for _ in 0..6 {
        assert!(limiter.check("client", "api").await.unwrap().allowed);
    }
    let headers = Arc::new(AtomicBool::new(true));
    watcher.on_reload({
        let headers = headers.clone();
        move |config| headers.store(config.global.headers_enabled, Ordering::Relaxed)
    });
    save(&path, &rules(3));
    wait_for(&watcher, |s| s.applied == 1).await;
    assert!(
        !headers.load(Ordering::Relaxed),
        "the hook saw the new configuration"
    );
    let after = limiter.check("client", "api").await.unwrap();
    assert!(!after.allowed, "6 of 10 used, limit now 3: nothing fresh");
    assert!(limiter.check("fresh", "api").await.unwrap().allowed);
    // Detached, the watcher goes on.
    let status = watcher.status();
    watcher.detach();
    save(&path, &rules(20));
    let deadline = Instant::now() + Duration::from_secs(20);
    while limiter.rule("api").unwrap().limit != 20 {
        assert!(
            Instant::now() < deadline,
            "no reload after detach: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(headers.load(Ordering::Relaxed));
    assert_eq!(limiter.peek("client", "api").await.unwrap().remaining, 14);
}
