//! Signature checks: which keys a source trusts ([`keys`]), OpenPGP
//! verification with `gpgv` as apt and rpm do ([`gpg`]), and RPM package
//! signatures (gpgcheck, [`rpm_signature`]).

pub mod gpg;
pub mod keys;
pub mod rpm_signature;
