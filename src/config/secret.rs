//! Values that must never be printed, and what may be printed of them.

use std::fmt;

use serde::Deserialize;

/// A string that must never be printed: URLs with passwords, tokens.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The clear value, for handing to a client library only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Strips user info from a URL so it can be logged (`mysql://u:p@h/db` -> `mysql://h/db`).
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => format!("{}://{}", &url[..scheme_end], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// The region of a Secrets Manager ARN
/// (`arn:aws:secretsmanager:<region>:<account>:secret:<name>`).
pub fn arn_region(arn: &str) -> Result<String, String> {
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    match parts.as_slice() {
        ["arn", _, "secretsmanager", region, _, "secret", name] if !region.is_empty() && !name.is_empty() => Ok((*region).to_owned()),
        _ => Err("must be a Secrets Manager ARN: arn:aws:secretsmanager:<region>:<account>:secret:<name>".into()),
    }
}
