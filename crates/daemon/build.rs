//! Links `glfs-iscsi` with packed relative relocations (`-z pack-relative-relocs`, DT_RELR)
//! where the target is Linux with glibc: the position-independent binary has some ten
//! thousand relative relocations, which as RELA entries are 250 KiB that the dynamic
//! loader reads at every start (and that then stay resident); as RELR they are 3 KiB.
//! glibc reads RELR since 2.36 (Debian 12); the binary then requires that version
//! (`GLIBC_ABI_DT_RELR`), which the packaging's Debian 12 base has. Measured in
//! docs/performance.md ("Ninth round").

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bin=glfs-iscsi=-Wl,-z,pack-relative-relocs");
    }
}
