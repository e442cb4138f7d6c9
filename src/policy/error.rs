//! What can be wrong in a policy file, and where: [`PolicyError`] names the file, line and
//! column; [`PolicyErrorKind`] says what, with focused sub-enums for the sections compiled on
//! their own ([`AclError`] for `acl:` and `tests:`, [`GuardErrorKind`] for `network:`, `bans:`,
//! `auto_ban:` and `limits:`).
//!
//! Why it is separate: `compile.rs`, `acl/compile.rs` and `guard/` all build these errors; with
//! the types here they depend on this file instead of on each other. It must not decide anything:
//! it only names mistakes.

use std::path::PathBuf;

use super::authn::NameError;
use super::client_id::TemplateError;
use super::mosquitto::PasswdError;
use crate::config::SourceLocation;

/// One policy file's text and the path it is named by in errors and rule references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    /// Path as the operator named it (relative paths stay relative).
    pub path: PathBuf,
    /// The file's contents.
    pub text: String,
}

/// An error in a policy file: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {kind}")]
pub struct PolicyError {
    /// File, line and column of the offending value.
    pub at: SourceLocation,
    /// What was wrong.
    pub kind: PolicyErrorKind,
}

/// What was wrong in a policy file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyErrorKind {
    /// The YAML itself: syntax, wrong type, unknown or duplicate key, missing field, budget.
    #[error("{0}")]
    Yaml(String),
    /// A user name that cannot be an identity.
    #[error("invalid user name {name}: {reason}")]
    InvalidUserName {
        /// The name, quoted.
        name: String,
        /// What is wrong with it.
        reason: NameError,
    },
    /// A group name that cannot be used in rules.
    #[error("invalid group name {group} for user {user}: {reason}")]
    InvalidGroupName {
        /// The user, quoted.
        user: String,
        /// The group, quoted.
        group: String,
        /// What is wrong with it.
        reason: NameError,
    },
    /// The same user name twice (in one file or across files).
    #[error("duplicate user {name}, first defined at {first}: each user may be defined once")]
    DuplicateUser {
        /// The name, quoted.
        name: String,
        /// Where it was first defined.
        first: SourceLocation,
    },
    /// Not a usable argon2id PHC string.
    #[error("the password of user {user} is not a valid argon2id hash ({reason}): expected a PHC string such as '$argon2id$v=19$m=19456,t=2,p=1$SALT$HASH', as printed by `moat passwd`")]
    InvalidPasswordHash {
        /// The user, quoted.
        user: String,
        /// What is wrong with the hash (never the hash itself).
        reason: String,
    },
    /// Argon2 parameters so high that each login attempt becomes a denial-of-service lever.
    #[error("the password hash of user {user} is too expensive to verify (m={m}, t={t}, p={p}): expected m at most 262144 (256 MiB), t at most 16, p at most 16")]
    PasswordTooExpensive {
        /// The user, quoted.
        user: String,
        /// Memory cost in KiB.
        m: u32,
        /// Time cost (iterations).
        t: u32,
        /// Parallelism.
        p: u32,
    },
    // --- identity (issue 3) ---
    /// A line of a mosquitto password file (the error's location is that file and line).
    #[error("{0}")]
    PasswordFile(PasswdError),
    /// A `password_file:` whose text was not handed to the compiler (a bug in the caller, or a
    /// file that disappeared between reading the policy and reading it).
    #[error("password file {0} was not loaded")]
    PasswordFileNotLoaded(String),
    /// A password-file user also defined elsewhere with a password.
    #[error("user {name} is also defined at {first} with a password: each user has one password (a user under users: without a password may take its password from a password file)")]
    DuplicatePasswordUser {
        /// The name, quoted.
        name: String,
        /// The other definition.
        first: SourceLocation,
    },
    /// A bad `client_id:` template.
    #[error("client_id: {0}")]
    ClientIdTemplate(TemplateError),
    /// Two files set `client_id:`.
    #[error("client_id is also set at {first}: set it in one file only")]
    ConflictingClientId {
        /// Where it was set first.
        first: SourceLocation,
    },
    /// An ACL rule or a policy test case (`acl:`, `tests:`).
    #[error("{0}")]
    Acl(AclError),
    /// A `network:`, `bans:`, `auto_ban:` or `limits:` value (see `guard/`).
    #[error(transparent)]
    Guard(#[from] GuardErrorKind),
    /// Two files set `anonymous` differently.
    #[error("anonymous is {value} here but {other} at {first}: set it in one file only")]
    ConflictingAnonymous {
        /// The value here.
        value: bool,
        /// The value set first.
        other: bool,
        /// Where it was set first.
        first: SourceLocation,
    },
}

/// What was wrong in a guard section.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardErrorKind {
    /// Not an address or CIDR network.
    #[error(
        "{field}: {found} is not an IP address or CIDR network (e.g. 10.0.0.0/8, 2001:db8::/32)"
    )]
    InvalidNetwork {
        /// The key.
        field: &'static str,
        /// The value, quoted.
        found: String,
    },
    /// A value that did not parse.
    #[error("{field}: {found} is not valid: {reason}")]
    Invalid {
        /// The key.
        field: &'static str,
        /// The value, quoted.
        found: String,
        /// What was expected.
        reason: String,
    },
    /// A number outside its range.
    #[error("{field}: {found} is out of range: expected {expected}")]
    OutOfRange {
        /// The key.
        field: &'static str,
        /// The value.
        found: String,
        /// The range.
        expected: &'static str,
    },
    /// `limits:` or `auto_ban:` in two files.
    #[error("{section} is also set at {first}: set it in one file only")]
    DuplicateSection {
        /// The section.
        section: &'static str,
        /// Where it was set first.
        first: SourceLocation,
    },
    /// A ban names zero or several targets.
    #[error("a ban needs exactly one of address, username or client_id")]
    BanTarget,
}

/// What is wrong with an ACL rule or a policy test case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AclError {
    /// Neither or both of `allow` and `deny`.
    #[error("a rule needs exactly one of 'allow' or 'deny'")]
    Verdict,
    /// An action word that is not one.
    #[error("unknown action {0}: expected publish, subscribe, receive or all")]
    UnknownAction(String),
    /// `allow: []`.
    #[error("a rule needs at least one action")]
    NoAction,
    /// `topics: []`.
    #[error("a rule needs at least one topic filter in 'topics'")]
    NoTopics,
    /// Not a valid MQTT topic filter.
    #[error("invalid topic filter {filter}: {reason}")]
    Filter {
        /// The filter, quoted.
        filter: String,
        /// What is wrong.
        reason: String,
    },
    /// `{…}` that is not a whole-level placeholder moat knows.
    #[error("invalid placeholder in {filter}: a placeholder is a whole level, one of {{username}}, {{client_id}}, {{cert.cn}}")]
    Placeholder {
        /// The filter, quoted.
        filter: String,
    },
    /// `$share/…` in a rule.
    #[error("{0}: rules name the filter inside $share/{{group}}/…; restrict share names with 'share_groups'")]
    SharedInRule(String),
    /// Not an address or network.
    #[error("invalid source {0}: expected an address or a network such as 10.0.0.0/8")]
    Source(String),
    /// `max_qos` above 2.
    #[error("max_qos {0} is not a QoS: expected 0, 1 or 2")]
    MaxQos(u8),
    /// A condition on a deny rule.
    #[error("'{0}' is a condition of allow rules: a deny rule refuses whatever it matches")]
    ConditionOnDeny(&'static str),
    /// `share_groups` on a rule that is not subscribe-only.
    #[error(
        "'share_groups' restricts subscriptions: use it on a rule whose only action is subscribe"
    )]
    ShareGroupsNotSubscribe,
    /// A name in users/groups/certs/listeners/share_groups that cannot be one.
    #[error("invalid name {name} in '{list}': {reason}")]
    Name {
        /// Which list.
        list: &'static str,
        /// The name, quoted.
        name: String,
        /// What is wrong.
        reason: NameError,
    },
    /// A policy test case that cannot be run.
    #[error("policy test: {0}")]
    Case(String),
    /// `subscribe_overlap` on a rule it means nothing for.
    #[error("'subscribe_overlap' is a setting of deny rules that cover subscribe: it says whether a filter that also matches the topics they deny is refused (strict) or granted with those topics withheld at delivery (withhold)")]
    OverlapNotDenySubscribe,
    /// Two files set `subscribe_overlap` differently.
    #[error("subscribe_overlap is {value} here but {other} at {first}: set it in one file only")]
    ConflictingOverlap {
        /// The value here.
        value: super::acl::SubscribeOverlap,
        /// The value set first.
        other: super::acl::SubscribeOverlap,
        /// Where it was set first.
        first: SourceLocation,
    },
}
