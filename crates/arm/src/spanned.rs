//! JSON documents other than templates, read with the position of every value, so that an
//! error found by another reader (such as the Functions host's reader of function.json) can
//! point at the value at fault.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::Error;
use crate::source::{path_index, path_key, Node, NodeKind, Source};
use crate::SourceLocation;

/// One step of a path into a JSON document: an object key or an array index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonStep<'a> {
    /// An object member, matched with case, as `serde_json` and the Functions host match it.
    Key(&'a str),
    Index(usize),
}

/// A JSON document (comments allowed) with the byte span of each value.
#[derive(Debug)]
pub struct SpannedJson {
    source: Source,
    root: Arc<Node>,
}

impl SpannedJson {
    /// Reads and parses `path`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file cannot be read, [`Error::Syntax`] when it is not JSON.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let source = Source::read(path)?;
        let root = source.parse()?;
        Ok(SpannedJson { source, root })
    }

    /// Parses `text`, which `file` names in locations.
    ///
    /// # Errors
    ///
    /// [`Error::Syntax`] when the text is not JSON.
    pub fn parse(file: impl Into<PathBuf>, text: String) -> Result<Self, Error> {
        let source = Source::new(file, text);
        let root = source.parse()?;
        Ok(SpannedJson { source, root })
    }

    /// Returns the location of the value at `steps`, or `None` when the document has no value
    /// there. A key written twice resolves to its later copy, which `serde_json` keeps.
    pub fn locate(&self, steps: &[JsonStep<'_>]) -> Option<SourceLocation> {
        let mut node = &self.root;
        let mut json_path = "$".to_owned();
        for step in steps {
            node = match (*step, &node.kind) {
                (JsonStep::Key(key), NodeKind::Object(members)) => {
                    let member = members.iter().rev().find(|member| member.key.text == key)?;
                    json_path = path_key(&json_path, key);
                    &member.value
                }
                (JsonStep::Index(index), NodeKind::Array(items)) => {
                    json_path = path_index(&json_path, index);
                    items.get(index)?
                }
                _ => return None,
            };
        }

        Some(self.source.location(node.start, node.end, &json_path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FUNCTION_JSON: &str = "{\n  \"bindings\": [\n    {\"type\": \"httpTrigger\", \"authLevel\": \"nobody\"},\n    {\"type\": \"http\", \"direction\": \"out\", \"name\": \"res\"}\n  ]\n}\n";

    #[test]
    fn locate_points_at_nested_value() {
        let document = SpannedJson::parse("function.json", FUNCTION_JSON.to_owned()).unwrap();

        let location = document
            .locate(&[
                JsonStep::Key("bindings"),
                JsonStep::Index(0),
                JsonStep::Key("authLevel"),
            ])
            .unwrap();

        assert_eq!((location.line, location.column), (3, 42));
        assert_eq!(location.json_path, "$.bindings[0].authLevel");
        assert_eq!(
            &FUNCTION_JSON[location.offset..location.offset + location.length],
            "\"nobody\""
        );
    }

    #[test]
    fn locate_missing_value_is_none() {
        let document = SpannedJson::parse("function.json", FUNCTION_JSON.to_owned()).unwrap();

        assert!(document
            .locate(&[JsonStep::Key("bindings"), JsonStep::Index(2)])
            .is_none());
        // Keys match with case, as the Functions host reads them.
        assert!(document.locate(&[JsonStep::Key("Bindings")]).is_none());
        assert!(document
            .locate(&[JsonStep::Key("bindings"), JsonStep::Key("type")])
            .is_none());
    }

    #[test]
    fn locate_skips_byte_order_mark_column() {
        let text = "\u{feff}{\"route\": \"admin\"}".to_owned();
        let document = SpannedJson::parse("function.json", text).unwrap();

        let location = document.locate(&[JsonStep::Key("route")]).unwrap();

        assert_eq!((location.line, location.column), (1, 11));
    }
}
