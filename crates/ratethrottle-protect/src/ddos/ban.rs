//! Enforcing a block: the offence is counted in the limiter's store (so a fleet on Redis
//! shares the count), and the client goes on the limiter's blacklist for the escalated time.

use std::time::Duration;

use ratethrottle::Limiter;
use ratethrottle::store::{KeyValueStore, Store};

use super::DdosSettings;

/// A block that was put in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ban {
    /// Which offence of the client this is (1 for the first within `offence_memory`).
    pub offence: u64,
    /// How long the block lasts.
    pub duration: Duration,
}

/// The store key under which `identifier`'s offences are counted.
pub fn offence_key(identifier: &str) -> String {
    format!("ddos:offences:{identifier}")
}

/// Counts an offence of `identifier` in `limiter`'s store (remembered for
/// `settings.offence_memory` after this one, by every process on the same store) and
/// blacklists it there for [`DdosSettings::block_for`] that offence; `None` (nothing counted)
/// when it is blacklisted already.
///
/// Two processes calling for a block of the same client at the same moment may both count
/// an offence: the check and the count are two steps.
///
/// ```
/// use ratethrottle::Limiter;
/// use ratethrottle_protect::ddos::{DdosSettings, ban};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let limiter = Limiter::in_memory();
/// let settings = DdosSettings::default();
/// let first = ban(&limiter, &settings, "203.0.113.7").await?.unwrap();
/// assert_eq!(ban(&limiter, &settings, "203.0.113.7").await?, None); // blocked already
/// limiter.blacklist_remove("203.0.113.7").await?;
/// let second = ban(&limiter, &settings, "203.0.113.7").await?.unwrap();
/// assert_eq!((first.offence, first.duration.as_secs()), (1, 3600));
/// assert_eq!((second.offence, second.duration.as_secs()), (2, 7200));
/// assert!(limiter.is_blacklisted("203.0.113.7").await?);
/// # Ok::<(), ratethrottle::Error>(())
/// # }).unwrap();
/// ```
pub async fn ban<S: Store + KeyValueStore>(
    limiter: &Limiter<S>,
    settings: &DdosSettings,
    identifier: &str,
) -> Result<Option<Ban>, ratethrottle::Error> {
    if limiter.is_blacklisted(identifier).await? {
        return Ok(None);
    }
    let key = offence_key(identifier);
    let memory = Some(settings.offence_memory);
    let count = limiter
        .store()
        .increment(&key, 1, memory, limiter.now())
        .await?;
    let offence = u64::try_from(count).unwrap_or(1).max(1);
    let duration = settings.block_for(offence);
    limiter.blacklist_add(identifier, Some(duration)).await?;
    Ok(Some(Ban { offence, duration }))
}

/// The future of a [`Screen`]'s ban.
pub type BanFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = ratethrottle::Result<Option<Ban>>> + Send>>;

/// DDoS protection in front of a limiter: it scores each request of a client, and a client
/// it calls for blocking goes on the limiter's blacklist ([`ban`]: on Redis, for the whole
/// fleet). The store's type is resolved here, so holders need not know it.
///
/// ```
/// use std::sync::Arc;
/// use ratethrottle::Limiter;
/// use ratethrottle_protect::ddos::{DdosProtection, DdosSettings, Screen};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let limiter = Limiter::in_memory();
/// let protection = Arc::new(DdosProtection::new(DdosSettings::default()).unwrap());
/// let screen = Screen::new(limiter.clone(), protection);
/// assert!(!screen.calls_for_block("203.0.113.7", "/", Some("curl/8"), limiter.now()));
/// screen.block("203.0.113.7").await; // as it would after a flood
/// assert!(limiter.is_blacklisted("203.0.113.7").await?);
/// # Ok::<(), ratethrottle::Error>(())
/// # }).unwrap();
/// ```
pub struct Screen {
    protection: std::sync::Arc<super::DdosProtection>,
    ban: Box<dyn Fn(&str) -> BanFuture + Send + Sync>,
}

impl std::fmt::Debug for Screen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Screen").finish_non_exhaustive()
    }
}

impl Screen {
    /// Screens with `protection`, blocking on `limiter`'s blacklist.
    pub fn new<S: Store + KeyValueStore>(
        limiter: Limiter<S>,
        protection: std::sync::Arc<super::DdosProtection>,
    ) -> Self {
        let settings = std::sync::Arc::clone(&protection);
        let ban = Box::new(move |client: &str| -> BanFuture {
            let (limiter, settings, client) = (
                limiter.clone(),
                std::sync::Arc::clone(&settings),
                client.to_owned(),
            );
            Box::pin(async move { ban(&limiter, settings.settings(), &client).await })
        });
        Screen { protection, ban }
    }

    /// The protection that scores.
    pub fn protection(&self) -> &std::sync::Arc<super::DdosProtection> {
        &self.protection
    }

    /// Scores one request of `client` (to `endpoint`, with `user_agent`) at `now`: whether it
    /// calls for blocking the client (logged at WARN).
    pub fn calls_for_block(
        &self,
        client: &str,
        endpoint: &str,
        user_agent: Option<&str>,
        now: ratethrottle::clock::Nanos,
    ) -> bool {
        let analysis = self.protection.analyze(client, endpoint, user_agent, now);
        if analysis.block_for.is_none() {
            return false;
        }
        tracing::warn!(
            client,
            score = analysis.pattern.suspicious_score,
            "DDoS protection: the client's traffic calls for a block"
        );
        true
    }

    /// Blacklists `client` for as long as its offences call for (logged; a failure is logged
    /// too, and the rules still answer).
    pub async fn block(&self, client: &str) {
        match (self.ban)(client).await {
            Ok(None) => {}
            Ok(Some(ban)) => tracing::warn!(
                client,
                offence = ban.offence,
                "DDoS protection: blocking the client for {:?}",
                ban.duration
            ),
            Err(error) => tracing::error!(client, "could not blacklist the client: {error}"),
        }
    }
}
