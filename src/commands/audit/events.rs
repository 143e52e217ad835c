//! The Events of Pods, reduced to what explains a stuck Pod: reason, message, the container it is
//! about, how often and when. Both shapes the API server returns are read: the scheduler's
//! (events.k8s.io: `eventTime`, no `count`, no `lastTimestamp`) and the kubelet's (`count`,
//! `firstTimestamp`/`lastTimestamp`, `involvedObject.fieldPath: spec.containers{name}`).

use std::collections::HashMap;

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

/// Most Events kept per Pod (the most recent): a crash-looping Pod can gather many.
pub const MAX_EVENTS_PER_POD: usize = 16;

/// One Event about a Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEvent {
    /// `FailedScheduling`, `BackOff`, `Failed`, `Unhealthy`, `FailedMount`, ...
    pub reason: String,
    /// The message.
    pub message: String,
    /// The container, from `involvedObject.fieldPath` (`spec.containers{api}`,
    /// `spec.initContainers{init}`).
    pub container: Option<String>,
    /// `type: Warning`.
    pub warning: bool,
    /// How many times it happened (1 when the API server does not say).
    pub count: u64,
    /// When it last happened, whichever timestamp the Event has.
    pub last_seen: Option<Timestamp>,
}

/// The Events of each Pod, by (namespace, Pod name).
#[derive(Debug, Default, Clone)]
pub struct PodEvents(HashMap<(String, String), Vec<PodEvent>>);

impl PodEvents {
    /// Adds one Event object (items of an EventList); Events about other kinds are ignored. Only
    /// the [`MAX_EVENTS_PER_POD`] most recent of each Pod are kept.
    pub fn add(&mut self, event: &Value) {
        let involved = &event["involvedObject"];
        if involved["kind"] != "Pod" {
            return;
        }
        let (Some(namespace), Some(pod)) = (involved["namespace"].as_str(), involved["name"].as_str()) else { return };
        let text = |pointer: &str| event.pointer(pointer).and_then(Value::as_str);
        let time = |pointer: &str| text(pointer).and_then(|t| t.parse::<Timestamp>().ok());
        let last_seen =
            time("/series/lastObservedTime").or_else(|| time("/lastTimestamp")).or_else(|| time("/eventTime"));
        let container = text("/involvedObject/fieldPath")
            .and_then(|path| path.split_once('{'))
            .and_then(|(_, rest)| rest.strip_suffix('}'))
            .map(str::to_owned);
        let count = event.pointer("/series/count").or_else(|| event.get("count")).and_then(Value::as_u64).unwrap_or(1);
        let reduced = PodEvent {
            reason: text("/reason").unwrap_or_default().to_owned(),
            message: text("/message").unwrap_or_default().to_owned(),
            container,
            warning: text("/type") == Some("Warning"),
            count: count.max(1),
            last_seen,
        };
        let events = self.0.entry((namespace.to_owned(), pod.to_owned())).or_default();
        events.push(reduced);
        if events.len() > MAX_EVENTS_PER_POD {
            events.sort_by_key(|e| std::cmp::Reverse(e.last_seen));
            events.truncate(MAX_EVENTS_PER_POD);
        }
    }

    /// The Events of one Pod, most recent first.
    pub fn of(&self, namespace: &str, pod: &str) -> Vec<&PodEvent> {
        let mut events: Vec<&PodEvent> =
            self.0.get(&(namespace.to_owned(), pod.to_owned())).map(|e| e.iter().collect()).unwrap_or_default();
        events.sort_by_key(|e| std::cmp::Reverse(e.last_seen));
        events
    }
}

impl FromIterator<Value> for PodEvents {
    fn from_iter<I: IntoIterator<Item = Value>>(iter: I) -> Self {
        let mut events = PodEvents::default();
        for event in iter {
            events.add(&event);
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_of_the_real_events_are_read() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cluster-objects/events-stuck.json");
        let list: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let events: PodEvents = list["items"].as_array().unwrap().iter().cloned().collect();
        // The scheduler's: eventTime only, no count.
        let scheduling = events.of("shop", "trainer-too-big");
        let failed = scheduling.iter().find(|e| e.reason == "FailedScheduling").unwrap();
        assert!(failed.warning && failed.container.is_none() && failed.count == 1);
        assert!(failed.message.starts_with("0/1 nodes are available: 1 Insufficient cpu."));
        assert!(failed.last_seen.is_some());
        // The kubelet's: count, lastTimestamp, the container from fieldPath.
        let pulls = events.of("shop", "api-bad-image");
        let backoff = pulls.iter().find(|e| e.reason == "BackOff").unwrap();
        assert_eq!((backoff.container.as_deref(), backoff.count, backoff.warning), (Some("api"), 2, false));
        assert!(events.of("shop", "no-such-pod").is_empty());
    }

    #[test]
    fn only_the_most_recent_events_of_a_pod_are_kept() {
        let mut events = PodEvents::default();
        for second in 0..40 {
            events.add(&serde_json::json!({
                "involvedObject": {"kind": "Pod", "namespace": "a", "name": "p"},
                "reason": "BackOff", "type": "Warning", "message": format!("{second}"),
                "lastTimestamp": format!("2026-11-29T06:00:{second:02}Z")
            }));
        }
        let kept = events.of("a", "p");
        assert_eq!(kept.len(), MAX_EVENTS_PER_POD);
        assert_eq!(kept[0].message, "39");
    }
}
