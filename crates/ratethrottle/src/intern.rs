//! Interned rule names: a rule's name is stored once for the life of the process, so a
//! [`Status`](crate::Status) can carry it without allocating or touching a shared reference
//! count on every check. Memory grows only with the number of distinct names ever used.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

static NAMES: LazyLock<Mutex<HashSet<&'static str>>> = LazyLock::new(Mutex::default);

/// The interned copy of `name`.
pub(crate) fn intern(name: &str) -> &'static str {
    let mut names = NAMES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(&known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_same_name_is_stored_once() {
        let a = super::intern("intern-test");
        let b = super::intern(&String::from("intern-test"));
        assert!(std::ptr::eq(a, b));
    }
}
