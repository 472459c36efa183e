//! Platform (`os/arch[/variant]`) parsing, host detection and index matching.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// An image platform as it appears in an index descriptor.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    #[serde(default)]
    pub os: String,
    /// CPU architecture in GOARCH spelling, e.g. `amd64`.
    #[serde(default)]
    pub architecture: String,
    /// CPU variant, e.g. `v7` or `v8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// Parses `os/arch[/variant]`, normalising architecture aliases.
    pub fn parse(input: &str) -> Result<Platform> {
        let parts: Vec<&str> = input.split('/').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err(Error::Platform {
                input: input.to_string(),
            });
        }
        let (architecture, default_variant) = normalize_arch(parts[1]);
        Ok(Platform {
            os: parts[0].to_string(),
            architecture,
            variant: parts.get(2).map(|v| v.to_string()).or(default_variant),
        })
    }

    /// The platform this binary runs on.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "arm" => "arm",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "powerpc64" => "ppc64",
            "loongarch64" => "loong64",
            other => other,
        };
        let variant = match arch {
            "arm" => Some("v7".to_string()),
            _ => None,
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: arch.to_string(),
            variant,
        }
    }

    /// Whether an index entry for `candidate` can run here; a wanted variant must
    /// match, except arm64's implied `v8`.
    pub fn matches(&self, candidate: &Platform) -> bool {
        let (cand_arch, cand_default) = normalize_arch(&candidate.architecture);
        if self.os != candidate.os || self.architecture != cand_arch {
            return false;
        }
        match &self.variant {
            None => true,
            Some(want) => {
                let have = candidate.variant.clone().or(cand_default);
                match have {
                    Some(h) => &h == want,
                    // An index that does not say the variant is taken as the default one.
                    None => self.architecture != "arm" || want == "v7",
                }
            }
        }
    }
}

fn normalize_arch(arch: &str) -> (String, Option<String>) {
    match arch {
        "x86_64" | "x86-64" => ("amd64".into(), None),
        "aarch64" => ("arm64".into(), None),
        "armhf" => ("arm".into(), Some("v7".into())),
        "armel" => ("arm".into(), Some("v6".into())),
        "i386" => ("386".into(), None),
        other => (other.into(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.map(Into::into),
        }
    }

    #[test]
    fn parse_and_match() {
        let want = Platform::parse("linux/arm64").unwrap();
        assert!(want.matches(&p("linux", "arm64", Some("v8"))));
        assert!(want.matches(&p("linux", "aarch64", None)));
        assert!(!want.matches(&p("linux", "amd64", None)));

        let want = Platform::parse("linux/arm/v6").unwrap();
        assert!(want.matches(&p("linux", "arm", Some("v6"))));
        assert!(!want.matches(&p("linux", "arm", Some("v7"))));
        assert!(!want.matches(&p("linux", "arm", None)));
        assert!(Platform::parse("linux/arm/v7")
            .unwrap()
            .matches(&p("linux", "arm", None)));

        assert_eq!(
            Platform::parse("linux/x86_64").unwrap().architecture,
            "amd64"
        );
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux//v7").is_err());
        assert!(Platform::parse("a/b/c/d").is_err());
        assert!(!Platform::parse("windows/amd64")
            .unwrap()
            .matches(&p("linux", "amd64", None)));
    }

    #[test]
    fn host_is_sane() {
        let h = Platform::host();
        assert_eq!(h.os, "linux");
        assert!(!h.architecture.is_empty());
    }
}
