//! Database names: the only user input that becomes part of a Docker object's
//! name, so it is validated once, here, and carried as a [`DbName`] after.

use std::fmt;

/// Longest accepted name. Docker allows longer container and volume names,
/// but the name is prefixed with the namespace, and 63 keeps every derived
/// name comfortably inside DNS-label and filesystem limits.
pub const MAX_NAME_LEN: usize = 63;

/// The rule, as said to users in the 400 answer.
pub const NAME_RULE: &str = "a database name must be 1 to 63 characters from [a-zA-Z0-9_.-], starting with a letter or digit";

/// A validated database name: `^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`.
///
/// This is the seed's rule with a length cap. No accepted name contains `/`,
/// whitespace or `..` at its start, so none can reach another database's
/// volume or an arbitrary Docker object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DbName(String);

impl DbName {
    /// Validates `raw` against the rule.
    pub fn parse(raw: &str) -> Result<DbName, String> {
        let bytes = raw.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= MAX_NAME_LEN
            && bytes[0].is_ascii_alphanumeric()
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if ok {
            Ok(DbName(raw.to_owned()))
        } else {
            Err(format!("Invalid database name {raw:?}: {NAME_RULE}."))
        }
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DbName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_seed_names() {
        for n in [
            "test_db_spawn_01",
            "agent-alpha-memory",
            "a",
            "0",
            "A.b-c_d",
            &"x".repeat(63),
        ] {
            assert_eq!(DbName::parse(n).unwrap().as_str(), n);
        }
    }

    #[test]
    fn refuses_everything_else() {
        for n in [
            "",
            "-a",
            ".a",
            "_a",
            "..",
            "a/b",
            "../etc",
            "a b",
            "a\0",
            "ä",
            "a:b",
            &"x".repeat(64),
        ] {
            let err = DbName::parse(n).unwrap_err();
            assert!(err.contains(NAME_RULE), "{err}");
        }
    }
}
