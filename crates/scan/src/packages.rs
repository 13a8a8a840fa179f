//! The OS packages an image carries, read from its package databases: dpkg's `status` (and
//! the `status.d/` files distroless images write instead) with each binary's `Source:`
//! package, and apk's `installed` database with each package's origin. Also `os-release`,
//! which says which advisories apply (`Debian:12`, `Alpine:v3.19`).

use serde::{Deserialize, Serialize};

/// Which package manager's versions and advisories apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Manager {
    Dpkg,
    Apk,
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// The binary package's name (`libc6`).
    pub name: String,
    /// Its version as installed.
    pub version: String,
    /// The source package it was built from (`glibc`), which Debian's advisories name.
    pub source: String,
    /// The source package's version (differs from `version` for a binNMU, say).
    pub source_version: String,
    pub manager: Manager,
}

/// dpkg's database: paragraphs of `Field: value` lines; only packages whose `Status` says they
/// are installed count.
pub fn parse_dpkg(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for paragraph in text.split("\n\n") {
        let field = |name: &str| {
            paragraph.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.eq_ignore_ascii_case(name) && !l.starts_with([' ', '\t'])).then(|| v.trim())
            })
        };
        let (Some(name), Some(version)) = (field("Package"), field("Version")) else {
            continue;
        };
        // status.d files carry no Status: what is there is installed
        if field("Status").is_some_and(|s| !s.ends_with(" installed")) {
            continue;
        }
        let (source, source_version) = match field("Source") {
            None => (name, version),
            Some(s) => match s.split_once(' ') {
                Some((src, v)) => (src, v.trim().trim_start_matches('(').trim_end_matches(')')),
                None => (s, version),
            },
        };
        out.push(Package {
            name: name.to_owned(),
            version: version.to_owned(),
            source: source.to_owned(),
            source_version: source_version.to_owned(),
            manager: Manager::Dpkg,
        });
    }
    out
}

/// apk's `lib/apk/db/installed`: blocks of `X:value` lines (`P` name, `V` version, `o`
/// origin).
pub fn parse_apk(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let field = |key: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .map(str::trim)
        };
        let (Some(name), Some(version)) = (field("P"), field("V")) else {
            continue;
        };
        let source = field("o").unwrap_or(name);
        out.push(Package {
            name: name.to_owned(),
            version: version.to_owned(),
            source: source.to_owned(),
            source_version: version.to_owned(),
            manager: Manager::Apk,
        });
    }
    out
}

/// The OSV ecosystem an `os-release` names: `Debian:12`, `Alpine:v3.19`, `Ubuntu:22.04`.
pub fn ecosystem(os_release: &str) -> Option<String> {
    let field = |name: &str| {
        os_release.lines().find_map(|l| {
            let v = l.strip_prefix(name)?.strip_prefix('=')?;
            Some(v.trim().trim_matches('"').to_owned())
        })
    };
    let id = field("ID")?;
    let version = field("VERSION_ID").unwrap_or_default();
    match id.as_str() {
        "debian" => Some(format!(
            "Debian:{}",
            version.split('.').next().unwrap_or_default()
        )),
        "alpine" => {
            let minor: Vec<&str> = version.split('.').take(2).collect();
            Some(format!("Alpine:v{}", minor.join(".")))
        }
        "ubuntu" => Some(format!("Ubuntu:{version}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_status_gives_installed_binaries_and_their_sources() {
        let status = "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc\nVersion: 2.36-9+deb12u4\nDescription: GNU C Library\n  Source: not a field\n\n\
Package: e2fsprogs\nStatus: install ok installed\nSource: e2fsprogs (1.47.0-2)\nVersion: 1.47.0-2+b1\n\n\
Package: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n\n\
Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b2\n";
        let p = parse_dpkg(status);
        let got: Vec<(&str, &str, &str, &str)> = p
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.version.as_str(),
                    p.source.as_str(),
                    p.source_version.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("libc6", "2.36-9+deb12u4", "glibc", "2.36-9+deb12u4"),
                ("e2fsprogs", "1.47.0-2+b1", "e2fsprogs", "1.47.0-2"),
                ("bash", "5.2.15-2+b2", "bash", "5.2.15-2+b2"),
            ]
        );
    }

    #[test]
    fn apk_database_gives_packages_and_origins() {
        let db = "C:Q1abc=\nP:libcrypto3\nV:3.1.4-r5\nA:x86_64\no:openssl\n\nP:busybox\nV:1.36.1-r15\no:busybox\n";
        let p = parse_apk(db);
        assert_eq!(p.len(), 2);
        assert_eq!(
            (
                p[0].name.as_str(),
                p[0].source.as_str(),
                p[0].version.as_str()
            ),
            ("libcrypto3", "openssl", "3.1.4-r5")
        );
    }

    #[test]
    fn os_release_names_the_ecosystem() {
        assert_eq!(
            ecosystem("ID=debian\nVERSION_ID=\"12\"\n").as_deref(),
            Some("Debian:12")
        );
        assert_eq!(
            ecosystem("NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\n").as_deref(),
            Some("Alpine:v3.19")
        );
        assert_eq!(ecosystem("ID=plan9\n"), None);
    }
}
