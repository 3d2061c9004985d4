//! Lowercase hex, for store keys and fingerprints.

/// `bytes` as lowercase hex: the store keys, fingerprints and operation fingerprints. (One
/// allocation, where `format!` per byte made one per byte on every request.)
pub(crate) fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    text
}
