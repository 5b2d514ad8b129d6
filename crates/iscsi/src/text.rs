//! Text key=value encoding (RFC 7143 section 6.1): `key=value\0` pairs in the data segment
//! of Login and Text PDUs.

use crate::ProtocolError;

/// Longest key name (RFC 7143 6.1: up to 63 bytes).
pub const MAX_KEY_LEN: usize = 63;
/// Longest value accepted (RFC 7143 6.1 allows 255 for most and 8192 for some keys; we
/// accept up to 8192 everywhere).
pub const MAX_VALUE_LEN: usize = 8192;

/// Parses `key=value\0...` into pairs in order. A missing final NUL is tolerated; empty
/// strings between NULs are skipped.
pub fn parse(data: &[u8]) -> Result<Vec<(String, String)>, ProtocolError> {
    let mut out = Vec::new();
    for item in data.split(|&b| b == 0) {
        if item.is_empty() {
            continue;
        }
        let s = std::str::from_utf8(item)
            .map_err(|_| ProtocolError::Malformed("text key=value is not UTF-8".into()))?;
        let Some((k, v)) = s.split_once('=') else {
            return Err(ProtocolError::Malformed(format!(
                "text item without '=': {:?}",
                truncate(s)
            )));
        };
        if k.is_empty() || k.len() > MAX_KEY_LEN {
            return Err(ProtocolError::Malformed(format!(
                "bad text key {:?}",
                truncate(k)
            )));
        }
        if v.len() > MAX_VALUE_LEN {
            return Err(ProtocolError::Malformed(format!("value of {k} too long")));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Appends `key=value\0` to `out`.
pub fn push(out: &mut Vec<u8>, key: &str, value: &str) {
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value.as_bytes());
    out.push(0);
}

/// Encodes pairs as `key=value\0...`.
pub fn encode<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        push(&mut out, k.as_ref(), v.as_ref());
    }
    out
}
