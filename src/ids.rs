//! Identifiers as types: a bundle id (kernel-packer's id, the sha256 of the
//! sorted simplified package names) and a content digest. Both are 32 bytes
//! shown as 64 lowercase hex digits.

use std::fmt;

macro_rules! digest_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// From 64 hex digits (either case); `None` for anything else.
            pub fn parse(hex: &str) -> Option<$name> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(hex, &mut out).ok()?;
                Some($name(out))
            }

            pub fn hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first 12 hex digits, for messages.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..6])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }
    };
}

digest_type!(
    /// A bundle's id: what determines its content (and BUNDLE_CHECKSUM).
    BundleId
);
digest_type!(
    /// A sha256 digest of some bytes (a package file, a .tgz).
    Sha256
);

impl Sha256 {
    pub fn of(data: &[u8]) -> Sha256 {
        use sha2::Digest;
        Sha256(sha2::Sha256::digest(data).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_refusals() {
        let hex = "0d2a8b79202c07478d92aa42ddefac08e88e0faa6f381400d17dbe553910e813";
        let id = BundleId::parse(hex).unwrap();
        assert_eq!(id.to_string(), hex);
        assert_eq!(id.short(), "0d2a8b79202c");
        assert_eq!(BundleId::parse(&hex.to_uppercase()), Some(id));
        assert!(BundleId::parse(&hex[1..]).is_none());
        assert!(BundleId::parse(&format!("{}g", &hex[1..])).is_none());
        assert_eq!(Sha256::of(b"").hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
