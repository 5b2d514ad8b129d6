//! `cargo xtask package`: the Debian package, built by cargo-deb from the metadata in
//! crates/daemon/Cargo.toml, then checked: unpacked into a scratch root (nothing is
//! installed on this machine), its files, modes and conffiles, the systemd unit's content
//! (and `systemd-analyze verify` where systemd is present), and the packaged binary runs.

use crate::util::{self, Skipped};
use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The package's name (cargo-deb's `name`).
pub const PACKAGE: &str = "glfs-iscsi";
const UNIT: &str = "glfs-iscsi.service";
const CONFIG: &str = "etc/glfs-iscsi/glfs-iscsi.toml";
/// The cargo-deb CI installs (ci/install-deps.sh names the same): a known version, since
/// later ones may refuse the `dev` profile test-offline packages with.
pub const CARGO_DEB_VERSION: &str = "3.8.0";

/// Builds the .deb with `profile` (`release` for shipping, `dev` to reuse the test build)
/// and returns its path.
pub fn build(profile: &str) -> Result<PathBuf> {
    ensure_cargo_deb()?;
    let out_dir = util::target_dir().join("debian").join(profile);
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir)?;
    util::run(
        util::cargo()
            .args(["deb", "--package", "daemon", "--profile", profile])
            .arg("--output")
            .arg(&out_dir),
    )?;
    let deb = std::fs::read_dir(&out_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("cargo deb left no .deb in {}", out_dir.display()))?;
    Ok(deb)
}

/// Installs cargo-deb from crates.io when it is missing (CI machines start without it).
pub fn ensure_cargo_deb() -> Result<()> {
    let present = util::cargo()
        .args(["deb", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        eprintln!("cargo-deb not found: installing it from crates.io (a few minutes)");
        util::run(util::cargo().args([
            "install",
            "--locked",
            "cargo-deb",
            "--version",
            CARGO_DEB_VERSION,
        ]))?;
    }
    Ok(())
}

/// `cargo xtask package`: builds the release .deb, checks it (`docker`: also installs it
/// in a container) and prints its path.
pub fn run(profile: &str, docker: bool) -> Result<()> {
    let deb = build(profile)?;
    check(&deb)?;
    if docker {
        install_in_docker(&deb)?;
    }
    println!("{}", deb.display());
    Ok(())
}

/// What the Docker install check is called in the checks' list.
pub const DOCKER_CHECK: &str =
    "package: dpkg -i, the installed files and unit, --version, dpkg -r keeps the conffile, dpkg -P (Debian 12 container)";

/// A container of the Debian 12 base image, removed on drop.
struct Scratch(String);

impl Scratch {
    fn start() -> Result<Scratch> {
        let name = format!("glfs-iscsi-package-{}", std::process::id());
        let _ = Command::new("docker").args(["rm", "-f", &name]).output();
        util::output(Command::new("docker").args([
            "run",
            "--detach",
            "--name",
            &name,
            "--label",
            &format!("{}=package", crate::docker::LABEL),
            "--network",
            "none",
            crate::docker::BASE_IMAGE,
            "sleep",
            "infinity",
        ]))?;
        Ok(Scratch(name))
    }

    /// Runs `script` with `sh -c` in the container: its standard output, or the error
    /// with its output.
    fn sh(&self, script: &str) -> Result<String> {
        util::output(Command::new("docker").args(["exec", &self.0, "sh", "-c", script]))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

/// Installs `deb` for real in a container of the Docker fixture's Debian 12 base image
/// (debootstrap minbase, as a fresh server would be), then checks what dpkg installed, the
/// unit, the binary, and that `dpkg -r` keeps the (edited) configuration as a conffile and
/// `dpkg -P` removes it. [`crate::docker::EngineUnavailable`] where Docker cannot run.
pub fn install_in_docker(deb: &Path) -> Result<()> {
    crate::docker::ensure_engine()?;
    crate::docker::ensure_base_image()?;
    let box_ = Scratch::start()?;
    util::output(
        Command::new("docker")
            .arg("cp")
            .arg(deb)
            .arg(format!("{}:/tmp/{PACKAGE}.deb", box_.0)),
    )?;
    box_.sh(&format!("dpkg -i /tmp/{PACKAGE}.deb"))
        .context("dpkg -i in the Debian 12 image")?;
    let status = |box_: &Scratch| {
        box_.sh(&format!(
            "dpkg-query -W -f='${{Status}}' {PACKAGE} 2>/dev/null || true"
        ))
    };
    ensure!(
        status(&box_)? == "install ok installed",
        "after dpkg -i: {PACKAGE} is {:?}",
        status(&box_)?
    );
    // The files dpkg put in place, their modes and owner.
    let modes = box_.sh(&format!("stat -c '%a %U %n' /usr/bin/glfs-iscsi /{CONFIG}"))?;
    ensure!(
        modes.lines().collect::<Vec<_>>()
            == [
                "755 root /usr/bin/glfs-iscsi".to_string(),
                format!("600 root /{CONFIG}"),
            ],
        "installed modes: {modes}"
    );
    let listed = box_.sh(&format!("dpkg -L {PACKAGE}"))?;
    for path in ["/usr/bin/glfs-iscsi", &format!("/{CONFIG}")] {
        ensure!(
            listed.lines().any(|l| l == path),
            "dpkg -L does not list {path}: {listed}"
        );
    }
    let unit_path = listed
        .lines()
        .find(|l| l.ends_with(&format!("/systemd/system/{UNIT}")))
        .with_context(|| format!("dpkg -L lists no {UNIT}: {listed}"))?
        .to_string();
    let conffiles = box_.sh(&format!("dpkg-query -W -f='${{Conffiles}}' {PACKAGE}"))?;
    ensure!(
        conffiles.contains(&format!("/{CONFIG} ")),
        "dpkg does not know /{CONFIG} as a conffile: {conffiles:?}"
    );
    // The unit as installed: systemd-analyze where the image has it, else its parse.
    let unit = box_.sh(&format!("cat {unit_path}"))?;
    check_unit(&unit).context("the installed unit")?;
    if box_.sh("command -v systemd-analyze").is_ok() {
        box_.sh(&format!("systemd-analyze verify --man=no {unit_path}"))
            .context("systemd-analyze verify in the image")?;
    } else {
        eprintln!(
            "[note] the Debian 12 minbase image has no systemd: {unit_path} checked by its parse"
        );
    }
    let version = box_.sh("glfs-iscsi --version")?;
    ensure!(
        version.trim() == format!("glfs-iscsi {}", env!("CARGO_PKG_VERSION")),
        "the installed glfs-iscsi --version says {version:?}"
    );

    // An operator's edit, then dpkg -r: the program goes, the edited conffile stays.
    box_.sh(&format!("echo '# edited by the operator' >> /{CONFIG}"))?;
    box_.sh(&format!("dpkg -r {PACKAGE}"))
        .context("dpkg -r in the Debian 12 image")?;
    ensure!(
        status(&box_)? == "deinstall ok config-files",
        "after dpkg -r: {PACKAGE} is {:?}",
        status(&box_)?
    );
    let gone = box_.sh(&format!(
        "for f in /usr/bin/glfs-iscsi {unit_path}; do test -e $f && echo $f; done; true"
    ))?;
    ensure!(gone.trim().is_empty(), "dpkg -r left {gone}");
    let kept = box_.sh(&format!("cat /{CONFIG}"))?;
    ensure!(
        kept.contains("# edited by the operator"),
        "dpkg -r did not keep the edited /{CONFIG}: {kept:?}"
    );
    // Purge: the configuration goes too.
    box_.sh(&format!("dpkg -P {PACKAGE}"))
        .context("dpkg -P in the Debian 12 image")?;
    let left = box_.sh(&format!("test -e /{CONFIG} && echo present; true"))?;
    ensure!(left.trim().is_empty(), "dpkg -P left /{CONFIG}");
    ensure!(
        status(&box_)?.is_empty() || status(&box_)?.starts_with("unknown ok not-installed"),
        "after dpkg -P: {PACKAGE} is {:?}",
        status(&box_)?
    );
    Ok(())
}

/// Unpacks `deb` into a scratch root and checks what it would install.
pub fn check(deb: &Path) -> Result<()> {
    let root = util::target_dir().join("package-root");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    util::output(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root))?;

    let control = util::output(Command::new("dpkg-deb").arg("-f").arg(deb))?;
    let fields = control_fields(&control);
    ensure!(
        fields.get("Package").map(String::as_str) == Some(PACKAGE),
        "Package field: {fields:?}"
    );
    ensure!(
        fields
            .get("Recommends")
            .is_some_and(|r| r.contains("libgfapi0")),
        "libgfapi0 is loaded at run time and must be recommended: {fields:?}"
    );
    let conffiles = util::output(
        Command::new("dpkg-deb")
            .arg("--info")
            .arg(deb)
            .arg("conffiles"),
    )?;
    ensure!(
        conffiles.lines().any(|l| l.trim() == format!("/{CONFIG}")),
        "/{CONFIG} is not a conffile (upgrades would overwrite local edits): {conffiles:?}"
    );

    let binary = root.join("usr/bin/glfs-iscsi");
    expect_mode(&binary, 0o755)?;
    // The example configuration may come to hold CHAP secrets: root only.
    expect_mode(&root.join(CONFIG), 0o600)?;
    ensure!(
        root.join("usr/share/doc/glfs-iscsi/README.md").is_file(),
        "the README is not in /usr/share/doc/glfs-iscsi"
    );
    let unit_path = ["lib/systemd/system", "usr/lib/systemd/system"]
        .iter()
        .map(|dir| root.join(dir).join(UNIT))
        .find(|p| p.is_file())
        .with_context(|| format!("{UNIT} is not in the package"))?;
    let unit = std::fs::read_to_string(&unit_path)?;
    check_unit(&unit)?;

    let version = util::output(Command::new(&binary).arg("--version"))?;
    ensure!(
        version.trim() == format!("glfs-iscsi {}", env!("CARGO_PKG_VERSION")),
        "the packaged binary's --version says {version:?}"
    );
    match verify_unit(&root, &unit_path, &unit) {
        Err(e) if e.downcast_ref::<Skipped>().is_some() => eprintln!("[skip] {e}"),
        other => other?,
    }
    Ok(())
}

/// `Key: value` lines of a control file (continuation lines are left out).
fn control_fields(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn expect_mode(path: &Path, mode: u32) -> Result<()> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("{} is not in the package", path.display()))?;
    let actual = meta.permissions().mode() & 0o7777;
    ensure!(
        actual == mode,
        "{} has mode {actual:o}, expected {mode:o}",
        path.display()
    );
    Ok(())
}

/// The `[Service]` settings of a unit, each key with every value it is given.
fn service_settings(unit: &str) -> BTreeMap<String, Vec<String>> {
    let mut section = "";
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section == "[Service]" {
            if let Some((k, v)) = line.split_once('=') {
                out.entry(k.trim().to_string())
                    .or_default()
                    .push(v.trim().to_string());
            }
        }
    }
    out
}

/// What the service needs and the hardening it must keep.
fn check_unit(unit: &str) -> Result<()> {
    let settings = service_settings(unit);
    let value = |key: &str| -> Result<&str> {
        settings
            .get(key)
            .and_then(|v| v.last())
            .map(String::as_str)
            .with_context(|| format!("{UNIT} has no {key}="))
    };
    let expected = [
        ("Type", "notify"),
        ("Restart", "on-failure"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("RuntimeDirectory", "glfs-iscsi"),
        ("ConfigurationDirectory", "glfs-iscsi"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
    ];
    for (key, want) in expected {
        let got = value(key)?;
        ensure!(got == want, "{UNIT}: {key}={got}, expected {want}");
    }
    let mut families: Vec<&str> = value("RestrictAddressFamilies")?
        .split_whitespace()
        .collect();
    families.sort_unstable();
    ensure!(
        families == ["AF_INET", "AF_INET6", "AF_UNIX"],
        "{UNIT}: RestrictAddressFamilies={families:?}"
    );
    let exec = value("ExecStart")?;
    ensure!(
        exec.starts_with("/usr/bin/glfs-iscsi ") && exec.contains(&format!("--config /{CONFIG}")),
        "{UNIT}: ExecStart={exec} does not run the packaged binary on /{CONFIG}"
    );
    ensure!(
        exec.contains("--control-socket /run/glfs-iscsi/"),
        "{UNIT}: ExecStart={exec} has no control socket in its RuntimeDirectory"
    );
    // The configuration is written back by live administration: it must stay writable.
    ensure!(
        settings.get("ReadWritePaths").is_some_and(|v| v
            .iter()
            .any(|p| p.split_whitespace().any(|p| p == "/etc/glfs-iscsi"))),
        "{UNIT}: /etc/glfs-iscsi is read-only under ProtectSystem=strict"
    );
    Ok(())
}

/// `systemd-analyze verify` on the unit, with its binary path pointed into the scratch root
/// (the unit itself names /usr/bin, which this machine need not have).
fn verify_unit(root: &Path, unit_path: &Path, unit: &str) -> Result<()> {
    let Some(analyze) = util::which("systemd-analyze") else {
        return Err(Skipped("systemd-analyze verify: systemd is not installed".into()).into());
    };
    let dir = root.join("verify");
    std::fs::create_dir_all(&dir)?;
    let copy = dir.join(UNIT);
    let binary = root.join("usr/bin/glfs-iscsi");
    std::fs::write(
        &copy,
        unit.replace("/usr/bin/glfs-iscsi", &binary.display().to_string()),
    )?;
    let out = Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .context("cannot run systemd-analyze")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() || !text.trim().is_empty() {
        bail!(
            "systemd-analyze verify {}: {}",
            unit_path.display(),
            text.trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packaged_unit() -> String {
        std::fs::read_to_string(
            util::project_root()
                .join("crates/daemon/packaging")
                .join(UNIT),
        )
        .unwrap()
    }

    #[test]
    fn ci_installs_the_cargo_deb_this_task_installs() {
        let script =
            std::fs::read_to_string(util::project_root().join("ci/install-deps.sh")).unwrap();
        let line = script
            .lines()
            .find(|l| l.contains("cargo install") && l.contains("cargo-deb"))
            .expect("ci/install-deps.sh installs cargo-deb");
        assert!(
            line.contains(&format!("--version {CARGO_DEB_VERSION}")),
            "{line}"
        );
    }

    #[test]
    fn the_packaged_unit_passes_the_checks() {
        check_unit(&packaged_unit()).unwrap();
    }

    #[test]
    fn a_unit_without_its_hardening_fails_the_checks() {
        let unit = packaged_unit();
        for (line, missing) in [
            ("ProtectSystem=strict", "ProtectSystem"),
            ("Type=notify", "Type"),
            (
                "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
                "RestrictAddressFamilies",
            ),
            ("ReadWritePaths=/etc/glfs-iscsi", "/etc/glfs-iscsi"),
        ] {
            assert!(unit.contains(line), "{line}");
            let weakened = unit.replace(line, "");
            let err = check_unit(&weakened).unwrap_err().to_string();
            assert!(err.contains(missing), "{line}: {err}");
        }
        let err = check_unit(&unit.replace("AF_UNIX", "AF_UNIX AF_NETLINK"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("RestrictAddressFamilies"), "{err}");
    }
}
