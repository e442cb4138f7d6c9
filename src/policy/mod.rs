//! Policy: *who* may connect (networks, bans, users), what they may do (topic ACLs) and how much
//! (limits). Pure decisions, no I/O.
//!
//! Policy files (`policies/*.yaml`) compile ([`compile`]) into one immutable [`Policy`] snapshot
//! that is `Send + Sync` and cheap to share in an `Arc`: a reload builds a new snapshot and swaps
//! the pointer, so a decision never sees half a policy. Every decision names the rule that made
//! it ([`RuleRef`]). Deny by default: an empty policy admits nobody.
//!
//! This module never touches files, sockets or the clock; `ops::load` reads the files, and the
//! server's verification pool (`src/authn/`) runs the CPU-heavy password check that
//! [`Policy::begin_authentication`] hands it, in memory the pool keeps.

pub mod acl;
mod authn;
mod bans;
pub mod client_id;
mod compile;
mod decision;
mod error;
mod guard;
mod limits;
pub mod mosquitto;
mod network;
mod password;
pub mod shadow;

#[cfg(test)]
mod identity_tests;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use argon2::password_hash::PasswordHashString;

pub use acl::{
    AclCache, AclDecision, AclReason, Action, CaseOutcome, OverlapSetting, PolicyCase,
    PublishFacts, Subject, SubscribeOverlap,
};
pub use authn::{
    AuthnDecision, AuthnFailure, AuthnOptions, AuthnStep, Credentials, Identity, IdentitySource,
    NameError, PasswordCheck, ANONYMOUS,
};
pub use bans::{AutoBanRule, AutoBanSettings, BanTarget, StaticBan};
pub use compile::{compile, compile_with_files, password_files, schema};
pub use decision::{Decision, RuleRef, Verdict};
pub use error::{GuardErrorKind, PolicyError, PolicyErrorKind, PolicySource};
pub use limits::{Bucket, ClientLimits, ConnectionLimits, OnExceed, Rate};
pub use network::{source_key, NetworkSummary};
pub use password::HashMemory;

/// One compiled, immutable policy snapshot.
pub struct Policy {
    /// Users by name.
    users: HashMap<String, User>,
    /// Whether clients without credentials get in, and which rule says so.
    anonymous: AnonymousSetting,
    /// The files this snapshot was compiled from, in order.
    files: Vec<PathBuf>,
    /// A real hash to verify against when a name is unknown, so refusals cost the same time.
    decoy: Option<Secret>,
    // --- identity (issue 3) ---
    /// How client identifiers are bound to identities (`client_id:`), if at all.
    client_id: Option<client_id::ClientIdRule>,
    /// Things that work but should be fixed (weak `$6$` hashes), for `moat check` and the log.
    warnings: Vec<String>,
    /// Topic rules, indexed (`acl:`).
    acl: acl::Acl,
    /// Expected decisions that `moat check` runs (`tests:`).
    cases: Vec<PolicyCase>,
    /// Network admission, bans and limits (`guard/`).
    guard: guard::Guard,
    /// The candidate set judged beside this one and never enforced (`shadow_policies:`,
    /// `shadow.rs`); `None` when moat.yaml names none, and always `None` in a shadow set.
    shadow: Option<std::sync::Arc<Policy>>,
}

/// One user entry.
struct User {
    /// Groups named in ACL rules.
    groups: Vec<String>,
    /// The password hash; `None` for certificate-only users.
    password: Option<Secret>,
    /// Where the user is defined.
    rule: RuleRef,
}

/// A stored password hash: moat's own argon2id, or one migrated from a mosquitto_passwd file.
#[derive(Clone)]
enum Secret {
    /// argon2id PHC string (`moat passwd`).
    Argon2(PasswordHashString),
    /// `$7$` / `$6$` from a `password_file:`.
    Mosquitto(mosquitto::MosquittoHash),
}

/// The `anonymous` switch and where it was set.
struct AnonymousSetting {
    allowed: bool,
    rule: RuleRef,
}

impl Default for AnonymousSetting {
    /// Deny by default.
    fn default() -> Self {
        Self {
            allowed: false,
            rule: RuleRef::builtin("default-deny"),
        }
    }
}

// === impl Policy ===

impl Policy {
    /// A policy that admits nobody (what zero policy files compile to).
    pub fn deny_all() -> Self {
        Self {
            users: HashMap::new(),
            anonymous: AnonymousSetting::default(),
            files: Vec::new(),
            decoy: compile::builtin_decoy(),
            client_id: None,
            warnings: Vec::new(),
            acl: acl::Acl::default(),
            cases: Vec::new(),
            guard: guard::Guard::default(),
            shadow: None,
        }
    }

    /// Whether `identity` may use `client_id` under the policy's `client_id:` rule (always, when
    /// there is none), and the rule that decided.
    pub fn check_client_id(&self, identity: &str, client_id: &str) -> Decision {
        match &self.client_id {
            Some(rule) => rule.check(identity, client_id),
            None => Decision::allow(RuleRef::builtin("client-id-unbound")),
        }
    }

    /// Warnings about the policy: it works, but something in it should be fixed.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The files this policy was compiled from, in order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Whether clients without credentials are admitted.
    pub fn anonymous_allowed(&self) -> bool {
        self.anonymous.allowed
    }

    /// Whether anyone can get in by password or anonymously. `false` means deny by default is
    /// all there is (certificate identities, when enabled in moat.yaml, may still connect).
    pub fn admits_anyone(&self) -> bool {
        !self.summary().admits_nobody()
    }

    /// Number of users.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Groups of a user, if the user exists.
    pub fn groups_of(&self, name: &str) -> Option<&[String]> {
        self.users.get(name).map(|user| user.groups.as_slice())
    }

    /// Counts for `moat check` and start-up logs.
    pub fn summary(&self) -> PolicySummary {
        let password_users = self
            .users
            .values()
            .filter(|user| user.password.is_some())
            .count();
        PolicySummary {
            files: self.files.len(),
            users: self.users.len(),
            password_users,
            anonymous: self.anonymous.allowed,
        }
    }
}

impl fmt::Debug for Policy {
    /// Lists names and settings, never password hashes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.users.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("Policy")
            .field("users", &names)
            .field("anonymous", &self.anonymous.allowed)
            .field(
                "files",
                &self
                    .files
                    .iter()
                    .map(PathBuf::as_path)
                    .collect::<Vec<&Path>>(),
            )
            .finish_non_exhaustive()
    }
}

/// What a policy contains, in numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicySummary {
    /// Policy files compiled.
    pub files: usize,
    /// Users defined.
    pub users: usize,
    /// Users with a password (the others can only log in with a certificate).
    pub password_users: usize,
    /// Whether anonymous clients are admitted.
    pub anonymous: bool,
}

// === impl PolicySummary ===

impl PolicySummary {
    /// No users and no anonymous access: only clients with a verified certificate, when the
    /// certificate CN is used as identity, can get in; otherwise nobody.
    pub fn admits_nobody(&self) -> bool {
        self.users == 0 && !self.anonymous
    }
}

impl fmt::Display for PolicySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        write!(
            f,
            "{} file{}, {} user{} ({} with a password), anonymous {}",
            self.files,
            plural(self.files),
            self.users,
            plural(self.users),
            self.password_users,
            if self.anonymous { "on" } else { "off" },
        )?;
        if self.admits_nobody() {
            write!(
                f,
                "; admits nobody by password or anonymously (deny by default)"
            )?;
        }
        Ok(())
    }
}
