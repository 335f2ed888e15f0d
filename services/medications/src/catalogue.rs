//! The drug catalogue: dm+d product → the substances it contains or belongs
//! to, which the allergy check matches against. Loaded from a CSV file
//! (format in docs/drug-catalogue.md); a small sample, clearly labelled as
//! sample data, is built in for development and tests.

use std::collections::HashMap;
use std::path::Path;

use carelog_kernel::snomed::ConceptId;
use thiserror::Error;

/// The built-in sample catalogue (SAMPLE DATA, not clinical reference data).
pub const SAMPLE: &str = include_str!("../catalogue/sample.csv");

/// The header line every catalogue starts with (after comments).
pub const HEADER: &str = "dmd_code,name,ingredient_codes";

/// A product as the catalogue knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub code: ConceptId,
    pub name: String,
    /// Every substance (and class substance) the product contains.
    pub ingredients: Vec<ConceptId>,
}

impl Product {
    /// Whether an allergy to `substance` matches this product: the product
    /// itself, or any of its ingredients or classes.
    pub fn contains(&self, substance: &str) -> bool {
        self.code.as_str() == substance || self.ingredients.iter().any(|i| i.as_str() == substance)
    }
}

/// Why a catalogue cannot be loaded: the line and the rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CatalogueError {
    #[error("drug catalogue line {line}: {rule}")]
    Line { line: usize, rule: String },
    #[error("drug catalogue {path}: {error}")]
    Io { path: String, error: String },
}

/// Products by dm+d code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrugCatalogue {
    products: HashMap<String, Product>,
}

impl DrugCatalogue {
    /// The built-in sample catalogue.
    pub fn sample() -> Self {
        // The sample is checked by a unit test; an error here is a build defect.
        Self::parse(SAMPLE).unwrap_or_default()
    }

    /// Reads a site's catalogue file.
    pub fn load(path: &Path) -> Result<Self, CatalogueError> {
        let text = std::fs::read_to_string(path).map_err(|e| CatalogueError::Io {
            path: path.display().to_string(),
            error: e.to_string(),
        })?;
        Self::parse(&text)
    }

    /// Parses the CSV: `#` comment lines and blank lines are skipped, the
    /// first other line is the header, then one product per line.
    pub fn parse(text: &str) -> Result<Self, CatalogueError> {
        let mut products = HashMap::new();
        let mut header = false;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let bad = |rule: String| CatalogueError::Line { line, rule };
            let row = raw.trim();
            if row.is_empty() || row.starts_with('#') {
                continue;
            }
            if !header {
                if row != HEADER {
                    return Err(bad(format!("the header must be `{HEADER}`")));
                }
                header = true;
                continue;
            }
            let fields: Vec<&str> = row.split(',').map(str::trim).collect();
            let [code, name, ingredients] = fields.as_slice() else {
                return Err(bad(format!(
                    "must have 3 comma-separated fields ({HEADER}), found {}",
                    fields.len()
                )));
            };
            let code = ConceptId::parse(code).map_err(|e| bad(format!("dmd_code {e}")))?;
            if name.is_empty() {
                return Err(bad("name is required".into()));
            }
            let mut parsed = Vec::new();
            for ingredient in ingredients.split('|').map(str::trim) {
                parsed.push(
                    ConceptId::parse(ingredient)
                        .map_err(|e| bad(format!("ingredient code '{ingredient}' {e}")))?,
                );
            }
            let product = Product {
                code: code.clone(),
                name: (*name).to_owned(),
                ingredients: parsed,
            };
            if products.insert(code.to_string(), product).is_some() {
                return Err(bad(format!("dmd_code {code} is listed twice")));
            }
        }
        if !header {
            return Err(CatalogueError::Line {
                line: text.lines().count().max(1),
                rule: format!("no header `{HEADER}` found"),
            });
        }
        Ok(Self { products })
    }

    pub fn product(&self, code: &str) -> Option<&Product> {
        self.products.get(code)
    }

    pub fn len(&self) -> usize {
        self.products.len()
    }

    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_catalogue_parses_and_amoxicillin_is_a_penicillin() {
        let catalogue = DrugCatalogue::parse(SAMPLE).expect("sample parses");
        assert_eq!(catalogue.len(), 5);
        let amoxicillin = catalogue.product("323509004").expect("amoxicillin");
        assert!(amoxicillin.contains("764146007"));
        let clarithromycin = catalogue.product("324430000").expect("clarithromycin");
        assert!(!clarithromycin.contains("764146007"));
    }

    #[test]
    fn a_malformed_catalogue_names_the_line_and_the_rule() {
        let text =
            format!("# comment\n{HEADER}\n323509004,Amoxicillin,372687004\n123,Bad,372687004\n");
        let error = DrugCatalogue::parse(&text).expect_err("bad code");
        assert_eq!(
            error,
            CatalogueError::Line {
                line: 4,
                rule: "dmd_code must be a SNOMED CT identifier of 6 to 18 digits without a leading zero".into()
            }
        );
        let error = DrugCatalogue::parse("dmd,name\n").expect_err("bad header");
        assert!(matches!(error, CatalogueError::Line { line: 1, .. }));
        let error = DrugCatalogue::parse(&format!("{HEADER}\n323509004,Amoxicillin\n"))
            .expect_err("missing field");
        assert!(error.to_string().contains("line 2"), "{error}");
        let error = DrugCatalogue::parse(&format!("{HEADER}\n323509004,Amoxicillin,37268700\n"))
            .expect_err("bad ingredient");
        assert!(
            error.to_string().contains("ingredient code '37268700'"),
            "{error}"
        );
        let error = DrugCatalogue::parse(&format!(
            "{HEADER}\n323509004,Amoxicillin,372687004\n323509004,Amoxicillin again,372687004\n"
        ))
        .expect_err("listed twice");
        assert!(error.to_string().contains("line 3"), "{error}");
        let missing = DrugCatalogue::load(Path::new("no-such-catalogue.csv")).expect_err("missing");
        assert!(matches!(missing, CatalogueError::Io { .. }));
    }
}
