//! A stored password hash checked against a presented password, in memory the caller owns.
//!
//! argon2 needs `m_cost` KiB of working memory per verification (19 MiB for the default
//! parameters). Allocating it per attempt let a wrong-password flood grow the process by
//! gigabytes: glibc keeps freed blocks in per-thread arenas (issue 13). Here the memory is a
//! [`HashMemory`] that its owner (one verification worker) allocates once and hands to every
//! verification; the PHC string gives the parameters, salt and output length, and the result
//! is compared in constant time. mosquitto `$7$`/`$6$` hashes need no such memory.
//!
//! Pure: no threads, no clock. It allocates only when a hash needs more memory than the caller
//! owns, which compile-time limits bound (`policy/compile.rs`: m at most 256 MiB).

use argon2::password_hash::PasswordHashString;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;

use super::{Policy, Secret};

/// Longest argon2 output a PHC string can carry (`password_hash::Output::MAX_LENGTH`).
const MAX_OUTPUT: usize = 64;
/// Longest salt a PHC string can carry, decoded (`password_hash::Salt::MAX_LENGTH` is 64 B64
/// characters, 48 bytes).
const MAX_SALT: usize = 64;

/// argon2 working memory, owned by whoever runs verifications and reused by each of them.
#[derive(Default)]
pub struct HashMemory {
    /// argon2's 1 KiB blocks; as many as the largest hash verified in it needed.
    blocks: Vec<Block>,
}

// === impl HashMemory ===

impl HashMemory {
    /// Memory for hashes that need at most `blocks` KiB, allocated (and written) now.
    pub fn with_blocks(blocks: usize) -> Self {
        let mut memory = Self::default();
        memory.at_least(blocks);
        memory
    }

    /// How many 1 KiB blocks this memory holds.
    pub fn blocks(&self) -> usize {
        self.blocks.len()
    }

    /// At least `blocks` blocks: grows (never shrinks) when a hash needs more than is held.
    fn at_least(&mut self, blocks: usize) -> &mut [Block] {
        if self.blocks.len() < blocks {
            // Freed before the larger one is taken, so the peak is the new size, not both.
            self.blocks = Vec::new();
            self.blocks = vec![Block::new(); blocks];
        }
        &mut self.blocks
    }
}

impl std::fmt::Debug for HashMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HashMemory({} KiB)", self.blocks.len())
    }
}

// === impl Secret ===

impl Secret {
    /// Whether `password` matches, using (and if need be growing) `memory`.
    pub(super) fn verify(&self, password: &[u8], memory: &mut HashMemory) -> bool {
        match self {
            Secret::Argon2(phc) => verify_argon2(phc, password, memory),
            Secret::Mosquitto(m) => m.verify(password),
        }
    }

    /// argon2 blocks (KiB) one verification against this hash needs (0 for mosquitto hashes).
    pub(super) fn memory_blocks(&self) -> usize {
        match self {
            Secret::Argon2(phc) => argon2_params(phc).map_or(0, |(_, _, p)| p.block_count()),
            Secret::Mosquitto(_) => 0,
        }
    }
}

// === impl Policy (password memory) ===

impl Policy {
    /// argon2 blocks (KiB) that one verification worker needs for every hash of this policy,
    /// the decoy included: size [`HashMemory`] with it.
    pub fn password_memory_blocks(&self) -> usize {
        self.users
            .values()
            .filter_map(|user| user.password.as_ref())
            .chain(self.decoy.as_ref())
            .map(Secret::memory_blocks)
            .max()
            .unwrap_or(0)
    }
}

/// Algorithm, version and parameters (output length included) recorded in a PHC string.
fn argon2_params(phc: &PasswordHashString) -> Option<(Algorithm, Version, Params)> {
    let hash = phc.password_hash();
    let algorithm = Algorithm::try_from(hash.algorithm).ok()?;
    let version = match hash.version {
        Some(v) => Version::try_from(v).ok()?,
        None => Version::default(),
    };
    let params = Params::try_from(&hash).ok()?;
    Some((algorithm, version, params))
}

/// What `PasswordVerifier::verify_password` does, with the caller's memory instead of a fresh
/// allocation per call.
fn verify_argon2(phc: &PasswordHashString, password: &[u8], memory: &mut HashMemory) -> bool {
    let hash = phc.password_hash();
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let Some((algorithm, version, params)) = argon2_params(phc) else {
        return false;
    };
    let mut salt_buf = [0u8; MAX_SALT];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out_buf = [0u8; MAX_OUTPUT];
    let Some(out) = out_buf.get_mut(..expected.len()) else {
        return false;
    };
    let blocks = memory.at_least(params.block_count());
    let argon2 = Argon2::new(algorithm, version, params);
    if argon2
        .hash_password_into_with_memory(password, salt, out, blocks)
        .is_err()
    {
        return false;
    }
    bool::from(out.ct_eq(expected.as_bytes()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic
mod tests {
    use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};

    use super::*;

    fn phc(password: &str, m: u32, t: u32, out: usize) -> PasswordHashString {
        let salt = SaltString::encode_b64(b"memory-test-salt").unwrap();
        let params = Params::new(m, t, 1, Some(out)).unwrap();
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .serialize()
    }

    #[test]
    fn reused_memory_gives_the_same_answers_as_the_crate_verifier() {
        let mut memory = HashMemory::with_blocks(64);
        for (m, t, out) in [(64, 1, 32), (128, 2, 16), (64, 3, 64), (96, 1, 10)] {
            let secret = Secret::Argon2(phc("right", m, t, out));
            for attempt in ["right", "wrong", "", "right "] {
                let Secret::Argon2(ref s) = secret else {
                    unreachable!()
                };
                let expected = Argon2::default()
                    .verify_password(attempt.as_bytes(), &s.password_hash())
                    .is_ok();
                assert_eq!(
                    secret.verify(attempt.as_bytes(), &mut memory),
                    expected,
                    "m={m} t={t} out={out} {attempt:?}"
                );
            }
        }
        // Grown once to the largest hash, never shrunk.
        assert_eq!(memory.blocks(), 128);
    }

    #[test]
    fn memory_blocks_follow_the_largest_hash_and_the_decoy() {
        let secret = Secret::Argon2(phc("x", 2048, 1, 32));
        assert_eq!(secret.memory_blocks(), 2048);
        // A policy without users still needs memory for the built-in decoy (m=19456).
        assert_eq!(Policy::deny_all().password_memory_blocks(), 19456);
    }
}
