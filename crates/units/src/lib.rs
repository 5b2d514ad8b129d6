//! The one size grammar of the workspace, shared by the daemon's command line and config
//! file, the backing store specs, the load generator and the bench task.
//!
//! ```text
//! size   = digits [unit]
//! unit   = ("K" | "M" | "G" | "T" | "P") ["B" | "iB"] | "B"     (any case)
//! ```
//!
//! Every multiple is a power of 1024 (`1K` = 1024, `1MB` = `1MiB` = 1048576), as in tgt and
//! fio. Blanks around the text are ignored; a size is above zero and fits 64 bits.

#![forbid(unsafe_code)]

use std::fmt;

/// Why a text is not a size. Its `Display` is one line that quotes the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeError {
    text: String,
    problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Problem {
    NoNumber,
    UnknownUnit(String),
    Zero,
    TooLarge,
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = &self.text;
        match &self.problem {
            Problem::NoNumber => write!(
                f,
                "invalid size {text:?}: expected a number with an optional unit K, M, G, T or P"
            ),
            Problem::UnknownUnit(unit) => write!(
                f,
                "invalid size {text:?}: unknown unit {unit:?} (expected K, M, G, T or P)"
            ),
            Problem::Zero => write!(f, "invalid size {text:?}: must be above zero"),
            Problem::TooLarge => write!(f, "invalid size {text:?}: must be below 16 EiB"),
        }
    }
}

impl std::error::Error for SizeError {}

/// Parses a size such as `4096`, `4k`, `64M`, `2GiB`, `1TB` (all binary multiples).
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let trimmed = text.trim();
    let error = |problem| SizeError {
        text: trimmed.to_string(),
        problem,
    };
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    if digits.is_empty() {
        return Err(error(Problem::NoNumber));
    }
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        "P" | "PB" | "PIB" => 50,
        _ => return Err(error(Problem::UnknownUnit(unit.to_string()))),
    };
    // All digits: the only way to fail is overflow.
    let number: u64 = digits.parse().map_err(|_| error(Problem::TooLarge))?;
    match number.checked_mul(1u64 << shift) {
        Some(0) => Err(error(Problem::Zero)),
        Some(n) => Ok(n),
        None => Err(error(Problem::TooLarge)),
    }
}

/// Writes `bytes` in the grammar [`parse_size`] reads, with the largest unit that divides
/// it exactly: `1073741824` is `1G`, `1536` is `1536`... so that `parse_size(format_size(n))`
/// is `n`.
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(50, "P"), (40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes != 0 && bytes.trailing_zeros() >= shift {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// `bytes` for a person to read (logs, tables): in GiB or MiB with one decimal, or in
/// bytes below 1 MiB. Not for reading back: [`format_size`] is exact.
pub fn format_human(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    if bytes >= GIB {
        format!("{:.1} GiB", bytes as f64 / GIB as f64)
    } else if bytes >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_for_people() {
        assert_eq!(format_human(3 << 30), "3.0 GiB");
        assert_eq!(format_human((3 << 30) + (1 << 29)), "3.5 GiB");
        assert_eq!(format_human(8 << 20), "8.0 MiB");
        assert_eq!(format_human(4096), "4096 bytes");
    }

    #[test]
    fn sizes_in_every_spelling() {
        let cases = [
            ("4096", 4096),
            ("1b", 1),
            ("4k", 4096),
            ("4K", 4096),
            ("4KB", 4096),
            ("4KiB", 4096),
            ("64M", 64 * 1024 * 1024),
            ("64mib", 64 * 1024 * 1024),
            ("1G", 1024 * 1024 * 1024),
            ("2GiB", 2 * 1024 * 1024 * 1024),
            ("3T", 3 * 1024u64.pow(4)),
            ("1P", 1024u64.pow(5)),
            ("  8M  ", 8 * 1024 * 1024),
            ("16383P", 16383 * 1024u64.pow(5)),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_size(text), Ok(bytes), "{text:?}");
        }
    }

    #[test]
    fn bad_sizes_are_named_on_one_line() {
        let cases = [
            ("", "expected a number"),
            ("M", "expected a number"),
            ("-1", "expected a number"),
            ("1.5G", "unknown unit \".5G\""),
            ("12Q", "unknown unit \"Q\""),
            ("1 G", "unknown unit \" G\""),
            ("0", "must be above zero"),
            ("0G", "must be above zero"),
            ("16384P", "below 16 EiB"),
            ("99999999999999999999", "below 16 EiB"),
        ];
        for (text, problem) in cases {
            let message = parse_size(text).unwrap_err().to_string();
            assert!(message.contains(problem), "{text:?}: {message}");
            assert!(message.contains(&format!("{:?}", text.trim())), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
    }

    #[test]
    fn formatted_sizes_read_back() {
        let cases = [
            (1, "1"),
            (1536, "1536"),
            (4096, "4K"),
            (64 << 20, "64M"),
            (1 << 30, "1G"),
            (3 << 40, "3T"),
            (1 << 50, "1P"),
        ];
        for (bytes, text) in cases {
            assert_eq!(format_size(bytes), text);
            assert_eq!(parse_size(text), Ok(bytes));
        }
    }
}
