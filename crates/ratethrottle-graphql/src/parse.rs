//! A parser of GraphQL executable documents that keeps what pricing needs: operations (kind,
//! name, integer defaults of variables), fragments, and selection sets of fields (name,
//! list-size arguments, whether it has arguments), inline fragments and spreads. Every other
//! part of the grammar (directives, values, types) is checked and skipped. One pass, no
//! copies of the text; the nesting is bounded by [`InputLimits`](crate::InputLimits).

use crate::{AnalysisError, InputLimits, OperationKind};

/// A parsed executable document.
#[derive(Debug, Default)]
pub struct Document<'a> {
    pub(crate) operations: Vec<Operation<'a>>,
    pub(crate) fragments: foldhash::HashMap<&'a str, Fragment<'a>>,
}

#[derive(Debug)]
pub(crate) struct Operation<'a> {
    pub(crate) kind: OperationKind,
    pub(crate) name: Option<&'a str>,
    /// Variables with an integer default value (or a string holding one).
    pub(crate) defaults: Vec<(&'a str, i64)>,
    pub(crate) selection: Vec<Item<'a>>,
}

#[derive(Debug)]
pub(crate) struct Fragment<'a> {
    pub(crate) on: &'a str,
    pub(crate) selection: Vec<Item<'a>>,
}

#[derive(Debug)]
pub(crate) enum Item<'a> {
    Field {
        name: &'a str,
        /// The response key when it is not the name.
        alias: Option<&'a str>,
        /// The arguments that may give a list size: `(name, value)`.
        sizes: Vec<(&'a str, Size<'a>)>,
        has_arguments: bool,
        selection: Vec<Item<'a>>,
    },
    Inline {
        on: Option<&'a str>,
        selection: Vec<Item<'a>>,
    },
    Spread(&'a str),
}

/// An argument's value, as far as list sizes go.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Size<'a> {
    Literal(i64),
    Variable(&'a str),
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Token<'a> {
    Punct(u8),
    Spread,
    Name(&'a str),
    Int(&'a str),
    Float,
    Str(&'a str),
    End,
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
    token: Token<'a>,
    limits: InputLimits,
    tokens: usize,
    nesting: usize,
}

type Result<T> = std::result::Result<T, AnalysisError>;

impl<'a> Document<'a> {
    /// Parses `text` within the default [`InputLimits`].
    pub fn parse(text: &'a str) -> Result<Self> {
        Self::parse_within(text, InputLimits::default())
    }

    /// Parses `text` within `limits`: its size first, then its tokens and nesting as they
    /// are read.
    pub fn parse_within(text: &'a str, limits: InputLimits) -> Result<Self> {
        if text.len() > limits.max_bytes {
            return Err(AnalysisError::TooLarge {
                bytes: text.len(),
                max: limits.max_bytes,
            });
        }
        let mut parser = Parser {
            text,
            at: 0,
            token: Token::End,
            limits,
            tokens: 0,
            nesting: 0,
        };
        parser.advance()?;
        let mut document = Document::default();
        if parser.token == Token::End {
            return Err(parser.error("the document has no operation"));
        }
        while parser.token != Token::End {
            match parser.token {
                Token::Punct(b'{') => {
                    let selection = parser.selection_set()?;
                    document.operations.push(Operation {
                        kind: OperationKind::Query,
                        name: None,
                        defaults: Vec::new(),
                        selection,
                    });
                }
                Token::Name("fragment") => {
                    parser.advance()?;
                    let name = parser.name()?;
                    if name == "on" {
                        return Err(parser.error("a fragment cannot be named `on`"));
                    }
                    parser.keyword("on")?;
                    let on = parser.name()?;
                    parser.directives()?;
                    let selection = parser.selection_set()?;
                    if document
                        .fragments
                        .insert(name, Fragment { on, selection })
                        .is_some()
                    {
                        return Err(parser.error(&format!("fragment {name:?} is defined twice")));
                    }
                }
                Token::Name(word @ ("query" | "mutation" | "subscription")) => {
                    let kind = match word {
                        "query" => OperationKind::Query,
                        "mutation" => OperationKind::Mutation,
                        _ => OperationKind::Subscription,
                    };
                    parser.advance()?;
                    let name = match parser.token {
                        Token::Name(name) => {
                            parser.advance()?;
                            Some(name)
                        }
                        _ => None,
                    };
                    let defaults = parser.variable_definitions()?;
                    parser.directives()?;
                    let selection = parser.selection_set()?;
                    document.operations.push(Operation {
                        kind,
                        name,
                        defaults,
                        selection,
                    });
                }
                _ => return Err(parser.error("expected an operation or a fragment")),
            }
        }
        let named = document
            .operations
            .iter()
            .filter(|o| o.name.is_some())
            .count();
        if document.operations.len() > 1 && named < document.operations.len() {
            return Err(parser.error("an anonymous operation must be the only one"));
        }
        Ok(document)
    }
}

impl<'a> Parser<'a> {
    fn error(&self, message: &str) -> AnalysisError {
        let line = 1 + self.text[..self.at.min(self.text.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count();
        AnalysisError::Syntax(format!("{message} (line {line})"))
    }

    /// Reads the next token.
    fn advance(&mut self) -> Result<()> {
        let bytes = self.text.as_bytes();
        loop {
            let Some(&byte) = bytes.get(self.at) else {
                self.token = Token::End;
                return Ok(());
            };
            match byte {
                b' ' | b'\t' | b'\n' | b'\r' | b',' => self.at += 1,
                b'#' => {
                    while self.at < bytes.len() && !matches!(bytes[self.at], b'\n' | b'\r') {
                        self.at += 1;
                    }
                }
                0xEF if bytes[self.at..].starts_with(&[0xEF, 0xBB, 0xBF]) => self.at += 3,
                _ => break,
            }
        }
        self.tokens += 1;
        if self.tokens > self.limits.max_tokens {
            return Err(AnalysisError::TooManyTokens {
                max: self.limits.max_tokens,
            });
        }
        let start = self.at;
        let byte = bytes[start];
        self.token = match byte {
            b'{' | b'(' | b'[' => {
                self.nesting += 1;
                if self.nesting > self.limits.max_nesting {
                    return Err(AnalysisError::TooDeep {
                        max: self.limits.max_nesting,
                    });
                }
                self.at += 1;
                Token::Punct(byte)
            }
            b'}' | b')' | b']' => {
                self.nesting = self.nesting.saturating_sub(1);
                self.at += 1;
                Token::Punct(byte)
            }
            b'!' | b'$' | b'&' | b':' | b'=' | b'@' | b'|' => {
                self.at += 1;
                Token::Punct(byte)
            }
            b'.' => {
                if !bytes[start..].starts_with(b"...") {
                    return Err(self.error("expected `...`"));
                }
                self.at += 3;
                Token::Spread
            }
            b'_' | b'a'..=b'z' | b'A'..=b'Z' => {
                self.at += 1;
                while self.at < bytes.len()
                    && (bytes[self.at].is_ascii_alphanumeric() || bytes[self.at] == b'_')
                {
                    self.at += 1;
                }
                Token::Name(&self.text[start..self.at])
            }
            b'-' | b'0'..=b'9' => self.number()?,
            b'"' => self.string()?,
            _ => return Err(self.error("unexpected character")),
        };
        Ok(())
    }

    fn number(&mut self) -> Result<Token<'a>> {
        let bytes = self.text.as_bytes();
        let start = self.at;
        let digits = |at: &mut usize| {
            let from = *at;
            while *at < bytes.len() && bytes[*at].is_ascii_digit() {
                *at += 1;
            }
            *at > from
        };
        if bytes[self.at] == b'-' {
            self.at += 1;
        }
        if !digits(&mut self.at) {
            return Err(self.error("expected a number"));
        }
        let mut float = false;
        if bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            float = true;
            if !digits(&mut self.at) {
                return Err(self.error("expected digits after `.`"));
            }
        }
        if matches!(bytes.get(self.at), Some(b'e' | b'E')) {
            self.at += 1;
            float = true;
            if matches!(bytes.get(self.at), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if !digits(&mut self.at) {
                return Err(self.error("expected an exponent"));
            }
        }
        if bytes
            .get(self.at)
            .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_' || *b == b'.')
        {
            return Err(self.error("a number runs into a name"));
        }
        Ok(if float {
            Token::Float
        } else {
            Token::Int(&self.text[start..self.at])
        })
    }

    fn string(&mut self) -> Result<Token<'a>> {
        let bytes = self.text.as_bytes();
        let start = self.at;
        if bytes[start..].starts_with(b"\"\"\"") {
            self.at += 3;
            loop {
                if self.at >= bytes.len() {
                    return Err(self.error("unterminated block string"));
                }
                if bytes[self.at..].starts_with(b"\\\"\"\"") {
                    self.at += 4;
                } else if bytes[self.at..].starts_with(b"\"\"\"") {
                    self.at += 3;
                    return Ok(Token::Str(""));
                } else {
                    self.at += 1;
                }
            }
        }
        self.at += 1;
        let content = self.at;
        loop {
            match bytes.get(self.at) {
                None | Some(b'\n' | b'\r') => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(Token::Str(&self.text[content..self.at - 1]));
                }
                Some(b'\\') => self.at += 2,
                Some(_) => self.at += 1,
            }
        }
    }

    fn expect(&mut self, punct: u8) -> Result<()> {
        if self.token != Token::Punct(punct) {
            return Err(self.error(&format!("expected `{}`", punct as char)));
        }
        self.advance()
    }

    fn name(&mut self) -> Result<&'a str> {
        match self.token {
            Token::Name(name) => {
                self.advance()?;
                Ok(name)
            }
            _ => Err(self.error("expected a name")),
        }
    }

    fn keyword(&mut self, word: &str) -> Result<()> {
        match self.token {
            Token::Name(name) if name == word => self.advance(),
            _ => Err(self.error(&format!("expected `{word}`"))),
        }
    }

    fn selection_set(&mut self) -> Result<Vec<Item<'a>>> {
        self.expect(b'{')?;
        let mut items = Vec::with_capacity(8);
        while self.token != Token::Punct(b'}') {
            items.push(self.selection()?);
        }
        if items.is_empty() {
            return Err(self.error("a selection set cannot be empty"));
        }
        self.advance()?;
        Ok(items)
    }

    fn selection(&mut self) -> Result<Item<'a>> {
        if self.token == Token::Spread {
            self.advance()?;
            return match self.token {
                Token::Name(name) if name != "on" => {
                    self.advance()?;
                    self.directives()?;
                    Ok(Item::Spread(name))
                }
                _ => {
                    let on = if self.token == Token::Name("on") {
                        self.advance()?;
                        Some(self.name()?)
                    } else {
                        None
                    };
                    self.directives()?;
                    let selection = self.selection_set()?;
                    Ok(Item::Inline { on, selection })
                }
            };
        }
        let mut name = self.name()?;
        let mut alias = None;
        if self.token == Token::Punct(b':') {
            self.advance()?;
            alias = Some(name);
            name = self.name()?;
        }
        let mut sizes = Vec::new();
        let mut has_arguments = false;
        if self.token == Token::Punct(b'(') {
            self.advance()?;
            has_arguments = true;
            while self.token != Token::Punct(b')') {
                let argument = self.name()?;
                self.expect(b':')?;
                let size = self.value(false)?;
                sizes.push((argument, size));
            }
            if sizes.is_empty() {
                return Err(self.error("empty arguments"));
            }
            self.advance()?;
        }
        self.directives()?;
        let selection = if self.token == Token::Punct(b'{') {
            self.selection_set()?
        } else {
            Vec::new()
        };
        Ok(Item::Field {
            name,
            alias,
            sizes,
            has_arguments,
            selection,
        })
    }

    /// Reads a value (constant when `constant`), keeping what a list size needs.
    fn value(&mut self, constant: bool) -> Result<Size<'a>> {
        let size = match self.token {
            Token::Punct(b'$') if !constant => {
                self.advance()?;
                return Ok(Size::Variable(self.name()?));
            }
            Token::Int(text) => Size::Literal(text.parse().unwrap_or(i64::MAX)),
            Token::Str(text) => text.trim().parse().map_or(Size::Other, Size::Literal),
            Token::Float | Token::Name(_) => Size::Other,
            Token::Punct(b'[') => {
                self.advance()?;
                while self.token != Token::Punct(b']') {
                    self.value(constant)?;
                }
                Size::Other
            }
            Token::Punct(b'{') => {
                self.advance()?;
                while self.token != Token::Punct(b'}') {
                    self.name()?;
                    self.expect(b':')?;
                    self.value(constant)?;
                }
                Size::Other
            }
            _ => return Err(self.error("expected a value")),
        };
        self.advance()?;
        Ok(size)
    }

    fn directives(&mut self) -> Result<()> {
        while self.token == Token::Punct(b'@') {
            self.advance()?;
            self.name()?;
            if self.token == Token::Punct(b'(') {
                self.advance()?;
                while self.token != Token::Punct(b')') {
                    self.name()?;
                    self.expect(b':')?;
                    self.value(false)?;
                }
                self.advance()?;
            }
        }
        Ok(())
    }

    fn variable_definitions(&mut self) -> Result<Vec<(&'a str, i64)>> {
        let mut defaults = Vec::new();
        if self.token != Token::Punct(b'(') {
            return Ok(defaults);
        }
        self.advance()?;
        while self.token != Token::Punct(b')') {
            self.expect(b'$')?;
            let name = self.name()?;
            self.expect(b':')?;
            self.type_reference()?;
            if self.token == Token::Punct(b'=') {
                self.advance()?;
                if let Size::Literal(value) = self.value(true)? {
                    defaults.push((name, value));
                }
            }
            self.directives()?;
        }
        self.advance()?;
        Ok(defaults)
    }

    fn type_reference(&mut self) -> Result<()> {
        if self.token == Token::Punct(b'[') {
            self.advance()?;
            self.type_reference()?;
            self.expect(b']')?;
        } else {
            self.name()?;
        }
        if self.token == Token::Punct(b'!') {
            self.advance()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_tokens_and_nesting_outside_strings_and_comments() {
        let limits = InputLimits {
            max_bytes: 1000,
            max_tokens: 8,
            max_nesting: 2,
        };
        let parse = |text| Document::parse_within(text, limits).map(drop);
        // { a ( x : "{{{{" ) }  # {{{{   — 8 tokens, nesting 2
        assert_eq!(parse(r#"{ a(x: "{{{{") } # {{{{"#), Ok(()));
        assert_eq!(parse(r#"{ a(x: """ {{{ \""" {{ """) }"#), Ok(()));
        assert_eq!(
            parse("{ a { b { c } } }"),
            Err(AnalysisError::TooDeep { max: 2 })
        );
        assert_eq!(
            parse("{ a b c d e f g h }"),
            Err(AnalysisError::TooManyTokens { max: 8 })
        );
        let long = "a".repeat(1001);
        assert_eq!(
            parse(&long),
            Err(AnalysisError::TooLarge {
                bytes: 1001,
                max: 1000
            })
        );
        assert!(matches!(
            parse("{ a(x: \"open) }"),
            Err(AnalysisError::Syntax(_))
        ));
    }
}
