//! A count of the engine's steps, for the tests that prove its cost grows linearly with the size of
//! what it is given (a hostile Pod is up to 3 MiB; see `tests/growth.rs`).
//!
//! Every loop over object data counts its iterations here, and every comparison the image matcher
//! makes. Without the `count-work` feature [`step`] is an empty inline function and the count does
//! not exist; the engine's own tests turn the feature on through a dev-dependency of the crate on
//! itself, so release builds (and `cargo build`) never carry it.

/// Counts `n` steps of the current engine call.
#[cfg(not(feature = "count-work"))]
#[inline(always)]
pub(crate) fn step(_n: usize) {}

#[cfg(feature = "count-work")]
thread_local! {
    static STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts `n` steps of the current engine call.
#[cfg(feature = "count-work")]
pub(crate) fn step(n: usize) {
    STEPS.with(|steps| steps.set(steps.get().saturating_add(n as u64)));
}

/// Runs `f` and returns its result with the number of engine steps it took (on this thread).
#[cfg(feature = "count-work")]
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = STEPS.with(std::cell::Cell::get);
    let result = f();
    (result, STEPS.with(std::cell::Cell::get) - before)
}
