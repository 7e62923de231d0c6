//! JSON with comments, read into a syntax tree that keeps byte spans.
//!
//! The tree is separate from [`crate::Value`]: the evaluator walks nodes to know where a value
//! is written, and produces plain values. Azure CLI, PowerShell and the portal accept `//` and
//! `/* */` comments and string literals that span several lines
//! (<https://learn.microsoft.com/azure/azure-resource-manager/templates/syntax#comments>), so
//! this reader accepts them too, plus a leading byte order mark. Files are read as UTF-8, or as
//! UTF-16 with a byte order mark (see [`crate::encoding`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::encoding::decode_text;
use crate::error::{Error, ErrorKind};
use crate::{DuplicateKey, SourceLocation};

/// One file (or an in-memory text) with its line index.
#[derive(Debug)]
pub(crate) struct Source {
    pub name: PathBuf,
    pub text: Arc<String>,
    line_starts: Vec<usize>,
}

/// A JSON value in the syntax tree, with the byte range it covers in its [`Source`].
#[derive(Debug)]
pub(crate) struct Node {
    pub start: usize,
    pub end: usize,
    pub kind: NodeKind,
}

#[derive(Debug)]
pub(crate) enum NodeKind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(StringLit),
    Array(Vec<Arc<Node>>),
    Object(Vec<Member>),
}

/// A string literal: its decoded text, and whether the decoded text is byte-for-byte the raw
/// text between the quotes (then offsets inside the value map straight onto the file).
#[derive(Debug)]
pub(crate) struct StringLit {
    pub text: String,
    pub verbatim: bool,
}

#[derive(Debug)]
pub(crate) struct Member {
    pub key: StringLit,
    pub key_start: usize,
    pub key_end: usize,
    pub value: Arc<Node>,
}

/// Options for the reader: the engine's `json()` accepts single-quoted strings (Newtonsoft).
#[derive(Clone, Copy, Default)]
pub(crate) struct ReadOptions {
    pub single_quotes: bool,
}

impl Source {
    pub fn new(name: impl Into<PathBuf>, text: String) -> Self {
        // Editors do not count a byte order mark as a column, and SARIF columns are the
        // editor's, so line 1 starts after it. Offsets stay those of the file.
        let first_line = if text.starts_with('\u{feff}') {
            '\u{feff}'.len_utf8()
        } else {
            0
        };
        let mut line_starts = vec![first_line];
        for (index, byte) in text.bytes().enumerate() {
            if byte == b'\n' {
                line_starts.push(index + 1);
            }
        }
        Source {
            name: name.into(),
            text: Arc::new(text),
            line_starts,
        }
    }

    pub fn read(path: &Path) -> Result<Self, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let text = decode_text(path, bytes).map_err(|error| Error::Encoding(Box::new(error)))?;
        Ok(Source::new(path, text))
    }

    /// Returns the 1-based line and column (in characters) of a byte offset.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(index) => index,
            Err(index) => index.saturating_sub(1),
        };
        let start = self.line_starts.get(line).copied().unwrap_or(0);
        let column = self
            .text
            .get(start..offset)
            .map(|prefix| prefix.chars().count())
            .unwrap_or(0);
        (line + 1, column + 1)
    }

    pub fn location(&self, start: usize, end: usize, json_path: &str) -> SourceLocation {
        let (line, column) = self.line_column(start);
        SourceLocation {
            file: self.name.clone(),
            line,
            column,
            json_path: json_path.to_owned(),
            offset: start,
            length: end.saturating_sub(start),
        }
    }

    /// Parses the whole text as one JSON value (comments allowed).
    pub fn parse(&self) -> Result<Arc<Node>, Error> {
        parse_text(&self.text, ReadOptions::default()).map_err(|failure| {
            // Underline the character at the failure, or nothing at the end of the text: a
            // one-byte span would point past the end of an empty text or into the middle of
            // a multi-byte character.
            let mut start = failure.offset.min(self.text.len());
            while !self.text.is_char_boundary(start) {
                start -= 1;
            }
            let width = self
                .text
                .get(start..)
                .and_then(|rest| rest.chars().next())
                .map_or(0, char::len_utf8);
            let location = self.location(start, start + width, "$");
            Error::located(
                ErrorKind::Syntax,
                failure.message,
                "fix the JSON syntax at the marked position".to_owned(),
                self,
                location,
            )
        })
    }
}

impl Node {
    pub fn as_object(&self) -> Option<&[Member]> {
        match &self.kind {
            NodeKind::Object(members) => Some(members),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Arc<Node>]> {
        match &self.kind {
            NodeKind::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::String(literal) => Some(&literal.text),
            _ => None,
        }
    }

    /// Finds an object member ignoring case, the last one when a key is written twice, as
    /// the evaluator reads the later copy of a duplicate key (see `DuplicateKey`).
    pub fn member(&self, key: &str) -> Option<&Member> {
        self.as_object()?
            .iter()
            .rev()
            .find(|member| member.key.text.eq_ignore_ascii_case(key))
    }

    pub fn get(&self, key: &str) -> Option<&Arc<Node>> {
        self.member(key).map(|member| &member.value)
    }
}

/// A syntax error: byte offset and lowercase message.
#[derive(Debug)]
pub(crate) struct SyntaxFailure {
    pub offset: usize,
    pub message: String,
}

/// Parses `text` into a node tree.
pub(crate) fn parse_text(text: &str, options: ReadOptions) -> Result<Arc<Node>, SyntaxFailure> {
    let mut reader = Reader {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        options,
        depth: 0,
    };
    if text.starts_with('\u{feff}') {
        reader.pos = '\u{feff}'.len_utf8();
    }
    reader.skip_trivia()?;
    let node = reader.value()?;
    reader.skip_trivia()?;
    if reader.pos < reader.bytes.len() {
        return Err(reader.fail("unexpected text after the end of the JSON value"));
    }
    Ok(node)
}

// Deep nesting would overflow the stack of the recursive reader; real templates stay far below.
const MAX_DEPTH: usize = 512;

struct Reader<'t> {
    text: &'t str,
    bytes: &'t [u8],
    pos: usize,
    options: ReadOptions,
    depth: usize,
}

impl Reader<'_> {
    fn fail(&self, message: impl Into<String>) -> SyntaxFailure {
        SyntaxFailure {
            offset: self.pos,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_trivia(&mut self) -> Result<(), SyntaxFailure> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r' | b'\n') => self.pos += 1,
                Some(b'/') => match self.bytes.get(self.pos + 1) {
                    Some(b'/') => {
                        while let Some(byte) = self.peek() {
                            if byte == b'\n' {
                                break;
                            }
                            self.pos += 1;
                        }
                    }
                    Some(b'*') => {
                        let start = self.pos;
                        self.pos += 2;
                        loop {
                            match self.peek() {
                                None => {
                                    self.pos = start;
                                    return Err(self.fail("unterminated `/*` comment"));
                                }
                                Some(b'*') if self.bytes.get(self.pos + 1) == Some(&b'/') => {
                                    self.pos += 2;
                                    break;
                                }
                                Some(_) => self.pos += 1,
                            }
                        }
                    }
                    _ => return Err(self.fail("unexpected `/`")),
                },
                _ => return Ok(()),
            }
        }
    }

    fn value(&mut self) -> Result<Arc<Node>, SyntaxFailure> {
        let start = self.pos;
        let kind = match self.peek() {
            None => return Err(self.fail("unexpected end of input, expected a JSON value")),
            Some(b'{') => self.object()?,
            Some(b'[') => self.array()?,
            Some(b'"') => NodeKind::String(self.string(b'"')?),
            Some(b'\'') if self.options.single_quotes => NodeKind::String(self.string(b'\'')?),
            Some(b'-' | b'0'..=b'9') => self.number()?,
            Some(_) => self.word()?,
        };
        Ok(Arc::new(Node {
            start,
            end: self.pos,
            kind,
        }))
    }

    fn word(&mut self) -> Result<NodeKind, SyntaxFailure> {
        let rest = &self.bytes[self.pos..];
        for (word, kind) in [
            (&b"null"[..], NodeKind::Null),
            (b"true", NodeKind::Bool(true)),
            (b"false", NodeKind::Bool(false)),
        ] {
            if rest.starts_with(word) {
                self.pos += word.len();
                return Ok(kind);
            }
        }
        let found = self.text[self.pos..].chars().next().unwrap_or(' ');
        Err(self.fail(format!(
            "unexpected character `{found}`, expected a JSON value"
        )))
    }

    fn enter(&mut self) -> Result<(), SyntaxFailure> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.fail(format!("JSON nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn object(&mut self) -> Result<NodeKind, SyntaxFailure> {
        self.enter()?;
        self.pos += 1;
        let mut members = Vec::new();
        self.skip_trivia()?;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(NodeKind::Object(members));
        }
        loop {
            self.skip_trivia()?;
            let key_start = self.pos;
            let key = match self.peek() {
                Some(b'"') => self.string(b'"')?,
                Some(b'\'') if self.options.single_quotes => self.string(b'\'')?,
                _ => return Err(self.fail("expected a property name in double quotes")),
            };
            let key_end = self.pos;
            self.skip_trivia()?;
            if self.peek() != Some(b':') {
                return Err(self.fail("expected `:` after the property name"));
            }
            self.pos += 1;
            self.skip_trivia()?;
            let value = self.value()?;
            members.push(Member {
                key,
                key_start,
                key_end,
                value,
            });
            self.skip_trivia()?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(NodeKind::Object(members));
                }
                None => return Err(self.fail("unexpected end of input, expected `,` or `}`")),
                Some(_) => return Err(self.fail("expected `,` or `}` after the property value")),
            }
        }
    }

    fn array(&mut self) -> Result<NodeKind, SyntaxFailure> {
        self.enter()?;
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_trivia()?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(NodeKind::Array(items));
        }
        loop {
            self.skip_trivia()?;
            items.push(self.value()?);
            self.skip_trivia()?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(NodeKind::Array(items));
                }
                None => return Err(self.fail("unexpected end of input, expected `,` or `]`")),
                Some(_) => return Err(self.fail("expected `,` or `]` after the array element")),
            }
        }
    }

    fn string(&mut self, quote: u8) -> Result<StringLit, SyntaxFailure> {
        let open = self.pos;
        self.pos += 1;
        let mut text = String::new();
        let mut verbatim = true;
        loop {
            let Some(byte) = self.peek() else {
                self.pos = open;
                return Err(self.fail("unterminated string"));
            };
            if byte == quote {
                self.pos += 1;
                return Ok(StringLit { text, verbatim });
            }
            if byte != b'\\' {
                // Copy one whole UTF-8 character; raw newlines are allowed (multi-line strings).
                let ch = self.text[self.pos..].chars().next().unwrap_or('\u{fffd}');
                text.push(ch);
                self.pos += ch.len_utf8();
                continue;
            }
            verbatim = false;
            self.pos += 1;
            let Some(escape) = self.peek() else {
                return Err(self.fail("unterminated escape sequence"));
            };
            self.pos += 1;
            match escape {
                b'"' => text.push('"'),
                b'\'' => text.push('\''),
                b'\\' => text.push('\\'),
                b'/' => text.push('/'),
                b'b' => text.push('\u{8}'),
                b'f' => text.push('\u{c}'),
                b'n' => text.push('\n'),
                b'r' => text.push('\r'),
                b't' => text.push('\t'),
                b'u' => text.push(self.unicode_escape()?),
                _ => {
                    self.pos -= 2;
                    return Err(self.fail(format!(
                        "invalid escape sequence `\\{}`",
                        char::from(escape)
                    )));
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, SyntaxFailure> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.fail("incomplete `\\u` escape"))?;
        let value = u32::from_str_radix(digits, 16)
            .map_err(|_| self.fail(format!("invalid `\\u` escape `{digits}`")))?;
        self.pos += 4;
        Ok(value)
    }

    fn unicode_escape(&mut self) -> Result<char, SyntaxFailure> {
        let first = self.hex4()?;
        if (0xD800..0xDC00).contains(&first) && self.bytes[self.pos..].starts_with(b"\\u") {
            let save = self.pos;
            self.pos += 2;
            let second = self.hex4()?;
            if (0xDC00..0xE000).contains(&second) {
                let combined = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                return Ok(char::from_u32(combined).unwrap_or('\u{fffd}'));
            }
            self.pos = save;
        }
        Ok(char::from_u32(first).unwrap_or('\u{fffd}'))
    }

    fn number(&mut self) -> Result<NodeKind, SyntaxFailure> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let digits_start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        if self.pos == digits_start {
            return Err(self.fail("expected a digit"));
        }
        let mut is_float = false;
        if self.peek() == Some(b'.') {
            is_float = true;
            self.pos += 1;
            let fraction_start = self.pos;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
            if self.pos == fraction_start {
                return Err(self.fail("expected a digit after the decimal point"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            is_float = true;
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            let exponent_start = self.pos;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
            if self.pos == exponent_start {
                return Err(self.fail("expected a digit in the exponent"));
            }
        }
        let literal = &self.text[start..self.pos];
        if !is_float {
            if let Ok(integer) = literal.parse::<i64>() {
                return Ok(NodeKind::Int(integer));
            }
        }
        literal
            .parse::<f64>()
            .map(NodeKind::Float)
            .map_err(|_| self.fail(format!("invalid number `{literal}`")))
    }
}

/// Returns whether two of `members` have keys equal ignoring case, or a key (an expression or
/// a property copy) may produce a name equal to another key. Only then does an object need
/// `Object::insert_written`, whose search for an earlier spelling is linear.
pub(crate) fn may_repeat_keys(members: &[Member]) -> bool {
    let mut seen = std::collections::HashSet::with_capacity(members.len());
    members.iter().any(|member| {
        let key = &member.key.text;
        // A property copy names its arrays by value, so they may equal any key too.
        key.starts_with('[')
            || key.eq_ignore_ascii_case("copy")
            || !seen.insert(key.to_ascii_lowercase())
    })
}

/// Appends every key written twice in one object of `root`, comparing keys ignoring case as
/// ARM compares property names. Sibling property-copy `copy` members are not duplicates,
/// because each expands.
// NOTE: that ARM expands each sibling `copy` is undocumented. The quickstart Key Vault module
// writes two in `networkAcls` and relies on it.
pub(crate) fn find_duplicate_keys(source: &Source, root: &Node, found: &mut Vec<DuplicateKey>) {
    let already_found = found.len();
    let mut pending = vec![(root, "$".to_owned())];
    while let Some((node, path)) = pending.pop() {
        match &node.kind {
            NodeKind::Object(members) => {
                // Lower-case key to the member that wrote it last, so the scan stays linear.
                let mut seen: HashMap<String, &Member> = HashMap::with_capacity(members.len());
                for member in members {
                    let key = &member.key.text;
                    if let Some(earlier) = seen.insert(key.to_ascii_lowercase(), member) {
                        let copies = key.eq_ignore_ascii_case("copy")
                            && member.value.as_array().is_some()
                            && earlier.value.as_array().is_some();
                        if !copies {
                            found.push(DuplicateKey {
                                key: key.clone(),
                                first: source.location(
                                    earlier.key_start,
                                    earlier.key_end,
                                    &path_key(&path, &earlier.key.text),
                                ),
                                duplicate: source.location(
                                    member.key_start,
                                    member.key_end,
                                    &path_key(&path, key),
                                ),
                            });
                        }
                    }
                    pending.push((&member.value, path_key(&path, key)));
                }
            }
            NodeKind::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    pending.push((item, path_index(&path, index)));
                }
            }
            _ => {}
        }
    }
    found[already_found..].sort_by_key(|duplicate| duplicate.duplicate.offset);
}

/// Appends an object key to a JSON path, quoting keys that are not plain identifiers.
pub(crate) fn path_key(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '$')
        && !key.starts_with(|ch: char| ch.is_ascii_digit());
    if plain {
        format!("{path}.{key}")
    } else {
        format!("{path}['{}']", key.replace('\'', "\\'"))
    }
}

pub(crate) fn path_index(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Arc<Node>, SyntaxFailure> {
        parse_text(text, ReadOptions::default())
    }

    #[test]
    fn parse_comments_and_bom() {
        let text = "\u{feff}// head\r\n{ /* a */ \"a\": 1, // b\r\n \"b\": [true, null]\r\n}";
        let node = parse(text).unwrap();
        assert!(matches!(node.get("a").unwrap().kind, NodeKind::Int(1)));
        assert_eq!(node.get("B").unwrap().as_array().unwrap().len(), 2);
    }

    #[test]
    fn parse_multiline_string() {
        let node = parse("{\"a\": \"[concat('x',\n  'y')]\"}").unwrap();
        assert_eq!(
            node.get("a").unwrap().as_str(),
            Some("[concat('x',\n  'y')]")
        );
    }

    #[test]
    fn parse_no_final_newline() {
        assert!(parse("[1,2]").is_ok());
    }

    #[test]
    fn parse_int_and_float() {
        let node = parse("[1, -2, 1.5, 1e3, 99999999999999999999]").unwrap();
        let items = node.as_array().unwrap();
        assert!(matches!(items[1].kind, NodeKind::Int(-2)));
        assert!(matches!(items[2].kind, NodeKind::Float(value) if value == 1.5));
        assert!(matches!(items[3].kind, NodeKind::Float(_)));
        assert!(matches!(items[4].kind, NodeKind::Float(_)));
    }

    #[test]
    fn parse_escapes() {
        let node = parse(r#""a\"b\u00e9\ud83d\ude00""#).unwrap();
        assert_eq!(node.as_str(), Some("a\"bé😀"));
    }

    #[test]
    fn parse_spans() {
        let node = parse("{\n  \"k\": \"v\"\n}").unwrap();
        let member = node.member("k").unwrap();
        assert_eq!(
            (member.key_start, member.value.start, member.value.end),
            (4, 9, 12)
        );
    }

    #[test]
    fn error_unterminated_string() {
        let failure = parse("{\"a\": \"abc}").unwrap_err();
        assert_eq!(
            (failure.offset, failure.message.as_str()),
            (6, "unterminated string")
        );
    }

    #[test]
    fn error_missing_comma() {
        let failure = parse("{\"a\": 1 \"b\": 2}").unwrap_err();
        assert_eq!(failure.offset, 8);
    }

    #[test]
    fn error_unterminated_comment() {
        assert!(parse("{} /* x").is_err());
    }

    #[test]
    fn single_quotes_only_when_enabled() {
        assert!(parse("{'a': 'b'}").is_err());
        let lenient = ReadOptions {
            single_quotes: true,
        };
        assert!(parse_text("{'a': 'b'}", lenient).is_ok());
    }

    #[test]
    fn line_column_counts_characters() {
        let source = Source::new("t.json", "ab\néx".to_owned());
        assert_eq!(source.line_column(5), (2, 2));
    }

    #[test]
    fn byte_order_mark_is_not_a_column() {
        let plain = "{\"a\": x,\n \"b\": 1}";
        let marked = format!("\u{feff}{plain}");
        let mark = '\u{feff}'.len_utf8();

        let plain = Source::new("t.json", plain.to_owned());
        let plain_location = plain.parse().unwrap_err().location().cloned().unwrap();
        let marked = Source::new("t.json", marked);
        let marked_location = marked.parse().unwrap_err().location().cloned().unwrap();

        assert_eq!((plain_location.line, plain_location.column), (1, 7));
        assert_eq!((marked_location.line, marked_location.column), (1, 7));
        // Offsets are bytes in the file, so they count the mark.
        assert_eq!(marked_location.offset, plain_location.offset + mark);
        assert_eq!(&marked.text[marked_location.offset..][..1], "x");
        // Line 2 starts after a newline, as without the mark.
        assert_eq!(marked.line_column(marked.text.find('b').unwrap()), (2, 3));
        // An offset inside the mark is the start of line 1.
        assert_eq!(marked.line_column(0), (1, 1));
    }

    proptest::proptest! {
        #[test]
        fn reader_never_panics(text in "\\PC{0,80}") {
            let _ = parse(&text);
        }

        #[test]
        fn reader_never_panics_on_json_alphabet(text in "[{}\\[\\]:,\"'/*\\\\ntrufalse0-9.eE+-u ]{0,60}") {
            if let Err(failure) = parse(&text) {
                proptest::prop_assert!(failure.offset <= text.len());
            }
        }
    }

    /// Found by the `template` fuzz target: the span of an error at the end of the text
    /// ended one byte past it.
    #[test]
    fn syntax_error_span_empty_input() {
        let source = Source::new("t.json", String::new());
        let error = source.parse().unwrap_err();
        let location = error.location().unwrap();
        assert_eq!((location.offset, location.length), (0, 0));
        assert_eq!((location.line, location.column), (1, 1));
    }

    #[test]
    fn syntax_error_span_end_of_text() {
        let source = Source::new("t.json", "{\"a\": ".to_owned());
        let location = source.parse().unwrap_err().location().cloned().unwrap();
        assert_eq!((location.offset, location.length), (6, 0));
    }

    #[test]
    fn syntax_error_span_multibyte_character() {
        let source = Source::new("t.json", "{\"a\": é}".to_owned());
        let location = source.parse().unwrap_err().location().cloned().unwrap();
        assert_eq!((location.offset, location.length), (6, 2));
    }

    #[test]
    fn depth_limit() {
        let text = "[".repeat(1000);
        assert!(parse(&text).is_err());
    }
}
