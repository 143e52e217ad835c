//! The memory budget: the memory requests hold (bodies being read, and the engine's view of them
//! while it runs), shared by every request, so that concurrent large bodies cannot exhaust the
//! container's memory.
//!
//! A review is up to 3 MiB of object, and an UPDATE carries `object` and `oldObject`: one request
//! can hold 7 MiB of body. The engine's view of a body costs more memory than the body where the
//! JSON is dense (an argument `"",` is 3 bytes of JSON and 24 of view; a container of 40 bytes
//! is 300); the view is bounded ([`podmedic_engine::object::MAX_ITEMS`]), so a request reserves
//! [`cost_of`] its body: the body, and up to 16 times it for the view, at most 8 MiB more. It
//! reserves before reading (by `Content-Length`, or chunk by chunk when there is none) and keeps
//! the reservation until the engine has returned; a request that finds the budget spent is
//! answered 503 at once (the API server applies the webhook's `failurePolicy`: with podmedic's
//! `Ignore`, the object is admitted unchanged).

use std::path::Path;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget when no memory limit is found (outside a container, or a container without one).
pub const UNLIMITED_BUDGET: usize = 512 << 20;

/// The share of the container's memory limit the budget takes (half): the process needs the rest
/// for itself, its caches, and what the allocator keeps of freed memory.
pub const LIMIT_SHARE: usize = 2;

/// What the engine's view can cost per byte of body, at most (24 bytes for a 3-byte argument, and
/// a list that grows holds its old and its new buffer for a moment).
pub const VIEW_PER_BYTE: usize = 16;

/// The most the engine's view of one body can cost, whatever its size: 50,000 items of at most
/// 112 bytes (with the growth of their list), 3,000 containers of about 300 bytes, and the moves
/// and answer, bounded in their turn.
pub const VIEW_MAX: usize = 8 << 20;

/// The memory a request holding a body of `bytes` reserves: the body and the engine's view of it.
pub fn cost_of(bytes: usize) -> usize {
    bytes.saturating_add(bytes.saturating_mul(VIEW_PER_BYTE).min(VIEW_MAX))
}

/// The shared budget of body bytes in flight.
#[derive(Clone, Debug)]
pub struct MemoryBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

/// Bytes reserved by one request, returned to the budget when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: MemoryBudget,
    permit: Option<OwnedSemaphorePermit>,
}

impl MemoryBudget {
    /// A budget of `total` bytes.
    pub fn new(total: usize) -> MemoryBudget {
        let total = total.clamp(1, Semaphore::MAX_PERMITS);
        MemoryBudget { bytes: Arc::new(Semaphore::new(total)), total }
    }

    /// The budget for a process whose memory limit is `limit` (see [`LIMIT_SHARE`]), or
    /// [`UNLIMITED_BUDGET`] without one.
    pub fn for_memory_limit(limit: Option<u64>) -> MemoryBudget {
        let total = match limit {
            Some(limit) => usize::try_from(limit).unwrap_or(usize::MAX) / LIMIT_SHARE,
            None => UNLIMITED_BUDGET,
        };
        MemoryBudget::new(total)
    }

    /// Total bytes.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes reserved now.
    pub fn in_flight(&self) -> usize {
        self.total - self.bytes.available_permits()
    }

    /// An empty reservation, grown as a body arrives.
    pub fn reservation(&self) -> Reservation {
        Reservation { budget: self.clone(), permit: None }
    }
}

impl Reservation {
    /// Reserves `bytes` more; false (and nothing reserved) when the budget does not have them.
    pub fn grow(&mut self, bytes: usize) -> bool {
        if bytes == 0 {
            return true;
        }
        let Ok(bytes) = u32::try_from(bytes) else { return false };
        match self.budget.bytes.clone().try_acquire_many_owned(bytes) {
            Ok(more) => {
                match &mut self.permit {
                    Some(permit) => permit.merge(more),
                    None => self.permit = Some(more),
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.permit.as_ref().map_or(0, OwnedSemaphorePermit::num_permits)
    }
}

/// The memory limit of this process's cgroup, if it has one: cgroup v2 `memory.max` (of the
/// process's own cgroup, then the root seen from a container), else cgroup v1
/// `memory.limit_in_bytes`.
pub fn cgroup_memory_limit() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok();
    let v2_path = own.as_deref().and_then(|text| text.lines().find_map(|l| l.strip_prefix("0::")));
    let mut candidates = Vec::new();
    if let Some(path) = v2_path {
        candidates.push(Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/')).join("memory.max"));
    }
    candidates.push("/sys/fs/cgroup/memory.max".into());
    candidates.push("/sys/fs/cgroup/memory/memory.limit_in_bytes".into());
    candidates.iter().find_map(|path| std::fs::read_to_string(path).ok()).and_then(|text| parse_limit(&text))
}

/// A cgroup memory limit file's value: `max` (v2) or a value beyond any machine (v1's "no limit"
/// is 2^63 rounded down to a page) means none.
fn parse_limit(text: &str) -> Option<u64> {
    let limit: u64 = text.trim().parse().ok()?;
    (limit < 1 << 60).then_some(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_the_budget_and_return_it_when_dropped() {
        let budget = MemoryBudget::new(10);
        let mut first = budget.reservation();
        assert!(first.grow(6) && first.grow(2));
        assert_eq!((first.bytes(), budget.in_flight()), (8, 8));
        let mut second = budget.reservation();
        assert!(!second.grow(3), "only 2 bytes are left");
        assert_eq!(second.bytes(), 0);
        assert!(second.grow(2));
        drop(first);
        assert_eq!(budget.in_flight(), 2);
        assert!(second.grow(8));
        assert!(!budget.reservation().grow(usize::MAX), "more than a reservation can hold");
    }

    #[test]
    fn a_body_costs_itself_and_its_view() {
        assert_eq!(cost_of(12_000), 12_000 * 17);
        assert_eq!(cost_of(3 << 20), (3 << 20) + VIEW_MAX);
        assert_eq!(cost_of(usize::MAX), usize::MAX);
    }

    #[test]
    fn the_budget_is_a_share_of_the_memory_limit() {
        assert_eq!(MemoryBudget::for_memory_limit(Some(256 << 20)).total(), 128 << 20);
        assert_eq!(MemoryBudget::for_memory_limit(None).total(), UNLIMITED_BUDGET);
        assert_eq!(parse_limit("268435456\n"), Some(256 << 20));
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("9223372036854771712"), None, "cgroup v1 without a limit");
    }
}
