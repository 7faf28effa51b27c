//! Finding a bundle from what users have: the view a mount serves
//! ([`view`]), every name form of a bundle ([`resolve`]), suggestions for
//! typos ([`suggest`]), and kernels identified the ecosystem's ways — the
//! running host, a release, Falco's release and version, a package file,
//! collector's bundle name ([`which`]); and kernel-crawler's list format,
//! for driverkit ([`falco`]).

pub use crate::manifest::arch;
pub mod falco;
pub mod link;
pub mod resolve;
pub mod select;
pub mod suggest;
pub mod view;
pub mod which;
