//! Form decoding (what arrives) and POP percent-encoding (what is signed).

/// POP encoding (rpc-protocol.md §2.2): keep `A-Za-z0-9-_.~`, every other UTF-8 byte `%XY`
/// with upper-case hex (so a space is `%20`, `*` is `%2A`, `~` stays).
pub fn pop_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Encodes pairs as a query string or form body, each name and value POP-encoded, in order.
pub fn form_encode<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let encoded: Vec<String> =
        pairs.iter().map(|(k, v)| format!("{}={}", pop_encode(k.as_ref()), pop_encode(v.as_ref()))).collect();
    encoded.join("&")
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space, `%XX` a byte) into pairs,
/// in order. Invalid escapes are kept literally; invalid UTF-8 becomes U+FFFD.
pub fn form_decode(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (unescape(k), unescape(v))
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pop_encoding_matches_the_spec() {
        assert_eq!(pop_encode("a b*c~/中!'()"), "a%20b%2Ac~%2F%E4%B8%AD%21%27%28%29");
        assert_eq!(pop_encode("2025-01-02T03:04:05Z"), "2025-01-02T03%3A04%3A05Z");
    }

    #[test]
    fn form_decoding_handles_plus_escapes_and_junk() {
        assert_eq!(
            form_decode("RepairTempParam.1.Value=22+2%2A2~%2Fx&Empty=&Flag"),
            vec![
                ("RepairTempParam.1.Value".into(), "22 2*2~/x".into()),
                ("Empty".into(), "".into()),
                ("Flag".into(), "".into())
            ]
        );
        assert_eq!(form_decode("a=%E4%B8%AD%"), vec![("a".into(), "中%".into())]);
        assert_eq!(form_decode("a=%zz%4"), vec![("a".into(), "%zz%4".into())]);
        assert_eq!(form_decode("a=%ff"), vec![("a".into(), "\u{fffd}".into())]);
    }
}
