//! Kubernetes resource quantities (`100m`, `128Mi`, `1.5`, `2e3`), enough to compare them.

use std::cmp::Ordering;
use std::fmt;

/// A validated quantity: its canonical text as written and its numeric value.
#[derive(Clone, Debug)]
pub struct Quantity {
    text: String,
    value: f64,
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Quantity {
    /// Parses a quantity in Kubernetes' syntax.
    pub fn parse(text: &str) -> Result<Quantity, String> {
        let value = parse_value(text).ok_or_else(|| format!("`{text}` is not a Kubernetes quantity"))?;
        if value < 0.0 {
            return Err(format!("`{text}` is negative"));
        }
        Ok(Quantity { text: text.to_owned(), value })
    }

    /// The quantity as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Numeric value in base units (cores, bytes).
    pub fn value(&self) -> f64 {
        self.value
    }

    /// Compares the numeric values.
    pub fn cmp_value(&self, other: &Quantity) -> Ordering {
        self.value.total_cmp(&other.value)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The numeric value of a quantity string, or `None` when it is not one.
pub fn parse_value(text: &str) -> Option<f64> {
    let text = text.trim();
    if text.is_empty() || text.len() > 64 {
        return None;
    }
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 || number[1..].contains(['+', '-']) {
        return None;
    }
    let n: f64 = number.parse().ok()?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse::<i32>().ok().filter(|e| e.abs() <= 30)?),
        _ => return None,
    };
    let v = n * multiplier;
    v.is_finite().then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_suffixes() {
        let cases = [
            ("100m", 0.1),
            ("1", 1.0),
            ("1.5", 1.5),
            ("128Mi", 128.0 * 1024.0 * 1024.0),
            ("1G", 1e9),
            ("2e3", 2000.0),
            ("500k", 5e5),
            ("0", 0.0),
        ];
        for (text, value) in cases {
            assert!((parse_value(text).unwrap() - value).abs() < 1e-9, "{text}");
        }
    }

    #[test]
    fn rejects_what_kubernetes_rejects() {
        for text in ["", "abc", "1x", "Mi", "1.2.3", "--1", "1Mi2", "1e999"] {
            assert!(parse_value(text).is_none(), "{text}");
        }
        assert!(Quantity::parse("-1").is_err());
    }

    #[test]
    fn compares_across_units() {
        let a = Quantity::parse("64Mi").unwrap();
        let b = Quantity::parse("100M").unwrap();
        assert_eq!(a.cmp_value(&b), Ordering::Less);
        assert_eq!(Quantity::parse("1").unwrap().cmp_value(&Quantity::parse("1000m").unwrap()), Ordering::Equal);
    }
}
