//! Spin's template expressions (`spin-expressions`) and the identifier rules their names
//! follow (`spin_serde::Id`): what the manifest loader checks and the variables resolve.
//! It knows no manifest, so both can use it.

use std::collections::BTreeMap;

/// One piece of a value template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Literal(String),
    Variable(String),
}

/// A component variable's value template, e.g. `"prefix-{{ app_var }}"`.
///
/// Parsing follows Spin's `spin-expressions`: `{{` opens an expression up to the next `}}`,
/// whose content is trimmed; an unmatched `{{` is an error; everything else is literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<TemplatePart>,
}

impl Template {
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            if let Some(expr_rest) = rest.strip_prefix("{{") {
                let Some((expr, after)) = expr_rest.split_once("}}") else {
                    return Err(format!("unmatched '{{{{' in template {template:?}"));
                };
                parts.push(TemplatePart::Variable(expr.trim().to_owned()));
                rest = after;
            } else if let Some(idx) = rest.find("{{") {
                parts.push(TemplatePart::Literal(rest[..idx].to_owned()));
                rest = &rest[idx..];
            } else {
                parts.push(TemplatePart::Literal(rest.to_owned()));
                rest = "";
            }
        }
        Ok(Self { parts })
    }

    pub fn parts(&self) -> &[TemplatePart] {
        &self.parts
    }

    /// Names of the application variables the template refers to.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            TemplatePart::Variable(v) => Some(v.as_str()),
            TemplatePart::Literal(_) => None,
        })
    }

    pub fn render(&self, values: &BTreeMap<String, String>) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                TemplatePart::Literal(l) => out.push_str(l),
                TemplatePart::Variable(v) => out.push_str(
                    values
                        .get(v)
                        .ok_or_else(|| format!("unknown variable {v:?}"))?,
                ),
            }
        }
        Ok(out)
    }
}

/// Spin's rule for variable names in the manifest (`LowerSnakeId`): words separated by
/// single underscores, each word starting with a lowercase ASCII letter and containing only
/// lowercase ASCII letters and digits. `api_key`, `v2_url` are valid; `2x`, `a__b`, `_a`,
/// `a_1`, `Api` are not.
pub fn validate_manifest_name(name: &str) -> Result<(), String> {
    validate_id(name, '_', true)
}

/// Spin's identifier rule (`spin_serde::Id`), shared by component ids (kebab-case) and
/// variable names (snake_case): `delim`-separated words, each starting with an ASCII letter
/// and containing only ASCII letters and digits, each word all lowercase or all uppercase
/// (only lowercase when `lower_only`).
pub fn validate_id(id: &str, delim: char, lower_only: bool) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    let wrong = if delim == '_' { '-' } else { '_' };
    if id.contains(wrong) {
        return Err(format!(
            "words must be separated with {delim:?}, not {wrong:?}"
        ));
    }
    for word in id.split(delim) {
        let mut chars = word.chars();
        let Some(first) = chars.next() else {
            return Err(format!("{delim:?}-separated words must not be empty"));
        };
        if !first.is_ascii_alphabetic() {
            return Err(format!(
                "{delim:?}-separated words must start with an ASCII letter; got {first:?}"
            ));
        }
        let upper = first.is_ascii_uppercase();
        for ch in chars {
            if ch.is_ascii_digit() {
                continue;
            }
            if !ch.is_ascii_alphanumeric() {
                return Err(format!(
                    "{delim:?}-separated words may only contain alphanumeric ASCII; got {ch:?}"
                ));
            }
            if ch.is_ascii_uppercase() != upper {
                return Err(format!(
                    "{delim:?}-separated words must be all lowercase or all UPPERCASE; got {word:?}"
                ));
            }
        }
        if lower_only && upper {
            return Err("must be all lowercase".into());
        }
    }
    Ok(())
}

/// Spin's runtime check of the name a component passes to `spin:variables/get`
/// (`spin_expressions::Key::validate`): lowercase letters, digits and single underscores,
/// starting with a letter and ending with a letter or digit.
pub fn validate_key(key: &str) -> Result<(), String> {
    let reason = if key.is_empty() {
        "must not be empty".to_owned()
    } else if let Some(c) = key
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        format!(
            "invalid character {c:?}. Variable names may contain only lower-case letters, numbers, and underscores."
        )
    } else if !key.starts_with(|c: char| c.is_ascii_lowercase()) {
        "must start with a lowercase ASCII letter".to_owned()
    } else if !key.ends_with(|c: char| c.is_ascii_alphanumeric()) {
        "must end with a lowercase ASCII letter or digit".to_owned()
    } else if key.contains("__") {
        "must not contain multiple consecutive underscores".to_owned()
    } else {
        return Ok(());
    };
    Err(format!("{key:?}: {reason}"))
}
