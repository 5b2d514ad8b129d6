//! Who may log in to what: per-target ACLs (initiator names, source address ranges) and
//! CHAP credentials (per target, per ACL entry, and for discovery).
//!
//! This is the one place the access configuration lives. It is plain data with a small API
//! ([`AccessPolicy::check`], [`AccessPolicy::check_discovery`],
//! [`AccessPolicy::allowed_targets`], [`AccessPolicy::add_acl_entry`],
//! [`AccessPolicy::remove_acl_entry`], [`AccessPolicy::set_target`]) so that the login state
//! machine, SendTargets and, later, a control socket all use the same rules.
//!
//! Rules:
//! * A target absent from the policy, or present with an empty ACL and no CHAP, is open to
//!   every initiator (the daemon refuses such targets on non-loopback portals unless the
//!   operator opts in).
//! * A target with ACL entries admits only initiators that match one: the entry's initiator
//!   name (compared without regard to ASCII case) if it names one, and the connection's
//!   source address inside one of its networks if it lists any. The first matching entry
//!   decides.
//! * CHAP credentials of the matching entry win over the target's.
//! * Discovery sessions need the discovery credentials when they are set; SendTargets lists
//!   only the targets the initiator passes [`AccessPolicy::check`] for.
//! * Secrets are at least [`MIN_SECRET_LEN`] bytes, checked when a [`Credential`] is made,
//!   and no secret serves both to authenticate initiators and to authenticate the target
//!   (RFC 7143 9.2.1), checked by [`AccessPolicy::validate`].

use super::Secret;
use core::net::IpAddr;
use ipnet::IpNet;
use std::collections::BTreeMap;

/// Shortest CHAP secret accepted: 12 bytes (96 bits, RFC 7143 9.2.1).
pub const MIN_SECRET_LEN: usize = 12;

/// Longest CHAP secret accepted.
pub const MAX_SECRET_LEN: usize = 255;

/// A configuration mistake. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A secret outside [`MIN_SECRET_LEN`]..=[`MAX_SECRET_LEN`].
    #[error("the CHAP secret of user {user:?} has {len} bytes; it must have {MIN_SECRET_LEN} to {MAX_SECRET_LEN} (RFC 7143 asks for at least 96 bits)")]
    SecretLength {
        /// The user the secret belongs to.
        user: String,
        /// Its length.
        len: usize,
    },
    /// An empty or unprintable CHAP user name.
    #[error("CHAP user name {0:?} is empty or has characters other than printable ASCII")]
    BadUser(String),
    /// One secret configured to authenticate an initiator and the target.
    #[error("the CHAP secret of user {0:?} is also configured as a secret the target answers with; use different secrets for each direction (RFC 7143 9.2.1)")]
    SecretInBothDirections(String),
    /// An ACL change names a target the policy does not hold.
    #[error("no target {0:?}")]
    UnknownTarget(String),
}

/// A CHAP user name and its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    user: String,
    secret: Secret,
}

impl Credential {
    /// Checks the user name (printable ASCII, not empty) and the secret's length.
    pub fn new(user: impl Into<String>, secret: Secret) -> Result<Credential, PolicyError> {
        let user = user.into();
        if user.is_empty()
            || user.len() > 255
            || !user.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        {
            return Err(PolicyError::BadUser(user));
        }
        if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&secret.len()) {
            return Err(PolicyError::SecretLength {
                user,
                len: secret.len(),
            });
        }
        Ok(Credential { user, secret })
    }

    /// The user name (CHAP_N).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The secret.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }
}

/// CHAP for one target, ACL entry or discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChapCredentials {
    /// What the initiator must prove (its CHAP_N and secret).
    pub initiator: Credential,
    /// What the target answers with when the initiator asks it to authenticate itself
    /// (mutual CHAP). `None`: mutual CHAP is refused.
    pub target: Option<Credential>,
}

/// One ACL entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AclEntry {
    /// The initiator name it admits; `None` admits any name.
    pub initiator: Option<String>,
    /// Source address ranges it admits; empty admits any address.
    pub networks: Vec<IpNet>,
    /// CHAP credentials for initiators it admits, instead of the target's.
    pub chap: Option<ChapCredentials>,
}

impl AclEntry {
    /// True when `initiator` connecting from `addr` matches the entry. An unknown address
    /// matches only entries without networks.
    pub fn matches(&self, initiator: &str, addr: Option<IpAddr>) -> bool {
        let name_ok = self
            .initiator
            .as_deref()
            .is_none_or(|n| n.eq_ignore_ascii_case(initiator));
        let addr_ok = self.networks.is_empty()
            || addr.is_some_and(|a| {
                // A v4 client on a dual-stack socket shows as ::ffff:a.b.c.d.
                let a = a.to_canonical();
                self.networks.iter().any(|n| n.contains(&a))
            });
        name_ok && addr_ok
    }
}

/// Access rules of one target.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TargetAccess {
    /// Initiators admitted; empty admits all.
    pub acl: Vec<AclEntry>,
    /// CHAP every initiator must pass (unless its ACL entry has its own).
    pub chap: Option<ChapCredentials>,
}

impl TargetAccess {
    /// True when the target admits anyone without authentication.
    pub fn is_open(&self) -> bool {
        self.acl.is_empty() && self.chap.is_none()
    }
}

/// The outcome of an access check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Not admitted: Login status 0x0202 (authorization failure).
    Denied,
    /// Admitted, after CHAP with these credentials when `Some`.
    Granted(Option<ChapCredentials>),
}

/// Access rules of every target, and the discovery credentials.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccessPolicy {
    targets: BTreeMap<String, TargetAccess>,
    discovery_chap: Option<ChapCredentials>,
}

impl AccessPolicy {
    /// A policy with no rules: every target open, discovery without authentication.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the rules of `target`, replacing any.
    pub fn set_target(
        &mut self,
        target: impl Into<String>,
        access: TargetAccess,
    ) -> Result<(), PolicyError> {
        let target = target.into();
        let old = self.targets.insert(target.clone(), access);
        self.validate().inspect_err(|_| {
            match old {
                Some(old) => self.targets.insert(target, old),
                None => self.targets.remove(&target),
            };
        })
    }

    /// The rules of `target`, if it has any.
    pub fn target(&self, target: &str) -> Option<&TargetAccess> {
        self.targets.get(target)
    }

    /// Sets (or clears) the credentials discovery sessions need.
    pub fn set_discovery_chap(&mut self, chap: Option<ChapCredentials>) -> Result<(), PolicyError> {
        let old = std::mem::replace(&mut self.discovery_chap, chap);
        self.validate()
            .inspect_err(|_| self.discovery_chap = old.clone())
    }

    /// The credentials discovery sessions need.
    pub fn discovery_chap(&self) -> Option<&ChapCredentials> {
        self.discovery_chap.as_ref()
    }

    /// Adds an ACL entry to `target` (which must have rules, possibly empty ones).
    pub fn add_acl_entry(&mut self, target: &str, entry: AclEntry) -> Result<(), PolicyError> {
        let access = self
            .targets
            .get_mut(target)
            .ok_or_else(|| PolicyError::UnknownTarget(target.to_string()))?;
        access.acl.push(entry);
        self.validate().inspect_err(|_| {
            self.targets.get_mut(target).map(|a| a.acl.pop());
        })
    }

    /// Removes the ACL entries of `target` that name `initiator`; returns how many.
    pub fn remove_acl_entry(
        &mut self,
        target: &str,
        initiator: &str,
    ) -> Result<usize, PolicyError> {
        let access = self
            .targets
            .get_mut(target)
            .ok_or_else(|| PolicyError::UnknownTarget(target.to_string()))?;
        let before = access.acl.len();
        access.acl.retain(|e| {
            !e.initiator
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(initiator))
        });
        Ok(before - access.acl.len())
    }

    /// May `initiator`, connecting from `addr`, log in to `target`, and with which CHAP?
    pub fn check(&self, target: &str, initiator: &str, addr: Option<IpAddr>) -> Access {
        let Some(access) = self.targets.get(target) else {
            return Access::Granted(None);
        };
        if access.acl.is_empty() {
            return Access::Granted(access.chap.clone());
        }
        match access.acl.iter().find(|e| e.matches(initiator, addr)) {
            Some(entry) => Access::Granted(entry.chap.clone().or_else(|| access.chap.clone())),
            None => Access::Denied,
        }
    }

    /// May `initiator` open a discovery session, and with which CHAP? Discovery is open to
    /// all; what it shows is filtered by [`AccessPolicy::check`].
    pub fn check_discovery(&self, _initiator: &str, _addr: Option<IpAddr>) -> Access {
        Access::Granted(self.discovery_chap.clone())
    }

    /// Of the targets with rules, those `initiator` at `addr` may log in to.
    pub fn allowed_targets(&self, initiator: &str, addr: Option<IpAddr>) -> Vec<&str> {
        self.targets
            .keys()
            .filter(|t| self.check(t, initiator, addr) != Access::Denied)
            .map(String::as_str)
            .collect()
    }

    /// Targets with neither ACL nor CHAP, among those with rules.
    pub fn open_targets(&self) -> Vec<&str> {
        self.targets
            .iter()
            .filter(|(_, a)| a.is_open())
            .map(|(t, _)| t.as_str())
            .collect()
    }

    /// Checks the rules across targets: no secret authenticates both an initiator and the
    /// target (RFC 7143 9.2.1).
    pub fn validate(&self) -> Result<(), PolicyError> {
        let all = self
            .targets
            .values()
            .flat_map(|t| {
                t.chap
                    .iter()
                    .chain(t.acl.iter().filter_map(|e| e.chap.as_ref()))
            })
            .chain(self.discovery_chap.iter());
        let mut initiator_side: Vec<&Credential> = Vec::new();
        let mut target_side: Vec<&Credential> = Vec::new();
        for chap in all {
            initiator_side.push(&chap.initiator);
            target_side.extend(chap.target.iter());
        }
        for i in &initiator_side {
            if target_side.iter().any(|t| t.secret == i.secret) {
                return Err(PolicyError::SecretInBothDirections(i.user.clone()));
            }
        }
        Ok(())
    }
}
