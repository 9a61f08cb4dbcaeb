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
