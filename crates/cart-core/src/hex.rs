//! Lowercase hex, for store keys and fingerprints.

/// `bytes` as lowercase hex: the store keys, fingerprints and operation fingerprints. (One
/// allocation, where `format!` per byte made one per byte on every request.)
pub(crate) fn lower_hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    push_lower_hex(&mut text, bytes);
    text
}

/// Appends `bytes` as lowercase hex to `text` (a store key after its prefix, with no second
/// allocation or `format!`).
pub(crate) fn push_lower_hex(text: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    text.reserve(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
}
