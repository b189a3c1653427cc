//! Password hashing with argon2id: PHC strings, OWASP parameters by default, rehash detection,
//! and equal work for unknown accounts so response time does not reveal which emails exist.

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, PasswordHasher, PasswordVerifier, Version};

use crate::error::{Error, Result};

/// Shortest accepted password, in bytes.
pub const MIN_PASSWORD_BYTES: usize = 8;
/// Longest accepted password, in bytes (bounds hashing work per request).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl PasswordParams {
    /// OWASP's recommendation for argon2id: 19 MiB, 2 iterations, 1 lane. The default.
    pub const OWASP: PasswordParams = PasswordParams {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };

    /// The cheapest parameters argon2 accepts. For tests only: never use in production.
    pub const INSECURE_FAST: PasswordParams = PasswordParams {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };
}

impl Default for PasswordParams {
    fn default() -> Self {
        PasswordParams::OWASP
    }
}

/// Checks the length rule (8..=1024 bytes); no composition rules, per NIST SP 800-63B.
///
/// # Errors
/// `InvalidInput` when it is shorter than 8 or longer than 1024 bytes.
pub fn validate_password(password: &str) -> Result<()> {
    let n = password.len();
    if n < MIN_PASSWORD_BYTES {
        return Err(Error::invalid(
            "password",
            format!("it has {n} bytes; use at least {MIN_PASSWORD_BYTES}"),
        ));
    }
    if n > MAX_PASSWORD_BYTES {
        return Err(Error::invalid(
            "password",
            format!("it has {n} bytes; use at most {MAX_PASSWORD_BYTES}"),
        ));
    }
    Ok(())
}

/// The algorithm and cost parameters a stored hash records, never the hash itself:
/// `("argon2id", "m=19456,t=2,p=1")`, `("bcrypt", "cost=12")`.
pub(crate) fn scheme(phc: &str) -> (String, String) {
    if let Some(rest) = ["$2a$", "$2b$", "$2y$"]
        .iter()
        .find_map(|p| phc.strip_prefix(p))
    {
        return (
            "bcrypt".into(),
            format!("cost={}", rest.get(..2).unwrap_or("?")),
        );
    }
    match PasswordHash::new(phc) {
        Ok(h) => {
            let params: Vec<String> = h
                .params
                .iter()
                .map(|(k, v)| format!("{}={}", k.as_str(), v.as_str()))
                .collect();
            (h.algorithm.as_str().to_string(), params.join(","))
        }
        Err(_) => ("unknown".into(), String::new()),
    }
}

/// Hashes and verifies passwords with the configured parameters.
#[derive(Debug)]
pub(crate) struct Passwords {
    params: argon2::Params,
    // A PHC string with the configured parameters and an arbitrary salt and output: verifying
    // against it costs one real hash, and building it costs none.
    dummy: String,
}

impl Passwords {
    pub(crate) fn new(p: PasswordParams) -> Result<Self> {
        let params = argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, None)
            .map_err(|e| Error::invalid("password parameters", e.to_string()))?;
        let dummy = format!(
            "$argon2id$v=19$m={},t={},p={}$cmVka2VlcC10aW1pbmc$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            p.memory_kib, p.iterations, p.parallelism
        );
        Ok(Passwords { params, dummy })
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// A PHC string for `password`, after checking its length.
    pub(crate) fn hash(&self, password: &str) -> Result<String> {
        validate_password(password)?;
        self.argon2()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| Error::invalid("password", format!("cannot hash it: {e}")))
    }

    /// Whether `password` matches `phc`. A malformed hash never matches. argon2's verifier
    /// compares the outputs in constant time.
    pub(crate) fn verify(&self, password: &str, phc: &str) -> bool {
        if password.len() > MAX_PASSWORD_BYTES {
            self.burn();
            return false;
        }
        match PasswordHash::new(phc) {
            Ok(parsed) => self
                .argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        }
    }

    /// Whether `phc` was made with other parameters or algorithm than the configured ones.
    pub(crate) fn needs_rehash(&self, phc: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else {
            return true;
        };
        if parsed.algorithm.as_str() != "argon2id" {
            return true;
        }
        match argon2::Params::try_from(&parsed) {
            Ok(p) => {
                p.m_cost() != self.params.m_cost()
                    || p.t_cost() != self.params.t_cost()
                    || p.p_cost() != self.params.p_cost()
            }
            Err(_) => true,
        }
    }

    /// Does the work of one verification against a throwaway hash, so an unknown account
    /// costs the same time as a known one.
    pub(crate) fn burn(&self) {
        let _ = self.verify("not-the-password", &self.dummy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_detect_parameter_changes() {
        let fast = Passwords::new(PasswordParams::INSECURE_FAST).unwrap();
        let phc = fast.hash("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(fast.verify("correct horse", &phc));
        assert!(!fast.verify("wrong horse!", &phc));
        assert!(!fast.needs_rehash(&phc));
        let other = Passwords::new(PasswordParams {
            memory_kib: 16,
            ..PasswordParams::INSECURE_FAST
        })
        .unwrap();
        assert!(other.needs_rehash(&phc));
        assert!(other.verify("correct horse", &phc));
        assert!(!fast.verify("x", "not a phc string"));
        // The equaliser's string parses, so it costs a real verification.
        assert!(PasswordHash::new(&fast.dummy).is_ok());
    }

    #[test]
    fn length_rules_hold() {
        assert!(validate_password("1234567").is_err());
        assert!(validate_password("12345678").is_ok());
        assert!(validate_password(&"x".repeat(1024)).is_ok());
        assert!(validate_password(&"x".repeat(1025)).is_err());
    }
}
