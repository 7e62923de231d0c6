//! Scanner and parser for template language expressions (`"[concat('a', parameters('b'))]"`).
//!
//! The grammar follows the ARM engine's expression parser: a string literal in single quotes
//! (`''` is one quote), an integer, or a function call followed by property accessors
//! (`.name` or `[expression]`). `true`, `false` and `null` are functions, not keywords.
//! Source: <https://learn.microsoft.com/azure/azure-resource-manager/templates/template-expressions>.

/// Kind of a JSON string value: literal text or an expression.
#[derive(Debug, PartialEq)]
pub(crate) enum StringForm<'s> {
    /// A plain string, after removing the `[[` escape when present.
    Literal(std::borrow::Cow<'s, str>),
    /// The text between the outer brackets of an expression.
    Expression(&'s str),
}

/// Classifies a JSON string. An expression starts with `[` and ends with `]`. A string that
/// starts with `[[` is a literal without its first character, so `"[[x]"` is `"[x]"`.
pub(crate) fn classify(text: &str) -> StringForm<'_> {
    if text.len() < 2 || !text.starts_with('[') || !text.ends_with(']') {
        return StringForm::Literal(text.into());
    }
    if text.as_bytes().get(1) == Some(&b'[') {
        return StringForm::Literal(text[1..].to_owned().into());
    }
    StringForm::Expression(&text[1..text.len() - 1])
}

/// A parsed expression.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    String(String),
    Int(i64),
    Call(Box<Call>),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Call {
    /// The function name as written; `ns.name` for a user-defined function.
    pub name: String,
    pub args: Vec<Expr>,
    pub accessors: Vec<Accessor>,
    /// Byte offset of the name inside the expression text (without the opening `[`).
    pub offset: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Accessor {
    Property(String),
    Index(Expr),
}

/// A parse error at a byte offset of the expression text (without the opening `[`).
#[derive(Debug, PartialEq)]
pub(crate) struct ParseError {
    pub offset: usize,
    pub message: String,
}

/// Parses the text between the brackets of an expression.
pub(crate) fn parse(text: &str) -> Result<Expr, ParseError> {
    let tokens = scan(text)?;
    let mut parser = Parser {
        tokens: &tokens,
        pos: 0,
        end: text.len(),
        depth: 0,
    };
    let expr = parser.expression()?;
    if let Some(token) = parser.tokens.get(parser.pos) {
        return Err(ParseError {
            offset: token.offset,
            message: format!("unexpected {} after the end of the expression", token.kind),
        });
    }
    Ok(expr)
}

impl std::fmt::Display for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expr::String(text) => write!(f, "'{}'", text.replace('\'', "''")),
            Expr::Int(value) => write!(f, "{value}"),
            Expr::Call(call) => {
                write!(f, "{}(", call.name)?;
                for (index, arg) in call.args.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{arg}")?;
                }
                f.write_str(")")?;
                for accessor in &call.accessors {
                    write!(f, "{accessor}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::fmt::Display for Accessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Accessor::Property(name) => write!(f, ".{name}"),
            Accessor::Index(index) => write!(f, "[{index}]"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum TokenKind {
    OpenParen,
    CloseParen,
    OpenBracket,
    CloseBracket,
    Comma,
    Dot,
    String(String),
    Int(i64),
    Identifier(String),
}

impl std::fmt::Display for TokenKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenKind::OpenParen => f.write_str("`(`"),
            TokenKind::CloseParen => f.write_str("`)`"),
            TokenKind::OpenBracket => f.write_str("`[`"),
            TokenKind::CloseBracket => f.write_str("`]`"),
            TokenKind::Comma => f.write_str("`,`"),
            TokenKind::Dot => f.write_str("`.`"),
            TokenKind::String(text) => write!(f, "string `'{text}'`"),
            TokenKind::Int(value) => write!(f, "integer `{value}`"),
            TokenKind::Identifier(name) => write!(f, "identifier `{name}`"),
        }
    }
}

#[derive(Debug)]
struct Token {
    kind: TokenKind,
    offset: usize,
}

fn is_identifier_char(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '$' || ch == '_'
}

fn scan(text: &str) -> Result<Vec<Token>, ParseError> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(offset, ch)) = chars.peek() {
        let punctuation = match ch {
            '(' => Some(TokenKind::OpenParen),
            ')' => Some(TokenKind::CloseParen),
            '[' => Some(TokenKind::OpenBracket),
            ']' => Some(TokenKind::CloseBracket),
            ',' => Some(TokenKind::Comma),
            '.' => Some(TokenKind::Dot),
            _ => None,
        };
        if let Some(kind) = punctuation {
            chars.next();
            tokens.push(Token { kind, offset });
            continue;
        }
        if ch.is_whitespace() {
            chars.next();
            continue;
        }

        if ch == '\'' {
            chars.next();
            let mut value = String::new();
            let mut closed = false;
            while let Some((_, next)) = chars.next() {
                if next == '\'' {
                    if matches!(chars.peek(), Some((_, '\''))) {
                        chars.next();
                        value.push('\'');
                        continue;
                    }
                    closed = true;
                    break;
                }
                value.push(next);
            }
            if !closed {
                return Err(ParseError {
                    offset,
                    message: "unterminated string literal in expression".to_owned(),
                });
            }
            tokens.push(Token {
                kind: TokenKind::String(value),
                offset,
            });
            continue;
        }

        let signed = (ch == '-' || ch == '+')
            && text[offset + 1..].starts_with(|next: char| next.is_ascii_digit());
        if ch.is_ascii_digit() || signed {
            chars.next();
            let mut end = offset + ch.len_utf8();
            while let Some(&(index, next)) = chars.peek() {
                if !next.is_ascii_digit() {
                    break;
                }
                chars.next();
                end = index + 1;
            }
            let rest = &text[end..];
            let float = (rest.starts_with('.')
                && rest[1..].starts_with(|c: char| c.is_ascii_digit()))
                || rest.starts_with(['e', 'E']);
            if float {
                return Err(ParseError {
                    offset,
                    message: "floating point literals are not supported in expressions".to_owned(),
                });
            }
            if rest.starts_with(is_identifier_char) {
                let word_end = rest
                    .find(|next: char| !is_identifier_char(next))
                    .map_or(text.len(), |index| end + index);
                return Err(ParseError {
                    offset,
                    message: format!("invalid number `{}`", &text[offset..word_end]),
                });
            }
            let literal = &text[offset..end];
            // The engine reads integer literals with `int.TryParse`, so they are 32-bit.
            let value = literal.parse::<i32>().map_err(|_| ParseError {
                offset,
                message: format!("integer literal `{literal}` is out of the 32-bit range"),
            })?;
            tokens.push(Token {
                kind: TokenKind::Int(i64::from(value)),
                offset,
            });
            continue;
        }

        if is_identifier_char(ch) {
            let mut end = offset;
            while let Some(&(index, next)) = chars.peek() {
                if !is_identifier_char(next) {
                    break;
                }
                chars.next();
                end = index + next.len_utf8();
            }
            tokens.push(Token {
                kind: TokenKind::Identifier(text[offset..end].to_owned()),
                offset,
            });
            continue;
        }

        return Err(ParseError {
            offset,
            message: format!("unexpected character `{ch}` in expression"),
        });
    }
    Ok(tokens)
}

// Expressions nest through function arguments and index accessors; a bound keeps a hostile
// template from overflowing the stack.
const MAX_DEPTH: usize = 256;

struct Parser<'t> {
    tokens: &'t [Token],
    pos: usize,
    end: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn offset(&self) -> usize {
        self.peek().map_or(self.end, |token| token.offset)
    }

    fn fail<T>(&self, expected: &str) -> Result<T, ParseError> {
        let message = match self.peek() {
            Some(token) => format!("expected {expected}, found {}", token.kind),
            None => format!("expected {expected}, found the end of the expression"),
        };
        Err(ParseError {
            offset: self.offset(),
            message,
        })
    }

    fn eat(&mut self, kind: &TokenKind) -> bool {
        if self.peek().map(|token| &token.kind) == Some(kind) {
            self.pos += 1;
            return true;
        }
        false
    }

    fn expression(&mut self) -> Result<Expr, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError {
                offset: self.offset(),
                message: format!("expression nested deeper than {MAX_DEPTH} levels"),
            });
        }
        let result = self.expression_inner();
        self.depth -= 1;
        result
    }

    fn expression_inner(&mut self) -> Result<Expr, ParseError> {
        let Some(token) = self.peek() else {
            return self.fail("a string, an integer or a function call");
        };
        let offset = token.offset;
        match token.kind.clone() {
            TokenKind::String(text) => {
                self.pos += 1;
                Ok(Expr::String(text))
            }
            TokenKind::Int(value) => {
                self.pos += 1;
                Ok(Expr::Int(value))
            }
            TokenKind::Identifier(first) => {
                self.pos += 1;
                let mut name = first;
                if self.eat(&TokenKind::Dot) {
                    match self.peek().map(|token| token.kind.clone()) {
                        Some(TokenKind::Identifier(member)) => {
                            self.pos += 1;
                            name = format!("{name}.{member}");
                        }
                        _ => return self.fail("a function name after `.`"),
                    }
                }
                self.call(name, offset)
            }
            _ => self.fail("a string, an integer or a function call"),
        }
    }

    fn call(&mut self, name: String, offset: usize) -> Result<Expr, ParseError> {
        if !self.eat(&TokenKind::OpenParen) {
            return self.fail(&format!("`(` after the function name `{name}`"));
        }
        let mut args = Vec::new();
        if !self.eat(&TokenKind::CloseParen) {
            loop {
                args.push(self.expression()?);
                if self.eat(&TokenKind::Comma) {
                    continue;
                }
                if self.eat(&TokenKind::CloseParen) {
                    break;
                }
                return self.fail("`,` or `)`");
            }
        }

        let mut accessors = Vec::new();
        loop {
            if self.eat(&TokenKind::Dot) {
                match self.peek().map(|token| token.kind.clone()) {
                    Some(TokenKind::Identifier(property)) => {
                        self.pos += 1;
                        accessors.push(Accessor::Property(property));
                    }
                    _ => return self.fail("a property name after `.`"),
                }
            } else if self.eat(&TokenKind::OpenBracket) {
                let index = self.expression()?;
                if !self.eat(&TokenKind::CloseBracket) {
                    return self.fail("`]`");
                }
                accessors.push(Accessor::Index(index));
            } else {
                break;
            }
        }
        Ok(Expr::Call(Box::new(Call {
            name,
            args,
            accessors,
            offset,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(expr: &Expr) -> &Call {
        match expr {
            Expr::Call(call) => call,
            other => panic!("not a call: {other:?}"),
        }
    }

    #[test]
    fn classify_cases() {
        let cases = [
            ("plain", StringForm::Literal("plain".into())),
            ("[test] value", StringForm::Literal("[test] value".into())),
            ("[[test value]", StringForm::Literal("[test value]".into())),
            ("[f()]", StringForm::Expression("f()")),
            ("", StringForm::Literal("".into())),
            ("[", StringForm::Literal("[".into())),
        ];
        for (input, expected) in cases {
            assert_eq!(classify(input), expected, "{input}");
        }
    }

    #[test]
    fn parse_nested_call_with_accessors() {
        let expr = parse("parameters('o').a.b[0]['c d']").unwrap();
        let call = call(&expr);
        assert_eq!(call.name, "parameters");
        assert_eq!(call.accessors.len(), 4);
        assert_eq!(call.accessors[2], Accessor::Index(Expr::Int(0)));
    }

    #[test]
    fn parse_doubled_quote() {
        let expr = parse("concat('it''s', 'x')").unwrap();
        assert_eq!(call(&expr).args[0], Expr::String("it's".to_owned()));
    }

    #[test]
    fn parse_namespace_function() {
        let expr = parse("__bicep.fn(1)").unwrap();
        assert_eq!(call(&expr).name, "__bicep.fn");
    }

    #[test]
    fn parse_whitespace_and_newlines() {
        assert!(parse(" concat(\n 'a' ,\r\n -1 ) ").is_ok());
    }

    #[test]
    fn parse_renders_back() {
        let text = "concat('a''b', -1, f().x[g()])";
        assert_eq!(parse(text).unwrap().to_string(), text);
    }

    #[test]
    fn error_cases() {
        let cases = [
            ("concat('a", 7, "unterminated string literal in expression"),
            (
                "add(1.5, 2)",
                4,
                "floating point literals are not supported in expressions",
            ),
            (
                "f(",
                2,
                "expected a string, an integer or a function call, found the end of the expression",
            ),
            (
                "'abc'[0]",
                5,
                "unexpected `[` after the end of the expression",
            ),
            (
                "f() g()",
                4,
                "unexpected identifier `g` after the end of the expression",
            ),
            ("f(12a)", 2, "invalid number `12a`"),
            (
                "f(99999999999)",
                2,
                "integer literal `99999999999` is out of the 32-bit range",
            ),
            ("f(#)", 2, "unexpected character `#` in expression"),
            (
                "f",
                1,
                "expected `(` after the function name `f`, found the end of the expression",
            ),
            (
                "",
                0,
                "expected a string, an integer or a function call, found the end of the expression",
            ),
        ];
        for (input, offset, message) in cases {
            let error = parse(input).unwrap_err();
            assert_eq!(error.message, message, "{input}");
            assert_eq!(error.offset, offset, "{input}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(text in "\\PC{0,64}") {
            let _ = parse(&text);
        }

        #[test]
        fn parse_never_panics_on_expression_alphabet(text in "[a-zA-Z0-9_$.,()\\[\\]' +-]{0,48}") {
            let _ = parse(&text);
        }

        #[test]
        fn parsed_expressions_render_and_reparse(text in "[a-z]{1,6}\\(('[a-z ]{0,4}'|-?[0-9]{1,4})?\\)(\\.[a-z]{1,4})?") {
            // Whatever parses renders back to text that parses to the same tree.
            if let Ok(expr) = parse(&text) {
                proptest::prop_assert_eq!(parse(&expr.to_string()).ok(), Some(expr));
            }
        }

        #[test]
        fn error_offsets_stay_inside_the_text(text in "\\PC{0,64}") {
            if let Err(error) = parse(&text) {
                proptest::prop_assert!(error.offset <= text.len());
                proptest::prop_assert!(text.is_char_boundary(error.offset));
            }
        }
    }

    #[test]
    fn depth_limit() {
        let text = format!("{}1{}", "f(".repeat(400), ")".repeat(400));
        assert!(parse(&text).is_err());
    }
}
