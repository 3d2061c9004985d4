//! Money as integer cents.
//!
//! JSON carries prices as dollars with at most two decimals (`2500`, `12.99`, `0.5`). They are
//! read from, and written as, the raw JSON number text, so a price never passes through a float
//! and totals are exact.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use std::fmt;

/// The highest accepted unit price: $1,000,000.
pub const MAX_PRICE_CENTS: u64 = 100_000_000;

/// An amount of money in cents.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Cents(pub u64);

impl Cents {
    /// `self * quantity`, or `None` on overflow.
    pub fn checked_mul(self, quantity: u64) -> Option<Cents> {
        self.0.checked_mul(quantity).map(Cents)
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Cents) -> Option<Cents> {
        self.0.checked_add(other.0).map(Cents)
    }
}

/// Why a JSON price was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PriceError {
    /// Not a JSON number (a string, `null`, an object, malformed text...).
    NotANumber,
    /// Has a minus sign.
    Negative,
    /// Is not a whole number of cents (three or more significant decimals).
    TooPrecise,
    /// Exceeds [`MAX_PRICE_CENTS`].
    TooLarge,
}

impl fmt::Display for PriceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PriceError::NotANumber => "price must be a JSON number of dollars, e.g. 2500 or 12.99",
            PriceError::Negative => "price must not be negative",
            PriceError::TooPrecise => "price must have at most two decimals (whole cents)",
            PriceError::TooLarge => "price must be at most 1000000",
        })
    }
}

impl std::error::Error for PriceError {}

/// Parses the text of a JSON number of dollars into cents, exactly.
///
/// Accepts the full JSON number grammar, exponents included (`1e3` is 1000 dollars,
/// `1299e-2` is 12.99), as long as the value is a whole number of cents: `12.990` is fine,
/// `12.999` is not. Strings such as `"12"` are refused: the seed's clients send numbers.
pub fn parse_price(text: &str) -> Result<Cents, PriceError> {
    // JSON's own whitespace only (RFC 8259 section 2): `str::trim` would also take Unicode
    // spaces such as U+000B or U+3000 around what then is not JSON.
    let text = text.trim_matches([' ', '\t', '\n', '\r']);
    let number = JsonNumber::parse(text).ok_or(PriceError::NotANumber)?;
    if number.negative {
        return Err(PriceError::Negative);
    }

    // value = digits * 10^(exponent - fraction digits); cents = value * 100.
    let mut digits: String = number.int.chars().chain(number.frac.chars()).collect();
    let trimmed = digits.trim_start_matches('0').len();
    digits.drain(..digits.len() - trimmed);
    if digits.is_empty() {
        return Ok(Cents(0));
    }
    // A nonzero value with an exponent too long to parse is absurdly large or small.
    let exponent: i64 = match number.exp.parse::<i64>() {
        // A range, not `abs()`: `abs` of i64::MIN overflows (`1e-9223372036854775808`).
        Ok(e) if (-1_000..=1_000).contains(&e) => e,
        _ if number.exp.starts_with('-') => return Err(PriceError::TooPrecise),
        _ => return Err(PriceError::TooLarge),
    };
    let mut shift = exponent - number.frac.len() as i64 + 2;
    while digits.ends_with('0') {
        digits.pop();
        shift += 1;
    }
    if shift < 0 {
        return Err(PriceError::TooPrecise);
    }
    // MAX_PRICE_CENTS has 9 digits: anything longer is too large (and this bounds the pow).
    if digits.len() as i64 + shift > 9 {
        return Err(PriceError::TooLarge);
    }
    let cents = digits
        .parse::<u64>()
        .ok()
        .and_then(|d| d.checked_mul(10u64.pow(shift as u32)))
        .ok_or(PriceError::TooLarge)?;
    if cents > MAX_PRICE_CENTS {
        return Err(PriceError::TooLarge);
    }
    Ok(Cents(cents))
}

/// Formats cents as the shortest exact dollar number: 2500, 12.99, 0.5, 0.05.
pub fn format_price(cents: Cents) -> String {
    let (dollars, rest) = (cents.0 / 100, cents.0 % 100);
    match rest {
        0 => dollars.to_string(),
        r if r % 10 == 0 => format!("{dollars}.{}", r / 10),
        r => format!("{dollars}.{r:02}"),
    }
}

/// Cents on the wire: written as a JSON number of dollars (see [`format_price`]), read from
/// the number's text by [`parse_price`]; never a float, never a string.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dollars(pub Cents);

impl From<Cents> for Dollars {
    fn from(cents: Cents) -> Dollars {
        Dollars(cents)
    }
}

impl Serialize for Dollars {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw = RawValue::from_string(format_price(self.0)).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Dollars {
    /// Needs a deserializer over JSON text (`serde_json::from_str`, `from_slice`, `from_reader`):
    /// a `serde_json::Value` has already turned the number into a float.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Dollars, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        parse_price(raw.get())
            .map(Dollars)
            .map_err(serde::de::Error::custom)
    }
}

/// The parts of a JSON number (RFC 8259 section 6), borrowed from its text.
struct JsonNumber<'a> {
    negative: bool,
    int: &'a str,
    frac: &'a str,
    exp: &'a str,
}

impl<'a> JsonNumber<'a> {
    fn parse(text: &'a str) -> Option<Self> {
        let (negative, rest) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (mantissa, exp) = match rest.find(['e', 'E']) {
            Some(at) => {
                let exp = &rest[at + 1..];
                let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                if !all_digits(digits) {
                    return None;
                }
                (&rest[..at], exp.strip_prefix('+').unwrap_or(exp))
            }
            None => (rest, "0"),
        };
        let (int, frac) = match mantissa.split_once('.') {
            Some((int, frac)) if all_digits(frac) => (int, frac),
            Some(_) => return None,
            None => (mantissa, ""),
        };
        if !all_digits(int) || (int.len() > 1 && int.starts_with('0')) {
            return None;
        }
        Some(JsonNumber {
            negative,
            int,
            frac,
            exp,
        })
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_prices() {
        let cases = [
            ("2500", 250_000),
            ("1200", 120_000),
            ("12.99", 1_299),
            ("0.5", 50),
            ("0.10", 10),
            ("0.05", 5),
            ("0", 0),
            ("0.00", 0),
            ("12.990", 1_299),
            ("1e3", 100_000),
            ("1E+3", 100_000),
            ("1299e-2", 1_299),
            ("1.5e1", 1_500),
            ("0e99999999999999999999", 0),
            ("1000000", 100_000_000),
            ("1000000.00", 100_000_000),
            (" 7 ", 700),
        ];
        for (text, cents) in cases {
            assert_eq!(parse_price(text), Ok(Cents(cents)), "{text}");
        }
    }

    #[test]
    fn refuses_bad_prices() {
        let cases = [
            ("12.999", PriceError::TooPrecise),
            ("0.001", PriceError::TooPrecise),
            ("1e-3", PriceError::TooPrecise),
            ("1e-99999999999999999999", PriceError::TooPrecise),
            // i64::MIN and MAX as exponents: the first was once accepted as $0 (abs overflow).
            ("12.999e-9223372036854775808", PriceError::TooPrecise),
            ("1e9223372036854775807", PriceError::TooLarge),
            ("-1", PriceError::Negative),
            ("-0.5", PriceError::Negative),
            ("1000000.01", PriceError::TooLarge),
            ("1000001", PriceError::TooLarge),
            ("1e7", PriceError::TooLarge),
            ("1e99999999999999999999", PriceError::TooLarge),
            ("123456789012345678901234567890", PriceError::TooLarge),
            ("\"12\"", PriceError::NotANumber),
            ("null", PriceError::NotANumber),
            ("true", PriceError::NotANumber),
            ("", PriceError::NotANumber),
            ("01", PriceError::NotANumber),
            ("1.", PriceError::NotANumber),
            (".5", PriceError::NotANumber),
            ("1e", PriceError::NotANumber),
            ("+1", PriceError::NotANumber),
            ("1,5", PriceError::NotANumber),
            ("0\u{b}", PriceError::NotANumber), // found by the parse_price fuzz target
            ("\u{3000}7", PriceError::NotANumber),
            ("NaN", PriceError::NotANumber),
            ("Infinity", PriceError::NotANumber),
        ];
        for (text, error) in cases {
            assert_eq!(parse_price(text), Err(error), "{text}");
        }
    }

    #[test]
    fn formats_like_the_input() {
        let cases = [
            (250_000, "2500"),
            (1_299, "12.99"),
            (50, "0.5"),
            (5, "0.05"),
            (10, "0.1"),
            (0, "0"),
            (1_210, "12.1"),
            (100_000_000, "1000000"),
        ];
        for (cents, text) in cases {
            assert_eq!(format_price(Cents(cents)), text);
            assert_eq!(parse_price(text), Ok(Cents(cents)), "round trip {text}");
        }
    }

    #[test]
    fn dollars_serialise_as_json_numbers() {
        let json =
            serde_json::to_string(&[Dollars(Cents(1_299)), Dollars(Cents(250_000))]).unwrap();
        assert_eq!(json, "[12.99,2500]");
        let back: Vec<Dollars> = serde_json::from_str("[12.99, 2500, 1299e-2]").unwrap();
        assert_eq!(
            back,
            [
                Dollars(Cents(1_299)),
                Dollars(Cents(250_000)),
                Dollars(Cents(1_299))
            ]
        );
        assert!(serde_json::from_str::<Dollars>("\"12\"").is_err());
    }
}
