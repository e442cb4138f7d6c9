//! Policy files → one immutable [`Policy`].
//!
//! Each source is parsed on its own (serde, `deny_unknown_fields`, duplicate keys refused), then
//! merged: users from all files into one table (a name defined twice is an error naming both
//! places), the `anonymous` switch from whichever file sets it (two files disagreeing is an
//! error). Names and password hashes are validated here, once, so authentication never meets a
//! malformed entry. Deny by default: no files, or files without users and without
//! `anonymous: true`, compile to a policy that admits nobody. Pure: sources arrive as text.
//!
//! The raw file types keep one field per top-level key; later keys (acl, network, limits, bans)
//! are added as new `Option` fields with their own compile step.
//!
//! A `password_file:` names a mosquitto_passwd file relative to the policy file. This module
//! never reads it: [`password_files`] says which files a policy needs, `ops::load` reads them,
//! and [`compile_with_files`] gets their text (errors name the password file and line).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHashString};
use argon2::Params;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::authn::{check_identity_name, check_name};
use super::client_id::{BindKind, ClientIdRule, TemplateError};
use super::decision::RuleRef;
use super::error::{PolicyError, PolicyErrorKind, PolicySource};
use super::guard;
use super::mosquitto;
use super::{AnonymousSetting, Policy, Secret, User};
use crate::config::{from_yaml, quoted, Position, SourceLocation};

/// Largest argon2 memory cost accepted (KiB): 256 MiB per attempt is already a lot of RAM when
/// many clients connect at once; higher settings turn logins into a memory exhaustion attack.
const MAX_M_COST: u32 = 256 * 1024;
/// argon2 memory cost (KiB) above which a hash gets a warning: each verification worker keeps
/// memory for the policy's largest hash (`src/authn/`), so this is paid once per core.
const LARGE_M_COST: usize = 64 * 1024;
/// Largest argon2 time cost accepted.
const MAX_T_COST: u32 = 16;
/// Largest argon2 parallelism accepted.
const MAX_P_COST: u32 = 16;

/// One policy file as serde sees it.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawPolicyFile {
    /// Whether clients without credentials get in (as `anonymous`).
    #[schemars(with = "Option<bool>")]
    anonymous: Option<Spanned<bool>>,
    /// Password and certificate users (`users:` left empty means none).
    users: Option<Vec<RawUser>>,
    // --- identity (issue 3): a mosquitto password file and client-id binding ---
    /// A mosquitto_passwd file, relative to this policy file, whose users join the policy.
    #[schemars(with = "Option<String>")]
    password_file: Option<Spanned<String>>,
    /// How client identifiers are bound to identities.
    #[schemars(with = "Option<RawClientId>")]
    client_id: Option<Spanned<RawClientId>>,

    // --- topic ACLs (issue 4) ---
    /// Topic rules, first match wins across files in load order (`acl:`).
    acl: Option<Vec<super::acl::compile::RawRule>>,
    /// Expected decisions `moat check` runs (`tests:`).
    tests: Option<Vec<super::acl::compile::RawCase>>,
    /// What a subscription overlapping denied topics gets (one value across files).
    #[schemars(with = "Option<super::acl::SubscribeOverlap>")]
    subscribe_overlap: Option<Spanned<super::acl::SubscribeOverlap>>,

    // --- network guard (`guard/`): addresses, bans, limits ---
    /// `network: { allow, deny, listeners }`.
    network: Option<guard::RawNetwork>,
    /// Static bans.
    bans: Option<Vec<guard::RawBan>>,
    /// Automatic ban triggers (one file only).
    #[schemars(with = "Option<guard::RawAutoBan>")]
    auto_ban: Option<Spanned<guard::RawAutoBan>>,
    /// Connection and session limits (one file only).
    #[schemars(with = "Option<guard::RawLimits>")]
    limits: Option<Spanned<guard::RawLimits>>,
    // --- end network guard ---
}

/// `client_id:` — exactly one of the two templates.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawClientId {
    must_equal: Option<String>,
    must_start_with: Option<String>,
}

/// `users[]`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawUser {
    #[schemars(with = "String")]
    name: Spanned<String>,
    #[schemars(with = "Option<String>")]
    password: Option<Spanned<String>>,
    #[schemars(with = "Option<Vec<String>>")]
    groups: Option<Vec<Spanned<String>>>,
}

/// The JSON Schema of one policy file, from the types the compiler reads it into.
pub fn schema() -> schemars::Schema {
    schemars::schema_for!(RawPolicyFile)
}

/// Compiles policy sources, in order, into one policy. Zero sources give a policy that admits
/// nobody. A policy that names a `password_file:` needs [`compile_with_files`].
pub fn compile(sources: &[PolicySource]) -> Result<Policy, PolicyError> {
    compile_with_files(sources, &[])
}

/// Compiles policy sources with the text of the password files they name ([`password_files`]).
pub fn compile_with_files(
    sources: &[PolicySource],
    files: &[PolicySource],
) -> Result<Policy, PolicyError> {
    let mut merged = Merged::default();
    for source in sources {
        merged.files.push(source.path.clone());
        if let Some(raw) = parse(source)? {
            merged.add(source, files, raw)?;
        }
    }
    Ok(merged.finish())
}

/// The password files the sources name, resolved against each policy file's folder, in order.
pub fn password_files(sources: &[PolicySource]) -> Result<Vec<PathBuf>, PolicyError> {
    let mut paths = Vec::new();
    for source in sources {
        if let Some(file) = parse(source)?.and_then(|raw| raw.password_file) {
            paths.push(resolve(source, &file.value));
        }
    }
    Ok(paths)
}

fn parse(source: &PolicySource) -> Result<Option<RawPolicyFile>, PolicyError> {
    from_yaml(&source.text)
        .map_err(|(position, message)| error(source, position, PolicyErrorKind::Yaml(message)))
}

/// A path written in `source`, relative to its folder.
fn resolve(source: &PolicySource, path: &str) -> PathBuf {
    match source.path.parent() {
        Some(dir) => dir.join(path),
        None => PathBuf::from(path),
    }
}

/// The policy being assembled, with the places things were first defined.
#[derive(Default)]
struct Merged {
    files: Vec<PathBuf>,
    /// Users in definition order, with the place each name was defined.
    users: Vec<(String, User, SourceLocation)>,
    index: HashMap<String, usize>,
    anonymous: Option<(bool, SourceLocation, RuleRef)>,
    /// The `client_id:` rule and where it was set.
    client_id: Option<(ClientIdRule, SourceLocation)>,
    /// Warnings for `moat check` and the log.
    warnings: Vec<String>,
    /// ACL rules and policy test cases, in file order (topic ACLs).
    acl: super::acl::compile::AclBuilder,
    /// Network guard sections (`guard/`).
    guard: guard::GuardMerged,
}

// === impl Merged ===

impl Merged {
    fn add(
        &mut self,
        source: &PolicySource,
        files: &[PolicySource],
        raw: RawPolicyFile,
    ) -> Result<(), PolicyError> {
        let file: Arc<str> = source.path.display().to_string().into();
        if let Some(anonymous) = raw.anonymous {
            self.set_anonymous(source, &file, &anonymous)?;
        }
        let guard = guard::RawGuard {
            network: raw.network,
            bans: raw.bans,
            auto_ban: raw.auto_ban,
            limits: raw.limits,
        };
        self.guard.add(source, guard)?;
        for raw_user in raw.users.unwrap_or_default() {
            let user = compile_user(source, &file, &raw_user)?;
            let here = SourceLocation::new(&source.path, Position::of_spanned(&raw_user.name));
            let kib = user.password.as_ref().map_or(0, Secret::memory_blocks);
            if kib > LARGE_M_COST {
                self.warnings.push(format!(
                    "{here}: the password hash of user {} needs {} MiB per verification; moat keeps that much for each password verifier (one per core) for as long as it runs",
                    quoted(&raw_user.name.value),
                    kib / 1024
                ));
            }
            self.add_user(raw_user.name.value, user, here)?;
        }
        if let Some(path) = raw.password_file {
            self.add_password_file(source, files, &path)?;
        }
        if let Some(rule) = raw.client_id {
            self.set_client_id(source, &file, &rule)?;
        }
        // Topic ACLs: rules and test cases, in file order.
        self.acl
            .add(source, &file, raw.acl, raw.tests, raw.subscribe_overlap)?;
        Ok(())
    }

    /// Adds a user; a name already defined is an error, except that one definition without a
    /// password and one with may meet (groups under `users:`, password from a password file).
    fn add_user(
        &mut self,
        name: String,
        user: User,
        here: SourceLocation,
    ) -> Result<(), PolicyError> {
        let Some(&i) = self.index.get(&name) else {
            self.index.insert(name.clone(), self.users.len());
            self.users.push((name, user, here));
            return Ok(());
        };
        let Some(first) = self.users.get_mut(i) else {
            return Ok(()); // the index only holds positions of `users`
        };
        let from_passwd = |u: &User| u.rule.label.starts_with("password file");
        let mergeable = (first.1.password.is_none() && from_passwd(&user))
            || (user.password.is_none() && from_passwd(&first.1));
        if !mergeable {
            let kind = if from_passwd(&user) || from_passwd(&first.1) {
                PolicyErrorKind::DuplicatePasswordUser {
                    name: quoted(&name),
                    first: first.2.clone(),
                }
            } else {
                PolicyErrorKind::DuplicateUser {
                    name: quoted(&name),
                    first: first.2.clone(),
                }
            };
            return Err(PolicyError { at: here, kind });
        }
        // The `users:` entry keeps its rule and groups; the password file gives the password.
        if user.password.is_some() {
            first.1.password = user.password;
        } else {
            first.1.groups = user.groups;
            first.1.rule = user.rule;
            first.2 = here;
        }
        Ok(())
    }

    fn add_password_file(
        &mut self,
        source: &PolicySource,
        files: &[PolicySource],
        path: &Spanned<String>,
    ) -> Result<(), PolicyError> {
        let resolved = resolve(source, &path.value);
        let Some(passwd) = files.iter().find(|f| f.path == resolved) else {
            let kind =
                PolicyErrorKind::PasswordFileNotLoaded(quoted(&resolved.display().to_string()));
            return Err(error(source, Position::of_spanned(path), kind));
        };
        let users = mosquitto::parse(&passwd.text).map_err(|e| PolicyError {
            at: SourceLocation::new(
                &passwd.path,
                Position {
                    line: e.line,
                    column: 1,
                },
            ),
            kind: PolicyErrorKind::PasswordFile(e.error),
        })?;
        let file: Arc<str> = passwd.path.display().to_string().into();
        for u in users {
            let here = SourceLocation::new(
                &passwd.path,
                Position {
                    line: u.line,
                    column: 1,
                },
            );
            if u.hash.is_weak() {
                self.warnings.push(format!(
                    "{here}: user {} has a $6$ (single SHA-512) hash, which is fast to brute-force; re-hash it with `mosquitto_passwd` (default $7$) or `moat passwd`",
                    quoted(&u.name)
                ));
            }
            let user = User {
                groups: Vec::new(),
                password: Some(Secret::Mosquitto(u.hash)),
                rule: RuleRef::at(
                    file.clone(),
                    u.line,
                    format!("password file user {}", u.name),
                ),
            };
            self.add_user(u.name, user, here)?;
        }
        Ok(())
    }

    fn set_client_id(
        &mut self,
        source: &PolicySource,
        file: &Arc<str>,
        raw: &Spanned<RawClientId>,
    ) -> Result<(), PolicyError> {
        let position = Position::of_spanned(raw);
        let here = SourceLocation::new(&source.path, position);
        if let Some((_, first)) = &self.client_id {
            let kind = PolicyErrorKind::ConflictingClientId {
                first: first.clone(),
            };
            return Err(PolicyError { at: here, kind });
        }
        let (kind, template) = match (&raw.value.must_equal, &raw.value.must_start_with) {
            (Some(t), None) => (BindKind::Equal, t),
            (None, Some(t)) => (BindKind::StartWith, t),
            _ => {
                let kind = PolicyErrorKind::ClientIdTemplate(TemplateError::OneOf);
                return Err(PolicyError { at: here, kind });
            }
        };
        let rule = ClientIdRule::new(kind, template, file.clone(), position.line)
            .map_err(|e| error(source, position, PolicyErrorKind::ClientIdTemplate(e)))?;
        self.client_id = Some((rule, here));
        Ok(())
    }

    fn set_anonymous(
        &mut self,
        source: &PolicySource,
        file: &Arc<str>,
        value: &Spanned<bool>,
    ) -> Result<(), PolicyError> {
        let position = Position::of_spanned(value);
        match &self.anonymous {
            Some((other, first, _)) if *other != value.value => {
                let kind = PolicyErrorKind::ConflictingAnonymous {
                    value: value.value,
                    other: *other,
                    first: first.clone(),
                };
                Err(error(source, position, kind))
            }
            Some(_) => Ok(()),
            None => {
                let label = format!("anonymous: {}", value.value);
                let rule = RuleRef::at(file.clone(), position.line, label);
                let here = SourceLocation::new(&source.path, position);
                self.anonymous = Some((value.value, here, rule));
                Ok(())
            }
        }
    }

    fn finish(self) -> Policy {
        let decoy = self
            .users
            .iter()
            .find_map(|(_, user, _)| user.password.clone())
            .or_else(builtin_decoy);
        let anonymous = match self.anonymous {
            Some((allowed, _, rule)) => AnonymousSetting { allowed, rule },
            None => AnonymousSetting::default(),
        };
        let (acl, cases) = self.acl.finish();
        Policy {
            users: self
                .users
                .into_iter()
                .map(|(name, user, _)| (name, user))
                .collect(),
            anonymous,
            files: self.files,
            decoy,
            client_id: self.client_id.map(|(rule, _)| rule),
            warnings: self.warnings,
            acl,
            cases,
            guard: self.guard.finish(),
            shadow: None,
        }
    }
}

fn compile_user(
    source: &PolicySource,
    file: &Arc<str>,
    raw: &RawUser,
) -> Result<User, PolicyError> {
    let name = &raw.name.value;
    if let Err(reason) = check_identity_name(name) {
        let kind = PolicyErrorKind::InvalidUserName {
            name: quoted(name),
            reason,
        };
        return Err(error(source, Position::of_spanned(&raw.name), kind));
    }
    let raw_groups = raw.groups.as_deref().unwrap_or_default();
    let mut groups: Vec<String> = Vec::with_capacity(raw_groups.len());
    for group in raw_groups {
        if let Err(reason) = check_name(&group.value) {
            let kind = PolicyErrorKind::InvalidGroupName {
                user: quoted(name),
                group: quoted(&group.value),
                reason,
            };
            return Err(error(source, Position::of_spanned(group), kind));
        }
        if !groups.contains(&group.value) {
            groups.push(group.value.clone());
        }
    }
    let password = match &raw.password {
        None => None,
        Some(hash) => Some(Secret::Argon2(
            parse_hash(name, &hash.value)
                .map_err(|kind| error(source, Position::of_spanned(hash), kind))?,
        )),
    };
    let line = Position::of_spanned(&raw.name).line;
    Ok(User {
        groups,
        password,
        rule: RuleRef::at(file.clone(), line, format!("user {name}")),
    })
}

/// Accepts an argon2id PHC string whose parameters argon2 accepts and whose cost is bounded.
fn parse_hash(user: &str, text: &str) -> Result<PasswordHashString, PolicyErrorKind> {
    let invalid = |reason: String| PolicyErrorKind::InvalidPasswordHash {
        user: quoted(user),
        reason,
    };
    let hash = PasswordHash::new(text.trim()).map_err(|err| invalid(err.to_string()))?;
    if hash.algorithm.as_str() != "argon2id" {
        let reason = format!("algorithm is {}", quoted(hash.algorithm.as_str()));
        return Err(invalid(reason));
    }
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err(invalid("salt or hash missing".to_owned()));
    }
    let params = Params::try_from(&hash).map_err(|err| invalid(err.to_string()))?;
    let (m, t, p) = (params.m_cost(), params.t_cost(), params.p_cost());
    if m > MAX_M_COST || t > MAX_T_COST || p > MAX_P_COST {
        let user = quoted(user);
        return Err(PolicyErrorKind::PasswordTooExpensive { user, m, t, p });
    }
    Ok(hash.serialize())
}

/// Decoy hash for timing equalisation when no user has a password (argon2 0.5 defaults; the
/// password behind it is irrelevant because a decoy match never admits anyone). `None` only if
/// the constant stopped parsing, which a test rules out.
pub(super) fn builtin_decoy() -> Option<Secret> {
    const DECOY: &str = "$argon2id$v=19$m=19456,t=2,p=1$NTpGVpQQpyNwv6e9kQK6fA$FrESIa/YTgax3DcxiKuHT4aRqbiAmnhh2vk1MlVhC0w";
    PasswordHashString::new(DECOY).ok().map(Secret::Argon2)
}

fn error(source: &PolicySource, position: Position, kind: PolicyErrorKind) -> PolicyError {
    PolicyError {
        at: SourceLocation::new(&source.path, position),
        kind,
    }
}
