//! Bearer-token authentication (RFC 6750) with a constant-time comparison,
//! so response timing says nothing about how much of a guess was right.

use alloc::vec::Vec;
use core::fmt;

/// The shared secret every request must present. `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Vec<u8>);

impl Token {
    /// A token from the appliance config's `api_token`.
    pub fn new(secret: &str) -> Token {
        Token(Vec::from(secret.as_bytes()))
    }

    /// Whether `candidate` equals the token. Time depends only on the two
    /// lengths, not on where they differ.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let mut difference = u8::from(candidate.len() != self.0.len());
        for (index, expected) in self.0.iter().enumerate() {
            let offered = candidate.get(index).copied().unwrap_or(0);
            difference |= expected ^ offered;
        }
        difference == 0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Token(<hidden>)")
    }
}

/// Who may use the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Requests must carry `Authorization: Bearer <token>`.
    Token(Token),
    /// No authentication. Only for an operator who explicitly opened the
    /// API without a token; with no token configured Dom0 does not listen.
    Open,
}

impl Access {
    /// Whether a request with this `Authorization` header value may pass.
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        match self {
            Access::Open => true,
            Access::Token(token) => {
                let Some(value) = authorization else {
                    return false;
                };
                let Some((scheme, credentials)) = value.split_once(' ') else {
                    return false;
                };
                scheme.eq_ignore_ascii_case("bearer")
                    && token.matches(credentials.trim_start_matches(' ').as_bytes())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_checks() {
        let access = Access::Token(Token::new("s3cret-s3cret-s3cret-s3cret-s3cret"));
        assert!(access.allows(Some("Bearer s3cret-s3cret-s3cret-s3cret-s3cret")));
        assert!(access.allows(Some("bearer  s3cret-s3cret-s3cret-s3cret-s3cret")));
        assert!(!access.allows(Some("Bearer s3cret-s3cret-s3cret-s3cret-s3cre")));
        assert!(!access.allows(Some("Bearer s3cret-s3cret-s3cret-s3cret-s3cret!")));
        assert!(!access.allows(Some("Basic s3cret-s3cret-s3cret-s3cret-s3cret")));
        assert!(!access.allows(Some("Bearer")));
        assert!(!access.allows(None));
        assert!(Access::Open.allows(None));
    }

    #[test]
    fn debug_hides_the_secret() {
        let text = alloc::format!("{:?}", Token::new("abc"));
        assert!(!text.contains("abc"));
    }
}
