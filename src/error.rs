//! The one table that decides retry versus stop.
//!
//! Every module has its own error type; each can say whether it is
//! [`ErrorClass::Transient`] (the same operation may succeed later: reconnect,
//! back off, try again) or [`ErrorClass::Definite`] (retrying cannot help: the
//! process stops and the message tells the operator what to do).

/// Whether an error is worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Network blips, restarts, throttling: back off and retry from the checkpoint.
    Transient,
    /// Configuration, permissions, incompatible servers: stop with an operator hint.
    Definite,
}

/// Implemented by every module error so the pipeline can decide retry vs stop
/// without matching on foreign types.
pub trait Classify {
    /// The class of this error.
    fn class(&self) -> ErrorClass;

    /// True when retrying may help.
    fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }
}
