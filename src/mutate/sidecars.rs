//! Which containers are long-running sidecars, and how they move.
use super::{Context, Mutation, view};

pub(super) fn plan(_object: &view::Object<'_>, _ctx: &Context<'_>) -> Mutation {
    Mutation::default()
}
