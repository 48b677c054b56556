//! Shared secrets that a client must present to connect or publish.
//!
//! Only a SHA-256 digest of the secret is kept, and the digests are compared in constant
//! time, so neither a debug print nor response timing gives the secret away.

use std::fmt;

use sha2::{Digest, Sha256};

/// A configured token. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedToken {
    digest: [u8; 32],
}

impl SharedToken {
    pub fn new(secret: &str) -> SharedToken {
        SharedToken {
            digest: Sha256::digest(secret.as_bytes()).into(),
        }
    }

    /// What a client presented (`None` for no token or an empty one), kept as a digest
    /// like the configured tokens, so the client can be judged again when the config
    /// is reloaded without the server holding its secret.
    pub fn presented(token: Option<&str>) -> Option<SharedToken> {
        token.filter(|t| !t.is_empty()).map(SharedToken::new)
    }

    /// Whether `presented` is the secret. The time taken depends on the length of
    /// `presented` only, never on how much of it is right.
    pub fn matches(&self, presented: &str) -> bool {
        self.same_secret(&SharedToken::new(presented))
    }

    /// Whether both digests are of the same secret, compared in constant time.
    pub fn same_secret(&self, other: &SharedToken) -> bool {
        let diff = self
            .digest
            .iter()
            .zip(other.digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        // Keep the compiler from turning the fold into an early-exit comparison.
        std::hint::black_box(diff) == 0
    }
}

impl fmt::Debug for SharedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedToken(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_matches_only_the_exact_secret() {
        let token = SharedToken::new("s3cret");
        assert!(token.matches("s3cret"));
        assert!(!token.matches("s3cre"));
        assert!(!token.matches("s3cret "));
        assert!(!token.matches("S3CRET"));
        assert!(!token.matches(""));
    }

    #[test]
    fn a_presented_token_is_judged_by_its_digest() {
        let token = SharedToken::new("s3cret");
        let presented = SharedToken::presented(Some("s3cret")).unwrap();
        assert!(token.same_secret(&presented));
        assert!(!token.same_secret(&SharedToken::presented(Some("s3cre")).unwrap()));
        assert!(SharedToken::presented(Some("")).is_none());
        assert!(SharedToken::presented(None).is_none());
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let shown = format!("{:?}", SharedToken::new("s3cret"));
        assert_eq!(shown, "SharedToken(..)");
    }
}
