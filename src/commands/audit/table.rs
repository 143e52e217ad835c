//! The audit's report as aligned tables for people.

use k8s_openapi::jiff::Timestamp;

use super::report::AuditReport;

/// The report as aligned tables for people; `now` dates the "stuck for" column.
pub fn render_table(report: &AuditReport, now: Timestamp) -> String {
    let mut out = String::new();
    let cap = &report.native_sidecars;
    let nodes = match cap.nodes_checked {
        Some(1) => "1 node checked".to_owned(),
        Some(n) => format!("{n} nodes checked"),
        None => "kubelets not checked".to_owned(),
    };
    match &cap.reason {
        None => out.push_str(&format!("Native sidecars: available (API server {}, {nodes})\n", cap.api_server)),
        Some(reason) => out.push_str(&format!(
            "Native sidecars: NOT available: {reason} (API server {}, {nodes}); podmedic will not move sidecars\n",
            cap.api_server
        )),
    }
    for note in &report.notes {
        out.push_str(&format!("Note: {note}\n"));
    }

    out.push('\n');
    if report.would_change.is_empty() {
        out.push_str("Nothing podmedic would change.\n");
    } else {
        out.push_str(&format!("Would change ({}):\n", plural(report.would_change.len(), "object")));
        let rows: Vec<Vec<String>> = report
            .would_change
            .iter()
            .flat_map(|w| {
                let enabled = match w.namespace_enabled {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => "?",
                };
                w.changes.iter().map(move |c| {
                    vec![w.namespace.clone(), w.kind.clone(), w.name.clone(), enabled.to_owned(), c.to_string()]
                })
            })
            .collect();
        out.push_str(&aligned(&["NAMESPACE", "KIND", "NAME", "ENABLED", "CHANGE"], &rows));
        for w in &report.would_change {
            for note in &w.notes {
                out.push_str(&format!("Note: {}/{}/{}: {note}\n", w.namespace, w.kind, w.name));
            }
        }
    }

    out.push('\n');
    if report.stuck.is_empty() {
        out.push_str("No Job looks stuck on a sidecar.\n");
    } else {
        out.push_str(&format!(
            "Stuck on a sidecar ({}): main containers finished, a sidecar still running:\n",
            plural(report.stuck.len(), "Pod")
        ));
        let rows: Vec<Vec<String>> = report
            .stuck
            .iter()
            .map(|s| {
                let finished: Vec<String> =
                    s.stuck.finished.iter().map(|f| format!("{} (exit {})", f.name, f.exit_code)).collect();
                let since = s.stuck.finished_at.map_or_else(|| "?".to_owned(), |at| age(at, now));
                vec![
                    s.namespace.clone(),
                    s.job.clone(),
                    s.pod.clone(),
                    finished.join(", "),
                    s.stuck.running_sidecars.join(", "),
                    since,
                ]
            })
            .collect();
        out.push_str(&aligned(&["NAMESPACE", "JOB", "POD", "FINISHED", "STILL RUNNING", "STUCK FOR"], &rows));
    }

    out.push('\n');
    if report.not_running.is_empty() {
        out.push_str("Every Pod runs as it should.\n");
    } else {
        out.push_str(&format!("Not running ({}): why, and what to do:\n", plural(report.not_running.len(), "Pod")));
        let rows: Vec<Vec<String>> = report
            .not_running
            .iter()
            .map(|p| {
                let container = p.container.clone().unwrap_or_else(|| "-".into());
                vec![p.namespace.clone(), p.pod.clone(), p.status.clone(), container, p.cause.clone(), p.fix.clone()]
            })
            .collect();
        out.push_str(&aligned(&["NAMESPACE", "POD", "STATUS", "CONTAINER", "CAUSE", "FIX"], &rows));
    }
    out
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// Columns padded to their widest cell, two spaces apart, no trailing spaces.
fn aligned(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (cell, width) in cells.zip(&widths) {
            text.push_str(cell);
            text.extend(std::iter::repeat_n(' ', width.saturating_sub(cell.chars().count()) + 2));
        }
        let mut text = text.trim_end().to_owned();
        text.push('\n');
        text
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// A kubectl-style age: `45s`, `12m`, `3h12m`, `2d5h`.
fn age(since: Timestamp, now: Timestamp) -> String {
    let secs = now.as_second().saturating_sub(since.as_second()).max(0);
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h{m}m"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let now = t("2025-03-14T05:00:00Z");
        assert_eq!(age(t("2025-03-14T04:59:15Z"), now), "45s");
        assert_eq!(age(t("2025-03-14T04:48:00Z"), now), "12m");
        assert_eq!(age(t("2025-03-12T00:00:00Z"), now), "2d5h");
        assert_eq!(age(t("2025-03-14T06:00:00Z"), now), "0s");
    }
}
