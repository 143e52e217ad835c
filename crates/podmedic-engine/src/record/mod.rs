//! podmedic's two records on the objects it changes, both written by the plan in one place
//! (`plan::record`), each for a different reader:
//!
//! - [`changes`]: `podmedic.io/changes`, text for people: what podmedic changed and why it left
//!   things out; rewritten on every mutation, de-duplicated and capped at [`MAX_CHANGES_LEN`].
//!   Nothing decides anything from it, except that convergence (`converge`) reads the moves an
//!   older podmedic wrote there before [`moved`] existed.
//! - [`moved`]: `podmedic.io/moved`, JSON for podmedic itself: which containers it moved into
//!   `initContainers`, with a fingerprint of the user's container in templates; never shortened.
//!   Convergence of GitOps re-applies relies on it.

pub(crate) mod changes;
pub mod moved;

pub use changes::MAX_CHANGES_LEN;
pub use moved::{MovedRecord, fingerprint};
