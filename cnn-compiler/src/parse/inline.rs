//! The inline spelling: the macro's header (attributes, visibility, name) and the
//! `{ input: [..], name: op(args), .. }` body.
//!
//! The body is split into comma-separated entries by hand rather than with a grammar, so
//! each entry and each argument keeps the span of its first and last token: errors then
//! underline exactly the layer or argument they are about.

use proc_macro2::{Delimiter, Span, TokenStream, TokenTree};
use syn::parse::{Parse, ParseStream};
use syn::{Attribute, Ident, LitStr, Token, Visibility};

use super::{RawArg, RawLayer, RawModel, RawValue};
use crate::ir::{Diag, Loc};

/// The macro input around the model: `#[attrs] vis struct Name { body }` or `.. Name;`.
pub struct Header {
    /// Attributes passed through to the struct (doc comments, derives, ...).
    pub attrs: Vec<Attribute>,
    /// `#[file = ".."]`.
    pub file: Option<LitStr>,
    /// `#[weights = ".."]`.
    pub weights: Option<LitStr>,
    /// `#[winograd = false]` (or `true`, the default): whether 3x3 convolutions may run
    /// as Winograd.
    pub winograd: Option<syn::LitBool>,
    /// The struct's visibility.
    pub vis: Visibility,
    /// The struct's name.
    pub ident: Ident,
    /// The body's tokens, `None` for `struct Name;`.
    pub body: Option<(TokenStream, Span)>,
}

impl Header {
    /// Whether the model's 3x3 convolutions may run as Winograd: not with
    /// `#[winograd = false]`.
    pub fn allows_winograd(&self) -> bool {
        self.winograd.as_ref().is_none_or(|b| b.value)
    }
}

impl Parse for Header {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let all_attrs = input.call(Attribute::parse_outer)?;
        let mut attrs = Vec::new();
        let mut file = None;
        let mut weights = None;
        let mut winograd = None;
        for attr in all_attrs {
            if attr.path().is_ident("winograd") {
                let Ok(syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Bool(b),
                    ..
                })) = name_value(&attr)
                else {
                    return Err(syn::Error::new_spanned(
                        &attr,
                        "expected #[winograd = false] or #[winograd = true]",
                    ));
                };
                set_once(&mut winograd, b.clone(), &attr, "winograd")?;
                continue;
            }
            let (slot, name) = if attr.path().is_ident("file") {
                (&mut file, "file")
            } else if attr.path().is_ident("weights") {
                (&mut weights, "weights")
            } else {
                attrs.push(attr);
                continue;
            };
            let value = match name_value(&attr) {
                Ok(syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                })) => s.clone(),
                Ok(other) => {
                    return Err(syn::Error::new_spanned(
                        other,
                        format!("expected a path string: #[{name} = \"path/to/file\"]"),
                    ))
                }
                Err(()) => {
                    return Err(syn::Error::new_spanned(
                        &attr,
                        format!("expected #[{name} = \"path/to/file\"]"),
                    ))
                }
            };
            set_once(slot, value, &attr, name)?;
        }
        let vis: Visibility = input.parse()?;
        input.parse::<Token![struct]>()?;
        let ident: Ident = input.parse()?;
        let body = if input.peek(Token![;]) {
            input.parse::<Token![;]>()?;
            None
        } else if input.peek(syn::token::Brace) {
            let content;
            let brace = syn::braced!(content in input);
            Some((content.parse::<TokenStream>()?, brace.span.join()))
        } else {
            return Err(input.error(
                "expected `{ input: [C, H, W], layers.. }` or `;` with #[file = \"model.toml\"]",
            ));
        };
        if !input.is_empty() {
            return Err(input.error("unexpected tokens after the model"));
        }
        Ok(Header {
            attrs,
            file,
            weights,
            winograd,
            vis,
            ident,
            body,
        })
    }
}

/// The value of a `#[name = value]` attribute; `Err` for another form.
fn name_value(attr: &Attribute) -> Result<&syn::Expr, ()> {
    match &attr.meta {
        syn::Meta::NameValue(nv) => Ok(&nv.value),
        _ => Err(()),
    }
}

/// Stores the value of the compiler's attribute `#[name = ..]`, an error if it was given
/// before.
fn set_once<T>(slot: &mut Option<T>, value: T, attr: &Attribute, name: &str) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new_spanned(
            attr,
            format!("#[{name} = ..] is given twice"),
        ));
    }
    *slot = Some(value);
    Ok(())
}

fn loc_of(tokens: &[TokenTree]) -> Loc {
    match (tokens.first(), tokens.last()) {
        (Some(a), Some(b)) => Loc::Span(a.span(), b.span()),
        _ => Loc::Span(Span::call_site(), Span::call_site()),
    }
}

/// Splits a token stream at top-level commas. Empty pieces (a trailing comma) are dropped,
/// a doubled comma is reported.
fn split_commas(tokens: TokenStream) -> Result<Vec<Vec<TokenTree>>, Diag> {
    let mut pieces = Vec::new();
    let mut current: Vec<TokenTree> = Vec::new();
    for tt in tokens {
        match &tt {
            TokenTree::Punct(p) if p.as_char() == ',' => {
                if current.is_empty() {
                    return Err(Diag::new(
                        Loc::Span(p.span(), p.span()),
                        "unexpected `,`: expected a layer or argument before it",
                    ));
                }
                pieces.push(std::mem::take(&mut current));
            }
            _ => current.push(tt),
        }
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    Ok(pieces)
}

/// Parses a value: `3`, `-0.1`, `true`, `same`, `(3, 5)`, `[1, 32, 32]`.
fn parse_value(tokens: &[TokenTree]) -> Result<RawValue, Diag> {
    let loc = loc_of(tokens);
    let bad = || {
        Diag::new(
            loc,
            "expected a value: a number, `true`/`false`, a word like `same`, a layer name, or a pair `(h, w)`",
        )
    };
    match tokens {
        [TokenTree::Literal(lit)] => literal(lit, false, loc),
        [TokenTree::Punct(p), TokenTree::Literal(lit)] if p.as_char() == '-' => {
            literal(lit, true, loc)
        }
        [TokenTree::Ident(id)] => {
            let s = id.to_string();
            Ok(match s.as_str() {
                "true" => RawValue::Bool(true),
                "false" => RawValue::Bool(false),
                _ => RawValue::Word(s),
            })
        }
        [TokenTree::Ident(_), TokenTree::Punct(_), ..] => {
            dotted_path(tokens).map(RawValue::Word).ok_or_else(bad)
        }
        [TokenTree::Group(g)]
            if matches!(g.delimiter(), Delimiter::Parenthesis | Delimiter::Bracket) =>
        {
            let mut items = Vec::new();
            for piece in split_commas(g.stream())? {
                items.push((parse_value(&piece)?, loc_of(&piece)));
            }
            Ok(RawValue::List(items))
        }
        _ => Err(bad()),
    }
}

fn literal(lit: &proc_macro2::Literal, negative: bool, loc: Loc) -> Result<RawValue, Diag> {
    let sign = if negative { "-" } else { "" };
    match syn::Lit::new(lit.clone()) {
        syn::Lit::Int(i) => {
            let text = format!("{sign}{}", i.base10_digits());
            text.parse::<i64>()
                .map(RawValue::Int)
                .map_err(|_| Diag::new(loc, format!("the integer {text} is too large")))
        }
        syn::Lit::Float(f) => {
            let text = format!("{sign}{}", f.base10_digits());
            text.parse::<f64>()
                .map(RawValue::Float)
                .map_err(|_| Diag::new(loc, format!("cannot read the number {text}")))
        }
        syn::Lit::Str(s) if !negative => Ok(RawValue::Word(s.value())),
        _ => Err(Diag::new(
            loc,
            "expected a number, `true`/`false`, a word like `same`, or a pair `(h, w)`",
        )),
    }
}

/// Reads a dotted path written as tokens: `conv1`, `layer1.0.conv1`, `features.0.0`
/// (which Rust lexes as `features` `.` `0.0`), `r#type`. `None` if the tokens are not one.
fn dotted_path(tokens: &[TokenTree]) -> Option<String> {
    let mut out = String::new();
    let mut want_segment = true;
    for tt in tokens {
        match (tt, want_segment) {
            (TokenTree::Ident(id), true) => {
                let s = id.to_string();
                out.push_str(s.strip_prefix("r#").unwrap_or(&s));
                want_segment = false;
            }
            (TokenTree::Literal(lit), true) => {
                // An integer segment, or two of them lexed as one float (`0.0`).
                let text = lit.to_string();
                let ok = !text.is_empty()
                    && text.split('.').count() <= 2
                    && text
                        .split('.')
                        .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
                if !ok {
                    return None;
                }
                out.push_str(&text);
                want_segment = false;
            }
            (TokenTree::Punct(p), false) if p.as_char() == '.' => {
                out.push('.');
                want_segment = true;
            }
            _ => return None,
        }
    }
    (!want_segment).then_some(out)
}

/// Parses one `name: op(args)` / `op(args)` / `op` entry. The name is a dotted path
/// (`layer1.0.conv1`) or a string literal (`"block1-0.proj.0"`).
fn parse_layer(tokens: &[TokenTree]) -> Result<RawLayer, Diag> {
    let loc = loc_of(tokens);
    // The first top-level `:` that is not part of `::` ends the name.
    let colon = tokens.iter().enumerate().position(|(i, tt)| {
        matches!(tt, TokenTree::Punct(p) if p.as_char() == ':' && p.spacing() == proc_macro2::Spacing::Alone)
            && !matches!(i.checked_sub(1).map(|j| &tokens[j]), Some(TokenTree::Punct(q)) if q.as_char() == ':')
    });
    let (name, rest) = match colon {
        Some(i) if i > 0 => {
            let head = &tokens[..i];
            let name = match head {
                [TokenTree::Literal(lit)] => match syn::Lit::new(lit.clone()) {
                    syn::Lit::Str(s) => Some(s.value()),
                    _ => None,
                },
                _ => dotted_path(head),
            };
            let Some(name) = name else {
                return Err(Diag::new(
                    loc_of(head),
                    "expected a layer name before `:`: a dotted path like `layer1.0.conv1`, or a string like \"block1-0.proj.0\"",
                ));
            };
            let rest = &tokens[i + 1..];
            if rest.is_empty() {
                return Err(Diag::new(
                    loc,
                    format!("layer `{name}`: expected an op after `{name}:`"),
                ));
            }
            (Some((RawValue::Word(name), loc_of(head))), rest)
        }
        _ => (None, tokens),
    };
    let describe = |name: &Option<(RawValue, Loc)>| match name {
        Some((RawValue::Word(n), _)) => format!("layer `{n}`: "),
        _ => String::new(),
    };
    let (op, args_group) = match rest {
        [TokenTree::Ident(op)] => (op, None),
        [TokenTree::Ident(op), TokenTree::Group(g)] if g.delimiter() == Delimiter::Parenthesis => {
            (op, Some(g))
        }
        _ => {
            return Err(Diag::new(
                loc_of(rest),
                format!(
                    "{}expected `op` or `op(args)`, like `conv(16, kernel = 3)` or `relu`",
                    describe(&name)
                ),
            ))
        }
    };
    let mut layer = RawLayer {
        name,
        op: Some((op.to_string(), Loc::Span(op.span(), op.span()))),
        positional: Vec::new(),
        args: Vec::new(),
        loc,
    };
    if let Some(g) = args_group {
        for piece in split_commas(g.stream())? {
            match piece.as_slice() {
                [TokenTree::Ident(key), TokenTree::Punct(eq), value @ ..]
                    if eq.as_char() == '=' =>
                {
                    if value.is_empty() {
                        return Err(Diag::new(
                            loc_of(&piece),
                            format!("{}expected a value after `{key} =`", describe(&layer.name)),
                        ));
                    }
                    layer.args.push(RawArg {
                        key: key.to_string(),
                        key_loc: Loc::Span(key.span(), key.span()),
                        value: parse_value(value)?,
                        loc: loc_of(&piece),
                    });
                }
                _ => {
                    let value = parse_value(&piece)?;
                    layer.positional.push((value, loc_of(&piece)));
                }
            }
        }
    }
    Ok(layer)
}

/// Parses the body of an inline description into the raw form.
pub fn parse_body(body: TokenStream, body_span: Span) -> Result<RawModel, Diag> {
    let mut model = RawModel {
        input: None,
        layers: Vec::new(),
        body_loc: Loc::Span(body_span, body_span),
        diags: Vec::new(),
    };
    for entry in split_commas(body)? {
        // Attributes on an entry (doc comments on a layer) are allowed and ignored.
        let mut rest: &[TokenTree] = &entry;
        while let [TokenTree::Punct(p), TokenTree::Group(g), tail @ ..] = rest {
            if p.as_char() == '#' && g.delimiter() == Delimiter::Bracket {
                rest = tail;
            } else {
                break;
            }
        }
        if rest.is_empty() {
            return Err(Diag::new(
                loc_of(&entry),
                "expected a layer after the attribute",
            ));
        }
        if let [TokenTree::Ident(id), TokenTree::Punct(p), TokenTree::Group(g)] = rest {
            if id == "input" && p.as_char() == ':' && g.delimiter() == Delimiter::Bracket {
                if model.input.is_some() {
                    model
                        .diags
                        .push(Diag::new(loc_of(rest), "`input` is given twice"));
                }
                model.input = Some((parse_value(&rest[2..])?, loc_of(rest)));
                continue;
            }
        }
        model.layers.push(parse_layer(rest)?);
    }
    Ok(model)
}
