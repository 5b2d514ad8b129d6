//! A secret that never shows itself: no `Display`, a redacting `Debug`, wiped on drop.

use zeroize::Zeroizing;

/// A CHAP secret (or any other credential bytes). Its `Debug` output is `Secret(<redacted>)`
/// and it has no `Display`, so it cannot end up in a log line, an error message or `--help`
/// by accident; [`Secret::expose`] is the one way to its bytes. The bytes are zeroed when it
/// is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wraps `bytes`.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(Zeroizing::new(bytes.into()))
    }

    /// The secret's bytes, for the digest that proves it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for an empty secret.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_bytes() {
        let s = Secret::new("correct horse battery staple");
        let shown = format!("{s:?} {s:#?} {:?}", Some(&s));
        assert!(!shown.contains("horse"), "{shown}");
        assert!(shown.contains("<redacted>"));
        assert_eq!(s.expose(), b"correct horse battery staple");
    }
}
