//! Cart lines, the cart limits and their validation.

use crate::money::{Cents, MAX_PRICE_CENTS};
use std::fmt;

/// Most lines one cart may hold.
pub const MAX_LINES: usize = 100;
/// Highest quantity of one line (also the cap when adding merges into an existing line).
pub const MAX_QUANTITY: u32 = 99;
/// Longest item name, in characters, after trimming.
pub const MAX_ITEM_CHARS: usize = 100;

/// One line of a cart: an item at a unit price, some number of times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CartLine {
    pub item: String,
    pub price: Cents,
    pub quantity: u32,
}

impl CartLine {
    /// `price * quantity`; cannot overflow within the limits (99 * $1,000,000).
    pub fn line_total(&self) -> Cents {
        self.price
            .checked_mul(u64::from(self.quantity))
            .unwrap_or(Cents(u64::MAX))
    }
}

/// A cart-rule violation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CartError {
    /// The item name is empty, too long or has control characters.
    InvalidItem(String),
    /// The quantity is outside `1..=MAX_QUANTITY`.
    InvalidQuantity,
    /// The unit price exceeds [`MAX_PRICE_CENTS`].
    InvalidPrice,
    /// The cart already has [`MAX_LINES`] lines.
    CartFull,
    /// Merging into an existing line would pass [`MAX_QUANTITY`].
    QuantityLimit { current: u32 },
    /// No line at that index.
    NoSuchLine { index: usize, lines: usize },
}

impl fmt::Display for CartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CartError::InvalidItem(why) => f.write_str(why),
            CartError::InvalidQuantity => {
                write!(
                    f,
                    "quantity must be a whole number from 1 to {MAX_QUANTITY}"
                )
            }
            CartError::InvalidPrice => f.write_str("price must be at most 1000000"),
            CartError::CartFull => write!(f, "the cart already has {MAX_LINES} lines"),
            CartError::QuantityLimit { current } => write!(
                f,
                "the cart already has {current} of this item; a line holds at most {MAX_QUANTITY}"
            ),
            CartError::NoSuchLine { index, lines } => {
                write!(
                    f,
                    "no cart line {index}: the cart has {lines} line(s), numbered from 0"
                )
            }
        }
    }
}

impl std::error::Error for CartError {}

/// Trims an item name and checks it: 1..=100 characters, no control characters, no
/// bidirectional controls or line separators.
pub fn validate_item(raw: &str) -> Result<String, CartError> {
    let item = raw.trim();
    if item.is_empty() {
        return Err(CartError::InvalidItem("item must not be empty".into()));
    }
    if item.chars().count() > MAX_ITEM_CHARS {
        return Err(CartError::InvalidItem(format!(
            "item must be at most {MAX_ITEM_CHARS} characters"
        )));
    }
    if item.chars().any(char::is_control) {
        return Err(CartError::InvalidItem(
            "item must not contain control characters".into(),
        ));
    }
    if item.chars().any(reorders_or_breaks_text) {
        return Err(CartError::InvalidItem(
            "item must not contain bidirectional control or line separator characters".into(),
        ));
    }
    Ok(item.to_owned())
}

/// Characters that are not `char::is_control` but change how the text around them displays:
/// the bidirectional embedding, override and isolate controls (U+202A..U+202E, U+2066..U+2069;
/// "Trojan Source", CVE-2021-42574: `Pen\u{202E}gpj.exe` shows as `Penexe.jpg`) and the line and
/// paragraph separators (U+2028, U+2029), line breaks in all but name.
fn reorders_or_breaks_text(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

/// A shopping cart: lines in the order they were first added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cart {
    lines: Vec<CartLine>,
}

impl Cart {
    pub fn new() -> Cart {
        Cart::default()
    }

    /// A cart from stored lines, checked against every limit (a stored record is not trusted
    /// to have been written by this version).
    pub fn from_lines(lines: Vec<CartLine>) -> Result<Cart, CartError> {
        if lines.len() > MAX_LINES {
            return Err(CartError::CartFull);
        }
        for line in &lines {
            if validate_item(&line.item)? != line.item {
                return Err(CartError::InvalidItem("item is not trimmed".into()));
            }
            check_line(line.price, line.quantity)?;
        }
        Ok(Cart { lines })
    }

    pub fn lines(&self) -> &[CartLine] {
        &self.lines
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Adds `quantity` of `item` at `price`. The same item name at the same price merges
    /// into its existing line; a different price makes a new line.
    pub fn add(&mut self, item: String, price: Cents, quantity: u32) -> Result<(), CartError> {
        let item = validate_item(&item)?;
        check_line(price, quantity)?;
        if let Some(line) = self
            .lines
            .iter_mut()
            .find(|line| line.item == item && line.price == price)
        {
            let merged = line.quantity + quantity;
            if merged > MAX_QUANTITY {
                return Err(CartError::QuantityLimit {
                    current: line.quantity,
                });
            }
            line.quantity = merged;
            return Ok(());
        }
        if self.lines.len() >= MAX_LINES {
            return Err(CartError::CartFull);
        }
        self.lines.push(CartLine {
            item,
            price,
            quantity,
        });
        Ok(())
    }

    /// Removes the line at the 0-based `index` (the position in the `cart` array).
    pub fn remove_line(&mut self, index: usize) -> Result<CartLine, CartError> {
        if index >= self.lines.len() {
            return Err(CartError::NoSuchLine {
                index,
                lines: self.lines.len(),
            });
        }
        Ok(self.lines.remove(index))
    }

    /// Sum of all quantities.
    pub fn item_count(&self) -> u64 {
        self.lines.iter().map(|l| u64::from(l.quantity)).sum()
    }

    /// Sum of all line totals, exact (at most 100 * 99 * $1,000,000, far below u64::MAX).
    pub fn total(&self) -> Cents {
        Cents(self.lines.iter().map(|l| l.line_total().0).sum())
    }
}

fn check_line(price: Cents, quantity: u32) -> Result<(), CartError> {
    if !(1..=MAX_QUANTITY).contains(&quantity) {
        return Err(CartError::InvalidQuantity);
    }
    if price.0 > MAX_PRICE_CENTS {
        return Err(CartError::InvalidPrice);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_exact() {
        let mut cart = Cart::new();
        cart.add("MacBook Pro".into(), Cents(250_000), 1).unwrap();
        cart.add("iPhone 15".into(), Cents(120_000), 1).unwrap();
        cart.add("Cable".into(), Cents(1_999), 3).unwrap();
        assert_eq!(cart.total(), Cents(370_000 + 5_997));
        assert_eq!(cart.item_count(), 5);
        assert_eq!(cart.lines()[2].line_total(), Cents(5_997));
    }

    #[test]
    fn same_item_and_price_merges_up_to_the_cap() {
        let mut cart = Cart::new();
        cart.add(" Pen ".into(), Cents(100), 50).unwrap();
        cart.add("Pen".into(), Cents(100), 49).unwrap();
        assert_eq!(cart.lines().len(), 1);
        assert_eq!(cart.lines()[0].quantity, 99);
        assert_eq!(
            cart.add("Pen".into(), Cents(100), 1),
            Err(CartError::QuantityLimit { current: 99 })
        );
        cart.add("Pen".into(), Cents(200), 1).unwrap(); // another price: another line
        assert_eq!(cart.lines().len(), 2);
    }

    #[test]
    fn cart_holds_at_most_max_lines() {
        let mut cart = Cart::new();
        for n in 0..MAX_LINES {
            cart.add(format!("item {n}"), Cents(1), 1).unwrap();
        }
        assert_eq!(
            cart.add("one more".into(), Cents(1), 1),
            Err(CartError::CartFull)
        );
        // Merging into an existing line still works when full.
        cart.add("item 0".into(), Cents(1), 1).unwrap();
    }

    #[test]
    fn item_rules() {
        assert_eq!(validate_item("  MacBook Pro \t").unwrap(), "MacBook Pro");
        assert_eq!(
            validate_item(&"é".repeat(100)).unwrap().chars().count(),
            100
        );
        for bad in [
            "",
            "   ",
            "a\u{0}b",
            "line\nbreak",
            "tab\tinside",
            "\u{7f}",
            "a\u{85}b",
            "Pen\u{202E}gpj.exe",
            "\u{2066}a\u{2069}",
            "a\u{2028}b",
        ] {
            assert!(
                matches!(validate_item(bad), Err(CartError::InvalidItem(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            validate_item(&"x".repeat(101)),
            Err(CartError::InvalidItem(_))
        ));
    }

    #[test]
    fn quantity_and_price_rules() {
        let mut cart = Cart::new();
        assert_eq!(
            cart.add("a".into(), Cents(1), 0),
            Err(CartError::InvalidQuantity)
        );
        assert_eq!(
            cart.add("a".into(), Cents(1), 100),
            Err(CartError::InvalidQuantity)
        );
        assert_eq!(
            cart.add("a".into(), Cents(MAX_PRICE_CENTS + 1), 1),
            Err(CartError::InvalidPrice)
        );
        cart.add("a".into(), Cents(MAX_PRICE_CENTS), 99).unwrap();
        assert_eq!(cart.total(), Cents(9_900_000_000));
        assert!(cart.lines().len() == 1);
    }

    #[test]
    fn remove_line_by_index() {
        let mut cart = Cart::new();
        cart.add("a".into(), Cents(1), 1).unwrap();
        cart.add("b".into(), Cents(2), 1).unwrap();
        assert_eq!(
            cart.remove_line(2),
            Err(CartError::NoSuchLine { index: 2, lines: 2 })
        );
        assert_eq!(cart.remove_line(0).unwrap().item, "a");
        assert_eq!(cart.lines()[0].item, "b");
    }
}
