//! Flag values with units: durations (`500ms`, `2s`, `1m`), byte sizes (`7Mi`) and certificate
//! validities (`365d`, `12h`).

use std::time::Duration;

/// Parses `500ms`, `2s`, `1m`, `1h` (one number and one unit; a bare number means seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration such as 500ms, 2s or 1m"))?;
    let millis = match unit.trim() {
        "ms" => Some(number),
        "" | "s" => number.checked_mul(1_000),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        other => return Err(format!("unknown duration unit {other:?} in {text:?} (use ms, s, m or h)")),
    };
    millis.map(Duration::from_millis).ok_or_else(|| format!("{text:?} is too long"))
}

/// [`parse_duration`], refusing zero (a zero interval or timeout is never what was meant).
pub fn parse_nonzero_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err("the duration must be longer than zero".into()),
        d => Ok(d),
    }
}

/// Parses a byte count: `7340032`, `512Ki`, `7Mi`, `1Gi`.
pub fn parse_byte_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number.parse().map_err(|_| format!("{text:?} is not a size such as 7340032 or 7Mi"))?;
    let factor: usize = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} in {text:?} (use Ki, Mi or Gi)")),
    };
    match number.checked_mul(factor) {
        Some(0) => Err("the size must be at least 1 byte".into()),
        Some(n) => Ok(n),
        None => Err(format!("{text:?} is too large")),
    }
}

/// Parses `365d` or `12h` (a bare number is days).
pub fn parse_validity(s: &str) -> Result<Duration, String> {
    let (number, unit_secs) = match s.strip_suffix('d') {
        Some(n) => (n, 86_400),
        None => match s.strip_suffix('h') {
            Some(n) => (n, 3_600),
            None => (s, 86_400),
        },
    };
    match number.parse::<u64>() {
        Ok(n) if n > 0 && n <= 100 * 365 * 86_400 / unit_secs => Ok(Duration::from_secs(n * unit_secs)),
        _ => Err(format!("{s:?} is not a validity such as 365d or 12h (at most 100 years)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("2 weeks").is_err());
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_nonzero_duration("0s").is_err());
    }

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_byte_size("7Mi"), Ok(7 * 1024 * 1024));
        assert_eq!(parse_byte_size("512Ki"), Ok(512 * 1024));
        assert_eq!(parse_byte_size("1000"), Ok(1000));
        assert!(parse_byte_size("0").is_err());
        assert!(parse_byte_size("7MB").is_err());
    }
}
