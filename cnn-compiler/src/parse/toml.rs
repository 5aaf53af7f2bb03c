//! The TOML spelling: `input = [C, H, W]` and one `[[layers]]` table per layer.
//!
//! Read with the `toml` crate's spanned document parser, so every layer and argument
//! keeps its line and column for messages like `models/x.toml:12:5: layer `conv2` ..`.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::{RawArg, RawLayer, RawModel, RawValue};
use crate::ir::{Diag, Loc};
use crate::suggest::did_you_mean;

/// Converts byte offsets of one text into 1-based line and column (in characters).
struct Lines<'a> {
    text: &'a str,
}

impl Lines<'_> {
    fn loc(&self, offset: usize) -> Loc {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Loc::File { line, col }
    }
}

fn value(v: &Spanned<DeValue<'_>>, lines: &Lines<'_>) -> RawValue {
    match v.get_ref() {
        DeValue::String(s) => RawValue::Word(s.to_string()),
        DeValue::Integer(i) => {
            let digits = i.as_str().replace('_', "");
            match i64::from_str_radix(&digits, i.radix()) {
                Ok(n) => RawValue::Int(n),
                Err(_) => RawValue::Other("integer too large"),
            }
        }
        DeValue::Float(f) => match f.as_str().replace('_', "").parse::<f64>() {
            Ok(x) => RawValue::Float(x),
            Err(_) => RawValue::Other("float"),
        },
        DeValue::Boolean(b) => RawValue::Bool(*b),
        DeValue::Datetime(_) => RawValue::Other("date"),
        DeValue::Array(items) => RawValue::List(
            items
                .iter()
                .map(|item| (value(item, lines), lines.loc(item.span().start)))
                .collect(),
        ),
        DeValue::Table(_) => RawValue::Other("table"),
    }
}

const TOP_LEVEL_KEYS: &[&str] = &["input", "layers"];

/// Parses a TOML description into the raw form.
pub fn parse(text: &str) -> Result<RawModel, Diag> {
    let lines = Lines { text };
    let doc = DeTable::parse(text).map_err(|e| {
        let loc = lines.loc(e.span().map_or(0, |s| s.start));
        Diag::new(loc, format!("invalid TOML: {}", e.message().trim()))
    })?;
    let mut model = RawModel {
        input: None,
        layers: Vec::new(),
        body_loc: Loc::File { line: 1, col: 1 },
        diags: Vec::new(),
    };
    for (key, val) in doc.get_ref().iter() {
        let key_loc = lines.loc(key.span().start);
        match key.get_ref().as_ref() {
            "input" => model.input = Some((value(val, &lines), key_loc)),
            "layers" => match val.get_ref() {
                DeValue::Array(tables) => {
                    for table in tables.iter() {
                        match table.get_ref() {
                            DeValue::Table(t) => {
                                model.layers.push(layer(t, table.span().start, &lines))
                            }
                            _ => model.diags.push(Diag::new(
                                lines.loc(table.span().start),
                                "`layers` must hold tables: write each layer as a [[layers]] table",
                            )),
                        }
                    }
                }
                _ => model.diags.push(Diag::new(
                    key_loc,
                    "`layers` must be an array of tables: write each layer as a [[layers]] table",
                )),
            },
            other => model.diags.push(Diag::new(
                key_loc,
                format!(
                    "unknown top-level key `{other}`{}; a description has `input` and `[[layers]]`",
                    did_you_mean(other, TOP_LEVEL_KEYS)
                ),
            )),
        }
    }
    Ok(model)
}

fn layer(t: &DeTable<'_>, start: usize, lines: &Lines<'_>) -> RawLayer {
    let mut raw = RawLayer {
        name: None,
        op: None,
        positional: Vec::new(),
        args: Vec::new(),
        loc: lines.loc(start),
    };
    for (key, val) in t.iter() {
        let key_loc = lines.loc(key.span().start);
        let v = value(val, lines);
        match key.get_ref().as_ref() {
            "name" => raw.name = Some((v, key_loc)),
            "op" => {
                let op = match v {
                    RawValue::Word(w) => w,
                    other => other.describe(),
                };
                raw.op = Some((op, key_loc));
            }
            k => raw.args.push(RawArg {
                key: k.to_string(),
                key_loc,
                value: v,
                loc: lines.loc(val.span().start),
            }),
        }
    }
    // Point at the layer's name (or op) line rather than the `[[layers]]` header.
    let named_at = raw.name.as_ref().map(|(_, l)| *l);
    if let Some(l) = named_at.or(raw.op.as_ref().map(|(_, l)| *l)) {
        raw.loc = l;
    }
    raw
}
