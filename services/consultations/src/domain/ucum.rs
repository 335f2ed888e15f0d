//! A small, honest UCUM parser: enough of the Unified Code for Units of
//! Measure for the units a GP record uses. A unit is terms joined by `.`
//! (multiply) and `/` (divide), optionally led by `/`; a term is an atom
//! with an optional metric prefix and an integer exponent, an integer
//! factor (`1`, `10*3`), or an annotation `{...}`, which may also follow a
//! term. Parentheses and the rarer atoms are not supported: a unit outside
//! this subset is refused rather than guessed at.

/// Atoms that take a metric prefix (`mg`, `mmol`, `mL`, `mm[Hg]`, ...).
const METRIC: &[&str] = &[
    "m", "g", "L", "l", "s", "mol", "Cel", "K", "Hz", "Pa", "J", "W", "V", "A", "U", "eq", "kat",
    "bar", "m[Hg]", "m[H2O]", "[IU]", "[iU]", "cal", "t",
];

/// Atoms without prefixes.
const PLAIN: &[&str] = &[
    "min", "h", "d", "wk", "mo", "a", "%", "[degF]", "[in_i]", "[ft_i]", "[lb_av]", "[oz_av]",
    "[ppm]", "[ppb]", "[pH]", "[drp]", "[beth'U]", "deg",
];

/// SI prefixes; two-letter `da` first so it wins over `d`.
const PREFIXES: &[&str] = &[
    "da", "Y", "Z", "E", "P", "T", "G", "M", "k", "h", "d", "c", "m", "u", "n", "p", "f", "a", "z",
    "y",
];

/// Why a unit was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UcumError {
    #[error("is required: a UCUM unit such as kg, mmol/L or {{score}}")]
    Empty,
    #[error("is not a UCUM unit: '{0}' is not a known unit atom")]
    UnknownAtom(String),
    #[error("is not a UCUM unit: unbalanced annotation braces")]
    Annotation,
    #[error("is not a UCUM unit: an empty term around '.' or '/'")]
    EmptyTerm,
}

/// Checks a UCUM unit expression.
pub fn parse(unit: &str) -> Result<(), UcumError> {
    if unit.trim().is_empty() {
        return Err(UcumError::Empty);
    }
    if unit.contains(char::is_whitespace) {
        return Err(UcumError::UnknownAtom(unit.to_owned()));
    }
    let body = unit.strip_prefix('/').unwrap_or(unit);
    for term in split_terms(body)? {
        check_term(term)?;
    }
    Ok(())
}

/// Splits on `.` and `/` outside annotations and brackets.
fn split_terms(text: &str) -> Result<Vec<&str>, UcumError> {
    let mut terms = Vec::new();
    let (mut depth_brace, mut depth_bracket, mut start) = (0i32, 0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth_brace += 1,
            '}' => depth_brace -= 1,
            '[' => depth_bracket += 1,
            ']' => depth_bracket -= 1,
            '.' | '/' if depth_brace == 0 && depth_bracket == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if depth_brace < 0 || depth_bracket < 0 {
            return Err(UcumError::Annotation);
        }
    }
    if depth_brace != 0 || depth_bracket != 0 {
        return Err(UcumError::Annotation);
    }
    terms.push(&text[start..]);
    if terms.iter().any(|t| t.is_empty()) {
        return Err(UcumError::EmptyTerm);
    }
    Ok(terms)
}

fn check_term(term: &str) -> Result<(), UcumError> {
    // A trailing annotation: `{score}` alone is the unity, `mmol{total}`
    // annotates mmol.
    let term = match term.find('{') {
        Some(open)
            if term.ends_with('}') && !term[open + 1..term.len() - 1].contains(['{', '}']) =>
        {
            &term[..open]
        }
        Some(_) => return Err(UcumError::Annotation),
        None => term,
    };
    if term.is_empty() || term.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(());
    }
    if let Some(exp) = term
        .strip_prefix("10*")
        .or_else(|| term.strip_prefix("10^"))
    {
        let exp = exp.strip_prefix('-').unwrap_or(exp);
        if !exp.is_empty() && exp.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(());
        }
    }
    let atom = strip_exponent(term);
    if known(atom) {
        Ok(())
    } else {
        Err(UcumError::UnknownAtom(atom.to_owned()))
    }
}

/// `m2` -> `m`, `s-1` -> `s`; a bracketed atom ends at its `]`.
fn strip_exponent(term: &str) -> &str {
    let end = term.trim_end_matches(|c: char| c.is_ascii_digit());
    let end = match end.strip_suffix(['-', '+']) {
        Some(e) if end.len() < term.len() => e,
        _ => end,
    };
    if end.is_empty() || end.len() == term.len() {
        term
    } else {
        end
    }
}

fn known(atom: &str) -> bool {
    if METRIC.contains(&atom) || PLAIN.contains(&atom) {
        return true;
    }
    PREFIXES.iter().any(|p| {
        atom.strip_prefix(p)
            .is_some_and(|rest| !rest.is_empty() && METRIC.contains(&rest))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_of_a_gp_record_parse() {
        for unit in [
            "kg",
            "g",
            "cm",
            "m",
            "mm[Hg]",
            "L",
            "mL",
            "dL",
            "mol",
            "mmol/L",
            "umol/L",
            "/min",
            "%",
            "{score}",
            "1",
            "s",
            "h",
            "d",
            "kg/m2",
            "Cel",
            "[degF]",
            "10*9/L",
            "mg/dL",
            "mL/min/{1.73_m2}",
            "[IU]/L",
            "m2",
            "ug",
            "mmol{total}/L",
            "g/L",
            "s-1",
            "U/L",
        ] {
            assert_eq!(parse(unit), Ok(()), "{unit}");
        }
    }

    #[test]
    fn non_units_are_refused() {
        for unit in [
            "", "kgs", "mmHg", "bpm", "mmol//L", "kg m2", "{score", "xL", "/", "Kg",
        ] {
            assert!(parse(unit).is_err(), "{unit} should be refused");
        }
    }
}
