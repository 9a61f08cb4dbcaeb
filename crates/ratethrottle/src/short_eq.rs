//! String equality for the hot path: identifiers and rule names are short, and for short
//! strings a few inline word compares beat a call into the C library's `bcmp`.

/// Whether `a == b`, with strings of up to 32 bytes compared in at most four inline loads per
/// side (the first and last words overlap for lengths that are not a multiple of the word).
#[inline]
pub(crate) fn str_eq(a: &str, b: &str) -> bool {
    bytes_eq(a.as_bytes(), b.as_bytes())
}

#[inline]
fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len();
    if len != b.len() {
        return false;
    }
    match len {
        0 => true,
        1..=3 => a[0] == b[0] && a[len / 2] == b[len / 2] && a[len - 1] == b[len - 1],
        4..=7 => ends_eq::<4, _>(a, b, u32::from_ne_bytes),
        8..=16 => ends_eq::<8, _>(a, b, u64::from_ne_bytes),
        17..=32 => ends_eq::<16, _>(a, b, u128::from_ne_bytes),
        _ => a == b,
    }
}

/// Compares the first and the last `N` bytes of two slices of equal length `N..=2N` as words.
#[inline(always)]
fn ends_eq<const N: usize, W: Eq>(a: &[u8], b: &[u8], word: fn([u8; N]) -> W) -> bool {
    match (
        a.first_chunk::<N>(),
        b.first_chunk::<N>(),
        a.last_chunk::<N>(),
        b.last_chunk::<N>(),
    ) {
        (Some(a0), Some(b0), Some(a1), Some(b1)) => {
            word(*a0) == word(*b0) && word(*a1) == word(*b1)
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::str_eq;

    #[test]
    fn agrees_with_eq_for_every_length_and_every_differing_byte() {
        for len in 0..=40 {
            let a: String = (0..len)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            assert!(str_eq(&a, &a.clone()), "len {len}");
            for at in 0..len {
                let mut b = a.clone().into_bytes();
                b[at] = b'#';
                let b = String::from_utf8(b).unwrap();
                assert!(!str_eq(&a, &b), "len {len}, byte {at}");
            }
            assert!(!str_eq(&a, &format!("{a}x")));
        }
    }
}
