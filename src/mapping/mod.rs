//! From row changes to documents: which keys a change affects (routing) and
//! how a set of keys is loaded from the source (loading). Both are driven by
//! `[mapping]` in the config, so another FDB subset is a config change.

pub mod fingerprint;
pub mod loader;
pub mod router;

pub use fingerprint::MappingFingerprint;
pub use loader::DocumentLoader;
pub use router::Router;

/// `?, ?, ?` for `n` parameters.
pub(crate) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}
