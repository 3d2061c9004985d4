//! Fuzzes the money parser: `parse_price` never panics; whatever it accepts is a JSON number
//! serde_json also accepts, within the price cap, and close to its float value; and
//! `format_price` output parses back to the same cents for every amount up to the cap.

#![no_main]

use cart_core::Cents;
use cart_core::money::{MAX_PRICE_CENTS, format_price, parse_price};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u64, &str)| {
    let (amount, text) = input;

    // Round trip: format, then parse back.
    let cents = Cents(amount % (MAX_PRICE_CENTS + 1));
    let formatted = format_price(cents);
    assert_eq!(parse_price(&formatted), Ok(cents), "{formatted}");
    assert!(serde_json::from_str::<serde_json::Number>(&formatted).is_ok());

    // Arbitrary text: refused, or an exact amount of a real JSON number.
    if let Ok(Cents(parsed)) = parse_price(text) {
        assert!(parsed <= MAX_PRICE_CENTS, "{text:?} -> {parsed}");
        let number: serde_json::Number =
            serde_json::from_str(text).expect("accepted text is a JSON number");
        if let Some(float) = number.as_f64() {
            let expected = float * 100.0;
            let error = (expected - parsed as f64).abs();
            assert!(
                error <= 1e-6 * expected.abs().max(1.0),
                "{text:?}: parsed {parsed} cents, float says {expected}"
            );
        }
        // And it formats back to text that parses to the same cents.
        assert_eq!(parse_price(&format_price(Cents(parsed))), Ok(Cents(parsed)));
    }
});
