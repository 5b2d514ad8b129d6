//! Access control as configured: CHAP credentials and ACL entries from the config file and
//! the command line, turned into the [`iscsi::auth::AccessPolicy`] the logins check.
//!
//! Secrets come from the config file (`secret = "..."`), an environment variable
//! (`secret_env = "NAME"`) or a file (`secret_file = "/path"`, one trailing newline
//! ignored). They are held as [`Secret`], whose `Debug` is redacted, and no error message
//! names one.
//!
//! ```toml
//! allow_any_initiator = false      # serve targets without ACL or CHAP on any portal
//!
//! [discovery_chap]                 # CHAP for discovery sessions
//! user = "discovery"
//! secret_env = "GLFS_ISCSI_DISCOVERY_SECRET"
//!
//! [[target]]
//! name = "iqn.2026-11.com.example:disk1"
//! [target.chap]                    # every initiator of this target
//! user = "alice"
//! secret_file = "/etc/glfs-iscsi/alice.secret"
//! mutual_user = "disk1"            # mutual CHAP: what the target answers with
//! mutual_secret_file = "/etc/glfs-iscsi/disk1.secret"
//! [[target.acl]]                   # initiators admitted (none listed: all)
//! initiator = "iqn.1994-05.com.redhat:host1"
//! networks = ["192.0.2.0/24", "2001:db8::/48"]
//! [target.acl.chap]                # this entry's credentials win over the target's
//! user = "host1"
//! secret = "a-long-random-secret"
//! ```

use anyhow::{bail, Context, Result};
use ipnet::IpNet;
use iscsi::auth::{AccessPolicy, AclEntry, ChapCredentials, Credential, Secret};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// A secret written in the config file: deserialized from a string, never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigSecret(pub Secret);

impl std::fmt::Debug for ConfigSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Written back as the string it was read from: only the config file (owner-only) holds it;
/// nothing else may serialize it.
impl Serialize for ConfigSecret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(self.0.expose()))
    }
}

impl<'de> Deserialize<'de> for ConfigSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ConfigSecret;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ConfigSecret, E> {
                Ok(ConfigSecret(Secret::new(v)))
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// `[target.chap]`, `[target.acl.chap]` or `[discovery_chap]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChapEntry {
    pub user: String,
    pub secret: Option<ConfigSecret>,
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub mutual_user: Option<String>,
    pub mutual_secret: Option<ConfigSecret>,
    pub mutual_secret_env: Option<String>,
    pub mutual_secret_file: Option<PathBuf>,
}

/// `[[target.acl]]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AclToml {
    pub initiator: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
    pub chap: Option<ChapEntry>,
}

/// What `admin export` prints for a secret written in the config file. Shorter than any
/// secret may be (12 bytes), so never a real one: a file applied with it keeps the secret
/// that is set there now.
pub const REDACTED: &str = "(redacted)";

fn redact(secret: &Option<ConfigSecret>) -> Option<ConfigSecret> {
    secret.as_ref().map(|_| ConfigSecret(Secret::new(REDACTED)))
}

fn is_redacted(secret: &Option<ConfigSecret>) -> bool {
    secret
        .as_ref()
        .is_some_and(|s| s.0.expose() == REDACTED.as_bytes())
}

impl ChapEntry {
    /// This entry with its written secrets replaced by [`REDACTED`].
    pub fn redacted(&self) -> ChapEntry {
        ChapEntry {
            secret: redact(&self.secret),
            mutual_secret: redact(&self.mutual_secret),
            ..self.clone()
        }
    }

    /// Puts back the secrets [`ChapEntry::redacted`] hid, from `current` (the entry at the
    /// same place in the running configuration); `what` names the entry in errors.
    pub fn unredact(&mut self, current: Option<&ChapEntry>, what: &str) -> Result<()> {
        if is_redacted(&self.secret) {
            match current.and_then(|c| c.secret.clone()) {
                Some(secret) if !is_redacted(&Some(secret.clone())) => self.secret = Some(secret),
                _ => bail!("{what}: secret is {REDACTED} and no secret is set there to keep"),
            }
        }
        if is_redacted(&self.mutual_secret) {
            match current.and_then(|c| c.mutual_secret.clone()) {
                Some(secret) if !is_redacted(&Some(secret.clone())) => {
                    self.mutual_secret = Some(secret)
                }
                _ => {
                    bail!("{what}: mutual_secret is {REDACTED} and no secret is set there to keep")
                }
            }
        }
        Ok(())
    }
}

/// Where one secret comes from.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// Written in the config file.
    Inline(Secret),
    /// An environment variable's value.
    Env(String),
    /// A file's contents, one trailing newline ignored.
    File(PathBuf),
}

impl SecretSource {
    /// Exactly one of the three, or none.
    pub fn pick(
        what: &str,
        inline: Option<&ConfigSecret>,
        env: Option<&str>,
        file: Option<&Path>,
    ) -> Result<Option<SecretSource>> {
        let sources = [
            inline.map(|s| SecretSource::Inline(s.0.clone())),
            env.map(|e| SecretSource::Env(e.to_string())),
            file.map(|f| SecretSource::File(f.to_path_buf())),
        ];
        let mut given = sources.into_iter().flatten();
        let first = given.next();
        if given.next().is_some() {
            bail!("{what}: give only one of secret, secret_env and secret_file");
        }
        Ok(first)
    }

    /// Reads the secret.
    pub fn load(&self, user: &str) -> Result<Secret> {
        match self {
            SecretSource::Inline(s) => Ok(s.clone()),
            SecretSource::Env(name) => match std::env::var_os(name) {
                Some(v) => Ok(Secret::new(v.into_encoded_bytes())),
                None => bail!(
                    "environment variable {name} (the CHAP secret of user {user:?}) is not set"
                ),
            },
            SecretSource::File(path) => {
                let mut bytes = std::fs::read(path).with_context(|| {
                    format!(
                        "cannot read {} (the CHAP secret of user {user:?})",
                        path.display()
                    )
                })?;
                if bytes.ends_with(b"\n") {
                    bytes.pop();
                    if bytes.ends_with(b"\r") {
                        bytes.pop();
                    }
                }
                Ok(Secret::new(bytes))
            }
        }
    }
}

/// A user and where its secret comes from.
pub fn credential(what: &str, user: &str, source: Option<SecretSource>) -> Result<Credential> {
    let Some(source) = source else {
        bail!("{what}: user {user:?} has no secret (secret, secret_env or secret_file)");
    };
    let secret = source.load(user).with_context(|| what.to_string())?;
    Credential::new(user, secret).with_context(|| what.to_string())
}

impl ChapEntry {
    /// The credentials, with their secrets read and checked.
    pub fn credentials(&self, what: &str) -> Result<ChapCredentials> {
        let source = SecretSource::pick(
            what,
            self.secret.as_ref(),
            self.secret_env.as_deref(),
            self.secret_file.as_deref(),
        )?;
        let initiator = credential(what, &self.user, source)?;
        let mutual = SecretSource::pick(
            &format!("{what} (mutual)"),
            self.mutual_secret.as_ref(),
            self.mutual_secret_env.as_deref(),
            self.mutual_secret_file.as_deref(),
        )?;
        let target = match (&self.mutual_user, mutual) {
            (None, None) => None,
            (Some(user), source) => Some(credential(&format!("{what} (mutual)"), user, source)?),
            (None, Some(_)) => bail!("{what}: a mutual secret without mutual_user"),
        };
        Ok(ChapCredentials { initiator, target })
    }
}

/// A network: `a.b.c.d/n`, `x::y/n`, or a single address.
pub fn parse_network(text: &str) -> Result<IpNet> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net);
    }
    match text.parse::<IpAddr>() {
        Ok(addr) => Ok(IpNet::from(addr)),
        Err(_) => bail!("invalid network {text:?}: expected an address or address/prefix"),
    }
}

impl AclToml {
    pub fn entry(&self, what: &str) -> Result<AclEntry> {
        if let Some(name) = &self.initiator {
            crate::config::check_initiator_name(name).with_context(|| what.to_string())?;
        }
        let networks = self
            .networks
            .iter()
            .map(|n| parse_network(n))
            .collect::<Result<Vec<_>>>()
            .with_context(|| what.to_string())?;
        let chap = self
            .chap
            .as_ref()
            .map(|c| c.credentials(&format!("{what} CHAP")))
            .transpose()?;
        Ok(AclEntry {
            initiator: self.initiator.clone(),
            networks,
            chap,
        })
    }
}

impl AclToml {
    /// `--acl SPEC` as the config file writes it.
    pub fn from_spec(spec: &str) -> Result<AclToml> {
        let entry = parse_acl_spec(spec)?;
        Ok(AclToml {
            initiator: entry.initiator,
            networks: entry.networks.iter().map(ToString::to_string).collect(),
            chap: None,
        })
    }
}

/// Access settings given on the command line, which hold beside the config file's and are
/// never written to it: `--allow-any-initiator` and discovery CHAP.
#[derive(Debug, Clone, Default)]
pub struct CliAccess {
    pub allow_any_initiator: bool,
    pub discovery_chap: Option<ChapCredentials>,
}

impl CliAccess {
    /// The access policy of `config` (whose targets are `specs`) served on `portal`, with
    /// the command line's settings; refused when a target would be open on a non-loopback
    /// portal without leave, or discovery CHAP is given twice.
    pub fn policy(
        &self,
        config: &crate::config::ConfigFile,
        specs: &[crate::targets::TargetSpec],
        portal: std::net::SocketAddr,
    ) -> Result<AccessPolicy> {
        let mut specs = specs.to_vec();
        for t in &mut specs {
            t.allow_any_initiator |= self.allow_any_initiator;
        }
        check_open_targets(&specs, portal)?;
        let discovery = match (&config.discovery_chap, &self.discovery_chap) {
            (Some(_), Some(_)) => {
                bail!("discovery CHAP both in the config file and on the command line")
            }
            (Some(entry), None) => Some(entry.credentials("[discovery_chap]")?),
            (None, cli) => cli.clone(),
        };
        policy(&specs, discovery)
    }
}

/// `--acl SPEC`: `IQN`, `NETWORK` or `IQN@NETWORK`.
pub fn parse_acl_spec(spec: &str) -> Result<AclEntry> {
    let (name, network) = match spec.split_once('@') {
        Some((name, net)) => (Some(name), Some(net)),
        None if parse_network(spec).is_ok() => (None, Some(spec)),
        None => (Some(spec), None),
    };
    if let Some(name) = name {
        crate::config::check_initiator_name(name)?;
    }
    Ok(AclEntry {
        initiator: name.map(str::to_string),
        networks: network
            .map(parse_network)
            .transpose()?
            .into_iter()
            .collect(),
        chap: None,
    })
}

/// The access rules of every target, checked as a whole.
pub fn policy(
    targets: &[crate::targets::TargetSpec],
    discovery: Option<ChapCredentials>,
) -> Result<AccessPolicy> {
    let mut policy = AccessPolicy::new();
    for t in targets {
        policy
            .set_target(&t.name, t.access.clone())
            .with_context(|| format!("target {}", t.name))?;
    }
    policy
        .set_discovery_chap(discovery)
        .context("discovery CHAP")?;
    Ok(policy)
}

/// Secure by default: a target with neither ACL nor CHAP is served only on a loopback
/// portal, unless the operator allows any initiator.
pub fn check_open_targets(
    targets: &[crate::targets::TargetSpec],
    portal: std::net::SocketAddr,
) -> Result<()> {
    if portal.ip().to_canonical().is_loopback() {
        return Ok(());
    }
    if let Some(t) = targets
        .iter()
        .find(|t| t.access.is_open() && !t.allow_any_initiator)
    {
        bail!(
            "target {} has neither an ACL nor CHAP and portal {portal} is not loopback: \
             add --acl/--chap-user ([[target.acl]]/[target.chap] in the config file), or \
             serve any initiator with --allow-any-initiator (allow_any_initiator = true)",
            t.name
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_specs() {
        let e = parse_acl_spec("iqn.2026-11.com.example:host1").unwrap();
        assert_eq!(
            e.initiator.as_deref(),
            Some("iqn.2026-11.com.example:host1")
        );
        assert!(e.networks.is_empty());
        let e = parse_acl_spec("192.0.2.0/24").unwrap();
        assert_eq!(e.initiator, None);
        assert_eq!(e.networks, ["192.0.2.0/24".parse::<IpNet>().unwrap()]);
        let e = parse_acl_spec("iqn.2026-11.com.example:host1@2001:db8::1").unwrap();
        assert_eq!(e.networks, ["2001:db8::1/128".parse::<IpNet>().unwrap()]);
        assert!(parse_acl_spec("not a name").is_err());
        assert!(parse_acl_spec("iqn.2026-11.com.example:h@300.1.1.1/8").is_err());
    }

    #[test]
    fn secrets_from_env_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "file-secret-0123\n").unwrap();
        let s = SecretSource::File(path.clone()).load("u").unwrap();
        assert_eq!(s.expose(), b"file-secret-0123", "trailing newline dropped");
        std::env::set_var("GLFS_ISCSI_TEST_SECRET_A", "env-secret-01234");
        let s = SecretSource::Env("GLFS_ISCSI_TEST_SECRET_A".into())
            .load("u")
            .unwrap();
        assert_eq!(s.expose(), b"env-secret-01234");
        let err = SecretSource::Env("GLFS_ISCSI_TEST_SECRET_UNSET".into())
            .load("u")
            .unwrap_err();
        assert!(format!("{err:#}").contains("is not set"));
        let missing = SecretSource::File(dir.path().join("nope")).load("u");
        assert!(format!("{:#}", missing.unwrap_err()).contains("cannot read"));
    }
}
