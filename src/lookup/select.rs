//! The bundles a list of selectors picks, for the commands that act on
//! many (`publish`, `warm`): NAME, TYPE/NAME, TYPE/ (a whole type), or a
//! regular expression over TYPE/NAME.

use super::resolve::resolve;
use crate::manifest::index::Index;
use crate::namespace::served_slots;
use anyhow::{bail, Context, Result};

/// The served slots the selectors pick, each once, in (type, name) order.
pub fn select(index: &Index, selectors: &[String]) -> Result<Vec<u32>> {
    let served = served_slots(index);
    if selectors.is_empty() {
        return Ok(served);
    }
    let label = |s: u32| format!("{}/{}", index.kind(s).unwrap_or_default(), index.name(s).unwrap_or_default());
    let mut picked = std::collections::BTreeSet::new();
    for sel in selectors {
        let before = picked.len();
        if let Some(kind) = sel.strip_suffix('/') {
            picked.extend(served.iter().copied().filter(|s| index.kind(*s) == Some(kind)));
        } else if let Ok(slot) = resolve(index, sel) {
            picked.insert(slot);
        } else {
            let re = regex::Regex::new(sel)
                .with_context(|| format!("selector {sel:?} is no bundle and no regular expression"))?;
            picked.extend(served.iter().copied().filter(|s| re.is_match(&label(*s))));
        }
        if picked.len() == before && !served.iter().any(|s| picked.contains(s) && sel.ends_with('/')) {
            bail!("selector {sel:?} matches no bundle");
        }
    }
    Ok(served.into_iter().filter(|s| picked.contains(s)).collect())
}
