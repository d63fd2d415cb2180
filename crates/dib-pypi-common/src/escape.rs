//! Percent-escaping of raw bytes for line-based state files (journal, mirror state).
//!
//! Paths are arbitrary bytes; escaping every byte a format cannot carry
//! (newline, tab, space, non-UTF-8) as `%XX` keeps one record per line.

use std::borrow::Cow;

/// Append `field` to `out`, writing `%` and every byte for which `keep`
/// is false as `%XX`.
pub fn escape_into(field: &[u8], keep: impl Fn(u8) -> bool, out: &mut Vec<u8>) {
    for &b in field {
        if b != b'%' && keep(b) {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
}

/// Undo [`escape_into`]; `None` on a malformed escape.
pub fn unescape(field: &[u8]) -> Option<Cow<'_, [u8]>> {
    if !field.contains(&b'%') {
        return Some(Cow::Borrowed(field));
    }
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'%' {
            let hex = std::str::from_utf8(field.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    Some(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_any_bytes() {
        let raw = b"/a b%\n\t\xff/\x00x";
        let mut out = Vec::new();
        escape_into(raw, |b| b.is_ascii_graphic(), &mut out);
        assert_eq!(out, b"/a%20b%25%0A%09%FF/%00x");
        assert_eq!(unescape(&out).unwrap().as_ref(), raw);
    }

    #[test]
    fn malformed_escapes_are_refused() {
        assert!(unescape(b"%4").is_none());
        assert!(unescape(b"%zz").is_none());
        assert!(matches!(unescape(b"plain"), Some(Cow::Borrowed(_))));
    }
}
