//! Inode numbers: stateless, computed from what they denote, so they stay
//! valid across manifest refreshes (slots and type numbers are never
//! reused while mounted) and across eviction and rebuild (a bundle's pack
//! is deterministic, so record indexes stay).
//!
//! ```text
//! /                               ino 1
//! /<type>/                        ino 16 + type number
//! /<type>/<name>/                 ino (slot+1) << 32 | 0     the bundle's tree (pack record 0)
//! /<type>/<name>/<path>           ino (slot+1) << 32 | record index in the pack
//! /<type>/<name>.tgz              ino (slot+1) << 32 | 0xffff_ffff
//! /bundles/bundle-<name>.tgz      the same inode as /<type>/<name>.tgz
//! /.kpackfs/status, status.json   ino 4, 5
//! /by-uname/                      ino 6
//! /.kpackfs/metrics               ino 7   (Prometheus text)
//! /by-uname/<uname>               ino (slot+1) << 32 | 0xffff_fffe   a symlink: ../<type>/<name>
//! ```

use super::meta::MetaFile;
use crate::namespace::Dir;

const ROOT: u64 = 1;
const BUNDLES_DIR: u64 = 2;
const META_DIR: u64 = 3;
const STATUS: u64 = 4;
const STATUS_JSON: u64 = 5;
const BY_UNAME_DIR: u64 = 6;
const METRICS: u64 = 7;
const TYPE_BASE: u64 = 16;
const TGZ: u32 = u32::MAX;
const UNAME_LINK: u32 = u32::MAX - 1;

pub const META_NAME: &str = ".kpackfs";

/// What an inode number denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ino {
    Root,
    BundlesDir,
    MetaDir,
    Status,
    StatusJson,
    Metrics,
    ByUnameDir,
    TypeDir(u32),
    /// A node of a bundle's tree (index 0 is the bundle directory).
    Node {
        slot: u32,
        index: u32,
    },
    Tgz {
        slot: u32,
    },
    /// `/by-uname/<uname>`: a symlink to the bundle serving that release.
    UnameLink {
        slot: u32,
    },
}

impl Ino {
    pub fn decode(ino: u64) -> Option<Ino> {
        let high = (ino >> 32) as u32;
        let low = ino as u32;
        if high == 0 {
            return Some(match ino {
                ROOT => Ino::Root,
                BUNDLES_DIR => Ino::BundlesDir,
                META_DIR => Ino::MetaDir,
                STATUS => Ino::Status,
                STATUS_JSON => Ino::StatusJson,
                METRICS => Ino::Metrics,
                BY_UNAME_DIR => Ino::ByUnameDir,
                n if n >= TYPE_BASE => Ino::TypeDir((n - TYPE_BASE) as u32),
                _ => return None,
            });
        }
        let slot = high - 1;
        Some(match low {
            TGZ => Ino::Tgz { slot },
            UNAME_LINK => Ino::UnameLink { slot },
            index => Ino::Node { slot, index },
        })
    }

    pub fn encode(self) -> u64 {
        match self {
            Ino::Root => ROOT,
            Ino::BundlesDir => BUNDLES_DIR,
            Ino::MetaDir => META_DIR,
            Ino::Status => STATUS,
            Ino::StatusJson => STATUS_JSON,
            Ino::Metrics => METRICS,
            Ino::ByUnameDir => BY_UNAME_DIR,
            Ino::TypeDir(t) => TYPE_BASE + t as u64,
            Ino::Node { slot, index } => ((slot as u64 + 1) << 32) | index as u64,
            Ino::Tgz { slot } => ((slot as u64 + 1) << 32) | TGZ as u64,
            Ino::UnameLink { slot } => ((slot as u64 + 1) << 32) | UNAME_LINK as u64,
        }
    }
}

impl Ino {
    /// The `/.kpackfs/` file this inode is, if it is one.
    pub fn meta_file(self) -> Option<MetaFile> {
        match self {
            Ino::Status => Some(MetaFile::Status),
            Ino::StatusJson => Some(MetaFile::StatusJson),
            Ino::Metrics => Some(MetaFile::Metrics),
            _ => None,
        }
    }
}

impl From<MetaFile> for Ino {
    fn from(file: MetaFile) -> Ino {
        match file {
            MetaFile::Status => Ino::Status,
            MetaFile::StatusJson => Ino::StatusJson,
            MetaFile::Metrics => Ino::Metrics,
        }
    }
}

impl From<Dir> for Ino {
    fn from(dir: Dir) -> Ino {
        match dir {
            Dir::Root => Ino::Root,
            Dir::Type(t) => Ino::TypeDir(t),
            Dir::Bundles => Ino::BundlesDir,
            Dir::ByUname => Ino::ByUnameDir,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inode_numbers_round_trip() {
        for ino in [
            Ino::Root,
            Ino::Status,
            Ino::Metrics,
            Ino::TypeDir(3),
            Ino::Node { slot: 0, index: 0 },
            Ino::Node { slot: 6472, index: 99 },
            Ino::Tgz { slot: 5 },
            Ino::UnameLink { slot: 7 },
            Ino::ByUnameDir,
        ] {
            assert_eq!(Ino::decode(ino.encode()), Some(ino));
        }
    }
}
