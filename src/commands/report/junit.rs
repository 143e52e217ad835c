//! JUnit XML as GitLab and the JUnit viewers of GitHub Actions read it: one `testsuite` for the
//! run, one `testcase` per object (named `namespace/Kind/name`, unique, since GitLab keeps only
//! the first of two test cases with the same name), failing when a finding fails the check. Its
//! other findings go to the test case's `system-out`.

use std::fmt::Write as _;
use std::io::Write;

use super::{Level, Report};

/// Writes the report as JUnit XML.
pub fn write_junit(out: &mut impl Write, report: &Report) -> std::io::Result<()> {
    let tests = report.objects.len();
    let failures = report.objects.iter().filter(|o| o.fails()).count();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let command = escape(&report.command);
    let _ = writeln!(xml, "<testsuites name=\"podmedic\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\">");
    let _ = writeln!(
        xml,
        "  <testsuite name=\"{command}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\">"
    );
    for object in &report.objects {
        let name = escape(&object.qualified_name());
        let class = escape(object.file.as_deref().or(object.namespace.as_deref()).unwrap_or("podmedic"));
        let file = object.file.as_deref().map(|f| format!(" file=\"{}\"", escape(f))).unwrap_or_default();
        let line = object.line.map(|l| format!(" line=\"{l}\"")).unwrap_or_default();
        if object.findings.is_empty() {
            let _ = writeln!(xml, "    <testcase classname=\"{class}\" name=\"{name}\"{file}{line}/>");
            continue;
        }
        let _ = writeln!(xml, "    <testcase classname=\"{class}\" name=\"{name}\"{file}{line}>");
        let describe = |f: &super::Finding| {
            let at = match (&object.file, f.line.or(object.line)) {
                (Some(file), Some(line)) => format!("{file}:{line}: "),
                (Some(file), None) => format!("{file}: "),
                _ => String::new(),
            };
            format!("{at}{}: {}", f.rule, f.text())
        };
        let failing: Vec<_> = object.findings.iter().filter(|f| f.level == Level::Error).collect();
        if let Some(first) = failing.first() {
            let message = if failing.len() == 1 {
                describe(first)
            } else {
                format!("{} and {} more", describe(first), failing.len() - 1)
            };
            let body: Vec<String> = failing.iter().map(|f| describe(f)).collect();
            let _ = writeln!(
                xml,
                "      <failure message=\"{}\" type=\"{}\">{}</failure>",
                escape(&message),
                escape(first.rule),
                escape(&body.join("\n"))
            );
        }
        let said: Vec<String> = object.findings.iter().filter(|f| f.level != Level::Error).map(describe).collect();
        if !said.is_empty() {
            let _ = writeln!(xml, "      <system-out>{}</system-out>", escape(&said.join("\n")));
        }
        let _ = writeln!(xml, "    </testcase>");
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    out.write_all(xml.as_bytes())
}

/// Escapes text for XML content and attribute values, and drops the control characters XML 1.0
/// cannot hold at all.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\t' | '\r' => out.push(' '),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_drops_control_characters() {
        assert_eq!(escape("a<b & \"c\"\u{1}\nd"), "a&lt;b &amp; &quot;c&quot;&#10;d");
    }
}
