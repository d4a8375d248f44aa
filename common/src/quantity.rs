//! Resource quantities (`100m`, `64Mi`, `1.5`, `2e3`) as numbers.

/// The value of a quantity in its base unit (cores, bytes), if it parses.
pub fn parse(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let n: f64 = number.parse().ok()?;
    let factor = match suffix {
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
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0f64.powi(3),
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        "Ei" => 1024.0f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse().ok()?),
        _ => return None,
    };
    Some(n * factor)
}

/// Thousandths of the base unit, rounded up (CPU in millicores).
pub fn milli(q: &str) -> Option<i64> {
    parse(q).map(|v| (v * 1000.0).ceil() as i64)
}

/// Whole base units, rounded up (memory in bytes, pod counts).
pub fn value(q: &str) -> Option<i64> {
    parse(q).map(|v| v.ceil() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_memory_quantities() {
        assert_eq!(milli("100m"), Some(100));
        assert_eq!(milli("1"), Some(1000));
        assert_eq!(milli("0.5"), Some(500));
        assert_eq!(milli("2.5"), Some(2500));
        assert_eq!(value("64Mi"), Some(64 * 1024 * 1024));
        assert_eq!(value("1G"), Some(1_000_000_000));
        assert_eq!(value("1e3"), Some(1000));
        assert_eq!(value("110"), Some(110));
        assert_eq!(value("12Qi"), None);
        assert_eq!(value("x"), None);
    }
}
