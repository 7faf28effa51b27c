//! A kernel `.config` read as data: option → value, and the comparison
//! that decides whether a prepared tree is faithful to the kernel that runs.

use std::collections::BTreeMap;

/// Bounds on a config file (a real one is ~300 KB and ~10k options).
pub const MAX_CONFIG_BYTES: usize = 8 << 20;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// `CONFIG_X` → its value as written (`y`, `m`, `"text"`, `123`), `n` for
    /// `# CONFIG_X is not set`.
    values: BTreeMap<String, String>,
    /// Written by Kconfig itself (a full `.config`), not a hand-kept defconfig.
    pub generated: bool,
}

impl Config {
    pub fn parse(text: &str) -> Config {
        let mut values = BTreeMap::new();
        let generated = text.lines().take(8).any(|l| l.contains("Automatically generated file"));
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("# ") {
                if let Some(name) = rest.strip_suffix(" is not set") {
                    if is_option(name) {
                        values.insert(name.to_string(), "n".to_string());
                    }
                }
            } else if let Some((name, value)) = line.split_once('=') {
                if is_option(name) {
                    values.insert(name.to_string(), value.to_string());
                }
            }
        }
        Config { values, generated }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The raw value; `None` when the option is absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// A string option without its quotes (`\"` and `\\` unescaped).
    pub fn text(&self, name: &str) -> Option<String> {
        let raw = self.get(name)?;
        let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
        Some(inner.replace("\\\"", "\"").replace("\\\\", "\\"))
    }

    /// A numeric option (0 when absent or not a number).
    pub fn number(&self, name: &str) -> u64 {
        self.get(name).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    pub fn is_set(&self, name: &str) -> bool {
        matches!(self.get(name), Some("y" | "m"))
    }
}

fn is_option(name: &str) -> bool {
    name.len() > 7
        && name.starts_with("CONFIG_")
        && name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b.is_ascii_lowercase())
}

/// Options whose text names the compiler without changing what is built:
/// two builds of one compiler release by different packagers differ here.
const DESCRIPTIVE: &[&str] = &["CONFIG_CC_VERSION_TEXT"];

/// How `prepared` differs from the kernel's config, one `OPTION: kernel →
/// prepared` line each. A generated `.config` must match option for option
/// (an option only `prepared` has is one the build environment added); a
/// hand-kept defconfig only for the options it states.
pub fn differences(kernel: &Config, prepared: &Config) -> Vec<String> {
    let value = |c: &Config, name: &str| c.get(name).unwrap_or("n").to_string();
    let mut names: Vec<&String> = kernel.values.keys().collect();
    if kernel.generated {
        names.extend(prepared.values.keys().filter(|k| !kernel.values.contains_key(*k)));
        names.sort();
    }
    names
        .into_iter()
        .filter(|name| !DESCRIPTIVE.contains(&name.as_str()))
        .filter_map(|name| {
            let (was, now) = (value(kernel, name), value(prepared, name));
            (was != now).then(|| format!("{name}: {was} → {now}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = "#\n# Automatically generated file; DO NOT EDIT.\n#\nCONFIG_CC_VERSION_TEXT=\"gcc-12 (Debian 12.2.0-14) 12.2.0\"\nCONFIG_GCC_VERSION=120200\nCONFIG_MODULES=y\n# CONFIG_DEBUG_X is not set\nCONFIG_LOCALVERSION=\"\"\n";

    #[test]
    fn options_values_and_unset_options_are_read() {
        let c = Config::parse(FULL);
        assert!(c.generated);
        assert_eq!(c.len(), 5);
        assert_eq!(c.text("CONFIG_CC_VERSION_TEXT").as_deref(), Some("gcc-12 (Debian 12.2.0-14) 12.2.0"));
        assert_eq!(c.number("CONFIG_GCC_VERSION"), 120200);
        assert!(c.is_set("CONFIG_MODULES") && !c.is_set("CONFIG_DEBUG_X"));
        assert_eq!(c.get("CONFIG_DEBUG_X"), Some("n"));
        assert_eq!(c.text("CONFIG_LOCALVERSION").as_deref(), Some(""));
    }

    #[test]
    fn a_full_config_must_match_option_for_option_but_the_compiler_text() {
        let kernel = Config::parse(FULL);
        let same = Config::parse(&FULL.replace("Debian 12.2.0-14", "Debian 12.2.0-14+deb12u1"));
        assert!(differences(&kernel, &same).is_empty());
        let changed = Config::parse(&format!("{}CONFIG_RUSTC_VERSION=109500\n", FULL.replace("120200", "120300")));
        assert_eq!(
            differences(&kernel, &changed),
            ["CONFIG_GCC_VERSION: 120200 → 120300", "CONFIG_RUSTC_VERSION: n → 109500"]
        );
        // Not set and absent are the same value.
        let absent = Config::parse(&FULL.replace("# CONFIG_DEBUG_X is not set\n", ""));
        assert!(differences(&kernel, &absent).is_empty());
    }

    #[test]
    fn a_defconfig_is_matched_on_the_options_it_states() {
        let defconfig = Config::parse("CONFIG_MODULES=y\nCONFIG_BPF=y\n");
        assert!(!defconfig.generated);
        let prepared = Config::parse(&format!("{FULL}CONFIG_BPF=y\n"));
        assert!(differences(&defconfig, &prepared).is_empty());
        let lost = Config::parse(FULL);
        assert_eq!(differences(&defconfig, &lost), ["CONFIG_BPF: y → n"]);
    }
}
