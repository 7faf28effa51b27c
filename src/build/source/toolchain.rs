//! The tools a source build runs with, decided by the kernel's config: the
//! compiler it names (`CONFIG_CC_VERSION_TEXT`, or `CONFIG_GCC_VERSION` /
//! `CONFIG_CLANG_VERSION` on kernels before 5.8), and which probed tools
//! (`pahole`, `rustc`, `bindgen`) the sandbox may see, since Kconfig turns
//! their versions into options.

use super::kconfig::Config;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Gcc,
    Clang,
}

/// The compiler a kernel was built with, as its config says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub family: Family,
    pub major: u32,
    /// `CONFIG_CC_VERSION_TEXT`, when the config has it.
    pub text: Option<String>,
}

impl Wanted {
    pub fn of(config: &Config) -> Result<Wanted, String> {
        if config.is_empty() {
            return Err("the config has no options".into());
        }
        let text = config.text("CONFIG_CC_VERSION_TEXT");
        let family =
            if config.is_set("CONFIG_CC_IS_CLANG") || text.as_deref().is_some_and(|t| t.contains("clang version")) {
                Family::Clang
            } else {
                Family::Gcc
            };
        let from_number = match family {
            Family::Gcc => config.number("CONFIG_GCC_VERSION"),
            Family::Clang => config.number("CONFIG_CLANG_VERSION"),
        } / 10000;
        // Kernels before 4.18 name no compiler: any of the family, and the
        // config comparison decides (major 0).
        let major = text.as_deref().and_then(major_of).or((from_number > 0).then_some(from_number as u32));
        Ok(Wanted { family, major: major.unwrap_or(0), text })
    }

    /// What to install, for messages.
    pub fn describe(&self) -> String {
        match (&self.text, self.family) {
            (Some(text), _) => format!("{text:?}"),
            (None, Family::Gcc) if self.major == 0 => {
                "the gcc of the kernel's time (its config does not say which)".into()
            }
            (None, Family::Gcc) => format!("gcc {}", self.major),
            (None, Family::Clang) => format!("clang {}", self.major),
        }
    }
}

/// The major version in a compiler's banner: after `clang version `, else
/// the last `N.N[.N]` word (`gcc-12 (Debian 12.2.0-14) 12.2.0` → 12).
pub fn major_of(banner: &str) -> Option<u32> {
    let version = match banner.split_once("clang version ") {
        Some((_, rest)) => rest.split_whitespace().next()?,
        None => {
            banner.split_whitespace().rev().find(|w| w.contains('.') && w.starts_with(|c: char| c.is_ascii_digit()))?
        }
    };
    version.split(['.', '-', '_']).next()?.parse().ok()
}

/// The compiler chosen on this host.
#[derive(Debug, Clone)]
pub struct Chosen {
    /// Its path (under `/usr`, which the sandbox sees read-only).
    pub path: PathBuf,
    pub family: Family,
    /// Its `--version` banner equals the config's text.
    pub exact: bool,
    pub banner: String,
    /// make's arguments, for a toolchain published beside the kernel.
    pub published: Option<Vec<String>>,
}

impl Chosen {
    /// make arguments that select it: `CC=`/`HOSTCC=` for gcc, `LLVM=` for clang.
    pub fn make_args(&self) -> Vec<String> {
        if let Some(args) = &self.published {
            return args.clone();
        }
        let name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        match self.family {
            Family::Gcc => vec![format!("CC={name}"), format!("HOSTCC={name}")],
            // `clang-16` → LLVM=-16 (the suffixed tool set); `clang` → LLVM=1.
            Family::Clang => match name.strip_prefix("clang") {
                Some(suffix) if suffix.starts_with('-') => vec![format!("LLVM={suffix}")],
                _ => vec!["LLVM=1".into()],
            },
        }
    }
}

/// The first line `cmd --version` prints (bounded in time by the command itself).
fn banner(path: &Path) -> Option<String> {
    let out = Command::new(path).arg("--version").env_clear().env("LC_ALL", "C").output().ok()?;
    String::from_utf8_lossy(&out.stdout).lines().next().map(|l| l.trim().to_string())
}

/// Choose the compiler among `dirs`: the config's own command name, then
/// `gcc-N`/`clang-N`, then the unversioned one. An exact banner wins; a
/// compiler of the same family and major version is accepted for the
/// config comparison to decide.
pub fn choose(wanted: &Wanted, dirs: &[PathBuf]) -> Result<Chosen, String> {
    let base = match wanted.family {
        Family::Gcc => "gcc",
        Family::Clang => "clang",
    };
    let mut names: Vec<String> = Vec::new();
    if let Some(first) = wanted.text.as_deref().and_then(|t| t.split_whitespace().next()) {
        if first.starts_with(base) && first.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            names.push(first.to_string());
        }
    }
    if wanted.major > 0 {
        names.push(format!("{base}-{}", wanted.major));
    }
    names.push(base.to_string());
    let mut fallback = None;
    for name in &names {
        for dir in dirs {
            let path = dir.join(name);
            if !path.is_file() {
                continue;
            }
            let Some(banner) = banner(&path) else { continue };
            if wanted.text.as_deref() == Some(banner.as_str()) {
                return Ok(Chosen { path, family: wanted.family, exact: true, banner, published: None });
            }
            let family_matches = (wanted.family == Family::Clang) == banner.contains("clang version");
            let major_matches = wanted.major == 0 || major_of(&banner) == Some(wanted.major);
            if fallback.is_none() && family_matches && major_matches {
                fallback = Some(Chosen { path, family: wanted.family, exact: false, banner, published: None });
            }
        }
    }
    fallback.ok_or_else(|| match wanted.major {
        0 => format!("the kernel was built with {}; install {base} on this host", wanted.describe()),
        major => format!("the kernel was built with {}; install {base}-{major} on this host", wanted.describe()),
    })
}

/// The host's C compiler for the programs the bundle carries (`scripts/`:
/// fixdep, modpost), which run on the hosts that build modules: the
/// toolchain's own host compiler links against its SDK's libraries.
pub fn host_cc(dirs: &[PathBuf]) -> Option<String> {
    let named = ["cc", "gcc"].iter().map(|n| n.to_string());
    let versioned = dirs.iter().flat_map(|d| {
        let mut found: Vec<String> = std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.strip_prefix("gcc-").is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())))
            .collect();
        found.sort();
        found
    });
    named.chain(versioned).find(|n| dirs.iter().any(|d| d.join(n).is_file()))
}

/// The compiler of a toolchain published beside the kernel (COS's, named
/// by its `toolchain_env`), selected as COS's kernel-devenv does: `CC`,
/// and for clang the linker and assembler the config says the kernel had
/// (`LD_IS_LLD`, `AS_IS_LLVM`) with LLVM's binary tools.
pub fn published(wanted: &Wanted, config: &Config, cc: &str, cxx: Option<&str>, host_cc: &str) -> Chosen {
    let mut args = vec![format!("CC={cc}")];
    if let Some(cxx) = cxx {
        args.push(format!("CXX={cxx}"));
    }
    args.push(format!("HOSTCC={host_cc}"));
    if wanted.family == Family::Clang {
        // `x86_64-cros-linux-gnu-clang` → the `x86_64-cros-linux-gnu-` tools.
        let prefix = cc.strip_suffix("clang").filter(|p| p.ends_with('-')).unwrap_or("");
        if config.is_set("CONFIG_LD_IS_LLD") {
            args.push(format!("LD={prefix}ld.lld"));
        }
        args.extend(["OBJCOPY=llvm-objcopy".to_string(), "STRIP=llvm-strip".to_string()]);
        if config.is_set("CONFIG_AS_IS_LLVM") {
            args.push("LLVM_IAS=1".into());
        }
    }
    Chosen {
        path: PathBuf::from(cc),
        family: wanted.family,
        exact: true,
        banner: format!("{cc} of the toolchain published beside the kernel"),
        published: Some(args),
    }
}

/// Tools Kconfig probes whose presence becomes an option, and whether the
/// kernel's config had each.
pub fn probed_tools(config: &Config) -> Vec<(&'static str, bool)> {
    let rust = config.is_set("CONFIG_RUST_IS_AVAILABLE") || config.number("CONFIG_RUSTC_VERSION") > 0;
    vec![("pahole", config.number("CONFIG_PAHOLE_VERSION") > 0), ("rustc", rust), ("bindgen", rust)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_versions_come_from_the_banners_distributions_write() {
        assert_eq!(major_of("gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0"), Some(12));
        assert_eq!(major_of("gcc (Ubuntu 11.4.0-1ubuntu1~22.04) 11.4.0"), Some(11));
        assert_eq!(
            major_of("Chromium OS 12.0_pre408248_p20201125-r7 clang version 12.0.0 (/var/tmp/portage/llvm)"),
            Some(12)
        );
        assert_eq!(major_of("Debian clang version 16.0.6 (15)"), Some(16));
        assert_eq!(major_of("no version here"), None);
    }

    #[test]
    fn the_wanted_compiler_is_read_from_the_config() {
        let gcc = Config::parse("CONFIG_CC_VERSION_TEXT=\"gcc-12 (Debian 12.2.0-14) 12.2.0\"\nCONFIG_CC_IS_GCC=y\n");
        assert_eq!(
            Wanted::of(&gcc).unwrap(),
            Wanted { family: Family::Gcc, major: 12, text: Some("gcc-12 (Debian 12.2.0-14) 12.2.0".into()) }
        );
        let old = Config::parse("CONFIG_GCC_VERSION=80300\n");
        assert_eq!(Wanted::of(&old).unwrap().major, 8);
        // Before 4.18 a config names no compiler: any gcc, the comparison decides.
        assert_eq!(Wanted::of(&Config::parse("CONFIG_MODULES=y\n")).unwrap().major, 0);
        let clang = Config::parse("CONFIG_CC_IS_CLANG=y\nCONFIG_CLANG_VERSION=160006\n");
        assert_eq!(Wanted::of(&clang).unwrap().family, Family::Clang);
        assert!(Wanted::of(&Config::parse("")).is_err());
    }

    #[test]
    fn a_missing_compiler_names_what_to_install() {
        let wanted = Wanted { family: Family::Clang, major: 99, text: None };
        let err = choose(&wanted, &[PathBuf::from("/nonexistent")]).unwrap_err();
        assert!(err.contains("clang-99"), "{err}");
    }

    #[test]
    fn clang_is_selected_with_the_llvm_tool_set_of_its_suffix() {
        let chosen = |p: &str| Chosen {
            path: p.into(),
            family: Family::Clang,
            exact: true,
            banner: String::new(),
            published: None,
        };
        assert_eq!(chosen("/usr/bin/clang-16").make_args(), ["LLVM=-16"]);
        assert_eq!(chosen("/usr/bin/clang").make_args(), ["LLVM=1"]);
    }

    #[test]
    fn a_published_clang_toolchain_gets_the_tools_its_config_names() {
        let config = Config::parse(
            "CONFIG_CC_IS_CLANG=y\nCONFIG_CLANG_VERSION=170000\nCONFIG_LD_IS_LLD=y\nCONFIG_AS_IS_LLVM=y\n",
        );
        let wanted = Wanted::of(&config).unwrap();
        let cc = "x86_64-cros-linux-gnu-clang";
        let args = published(&wanted, &config, cc, Some("x86_64-cros-linux-gnu-clang++"), "gcc").make_args();
        assert_eq!(
            args,
            [
                "CC=x86_64-cros-linux-gnu-clang",
                "CXX=x86_64-cros-linux-gnu-clang++",
                "HOSTCC=gcc",
                "LD=x86_64-cros-linux-gnu-ld.lld",
                "OBJCOPY=llvm-objcopy",
                "STRIP=llvm-strip",
                "LLVM_IAS=1"
            ]
        );
        let gcc = Config::parse("CONFIG_CC_IS_GCC=y\nCONFIG_GCC_VERSION=120200\n");
        let args = published(&Wanted::of(&gcc).unwrap(), &gcc, "x86_64-cros-linux-gnu-gcc", None, "cc").make_args();
        assert_eq!(args, ["CC=x86_64-cros-linux-gnu-gcc", "HOSTCC=cc"]);
    }
}
