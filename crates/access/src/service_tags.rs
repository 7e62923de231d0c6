//! The Azure service-tag table: tag name to IP prefixes.
//!
//! Microsoft publishes the table weekly as JSON ("Azure IP Ranges and Service Tags",
//! <https://www.microsoft.com/download/details.aspx?id=56519>), with one entry per tag under
//! `values`, each carrying `properties.addressPrefixes`. A service-tag access restriction
//! matches a source address inside any prefix of any of its tags
//! (<https://learn.microsoft.com/azure/app-service/app-service-ip-restrictions>).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Deserialize;

use crate::net::parse_cidr;
use crate::IpNet;

/// Service tag names (compared ignoring ASCII case) mapped to their IP prefixes.
#[derive(Clone, Default)]
pub struct ServiceTagTable {
    /// Keyed by the lower-case tag name.
    tags: HashMap<String, Vec<IpNet>>,
    /// The lower-case tag name mapped to the name as the file spells it, in name order.
    names: BTreeMap<String, String>,
}

/// A service-tag file that could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error, miette::Diagnostic)]
pub enum ServiceTagError {
    /// The bytes are not JSON of the published shape.
    #[error("service-tag file is not valid: {message} at line {line}, column {column}")]
    #[diagnostic(
        code(access::service_tag_json),
        help("pass the unmodified `ServiceTags_Public_<date>.json` file that Microsoft publishes")
    )]
    Json {
        message: String,
        line: usize,
        column: usize,
    },

    /// An address prefix that is not CIDR.
    #[error("service tag `{tag}` has prefix `{prefix}`, which is not a CIDR range")]
    #[diagnostic(
        code(access::service_tag_prefix),
        help("download the file again; published prefixes are always CIDR")
    )]
    InvalidPrefix { tag: String, prefix: String },
}

impl ServiceTagTable {
    /// Reads the JSON file Microsoft publishes (`ServiceTags_Public_<date>.json`).
    ///
    /// Prefixes with host bits set are kept as the network that contains them.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ServiceTagError> {
        // A copy saved by Windows PowerShell 5.1 (`Out-File -Encoding UTF8`) or by some
        // editors starts with a UTF-8 byte order mark, which serde_json rejects.
        let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
        let file: TagFile = serde_json::from_slice(bytes).map_err(|error| {
            // serde_json ends its message with the position, which the variant prints itself.
            let text = error.to_string();
            let position = format!(" at line {} column {}", error.line(), error.column());
            ServiceTagError::Json {
                message: text.strip_suffix(&position).unwrap_or(&text).to_owned(),
                line: error.line(),
                column: error.column(),
            }
        })?;

        let mut table = ServiceTagTable::default();
        for value in file.values {
            let mut prefixes = Vec::with_capacity(value.properties.address_prefixes.len());
            for prefix in &value.properties.address_prefixes {
                let parsed =
                    parse_cidr(prefix.trim()).map_err(|_| ServiceTagError::InvalidPrefix {
                        tag: value.name.clone(),
                        prefix: prefix.clone(),
                    })?;
                prefixes.push(parsed.net);
            }
            table.insert(&value.name, prefixes.clone());

            // `id` equals `name` in every published file seen so far; keep both if not.
            if let Some(id) = value.id.filter(|id| !id.eq_ignore_ascii_case(&value.name)) {
                table.insert(&id, prefixes);
            }
        }
        Ok(table)
    }

    /// Builds a table from `(tag, prefixes)` pairs, for fixtures and tests. A tag given twice
    /// gets the prefixes of both entries.
    pub fn from_prefixes<S: AsRef<str>>(
        entries: impl IntoIterator<Item = (S, Vec<IpNet>)>,
    ) -> Self {
        let mut table = ServiceTagTable::default();
        for (tag, prefixes) in entries {
            table.insert(tag.as_ref(), prefixes);
        }
        table
    }

    /// The prefixes of `tag`, compared ignoring ASCII case, or `None` for an unknown tag.
    pub fn prefixes(&self, tag: &str) -> Option<&[IpNet]> {
        self.tags.get(&tag.to_ascii_lowercase()).map(Vec::as_slice)
    }

    /// Returns up to `max` tag names, as the file spells them, that contain `tag` or that
    /// `tag` contains, ignoring ASCII case: the names a user who wrote `tag` likely meant.
    pub fn similar_names(&self, tag: &str, max: usize) -> Vec<&str> {
        let wanted = tag.to_ascii_lowercase();
        if wanted.is_empty() {
            return Vec::new();
        }
        self.names
            .iter()
            .filter(|(lower, _)| lower.contains(&wanted) || wanted.contains(lower.as_str()))
            .map(|(_, name)| name.as_str())
            .take(max)
            .collect()
    }

    /// Number of tags in the table.
    pub fn len(&self) -> usize {
        self.tags.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    fn insert(&mut self, tag: &str, prefixes: Vec<IpNet>) {
        self.names
            .entry(tag.to_ascii_lowercase())
            .or_insert_with(|| tag.to_owned());
        self.tags
            .entry(tag.to_ascii_lowercase())
            .or_default()
            .extend(prefixes);
    }
}

impl fmt::Debug for ServiceTagTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefixes: usize = self.tags.values().map(Vec::len).sum();
        f.debug_struct("ServiceTagTable")
            .field("tags", &self.tags.len())
            .field("prefixes", &prefixes)
            .finish()
    }
}

#[derive(Deserialize)]
struct TagFile {
    values: Vec<TagValue>,
}

#[derive(Deserialize)]
struct TagValue {
    name: String,
    #[serde(default)]
    id: Option<String>,
    properties: TagProperties,
}

#[derive(Deserialize)]
struct TagProperties {
    #[serde(rename = "addressPrefixes", default)]
    address_prefixes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"{
        "changeNumber": 1,
        "cloud": "Public",
        "values": [
            { "name": "AzureFrontDoor.Backend", "id": "AzureFrontDoor.Backend",
              "properties": { "addressPrefixes": ["147.243.0.0/16", "2a01:111:2050::/44"] } },
            { "name": "ActionGroup", "id": "ActionGroup",
              "properties": { "addressPrefixes": ["4.145.74.53/30"] } }
        ]
    }"#;

    #[test]
    fn from_json_small() {
        let table = ServiceTagTable::from_json(SMALL.as_bytes()).unwrap();
        assert_eq!(table.len(), 2);
        assert_eq!(
            table.prefixes("AzureFrontDoor.Backend").map(<[IpNet]>::len),
            Some(2)
        );
    }

    #[test]
    fn from_json_skips_byte_order_mark() {
        let marked = format!("\u{feff}{SMALL}");
        let table = ServiceTagTable::from_json(marked.as_bytes()).unwrap();
        assert_eq!(table.len(), 2);

        // A position after the mark is the one an editor shows.
        let error = ServiceTagTable::from_json("\u{feff}{\"values\": 1}".as_bytes()).unwrap_err();
        assert!(
            matches!(
                error,
                ServiceTagError::Json {
                    line: 1,
                    column: 12,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn prefixes_ignore_case() {
        let table = ServiceTagTable::from_json(SMALL.as_bytes()).unwrap();
        assert!(table.prefixes("azurefrontdoor.backend").is_some());
        assert!(table.prefixes("AzureCloud").is_none());
    }

    #[test]
    fn invalid_json_names_position_once() {
        let error = ServiceTagTable::from_json(b"{\"values\": [\n  {\"name\": 1}\n]}")
            .expect_err("invalid");
        let text = error.to_string();
        assert_eq!(text.matches("line 2").count(), 1, "{text}");
        assert!(text.ends_with("at line 2, column 12"), "{text}");
    }

    #[test]
    fn similar_names_keep_spelling() {
        let table = ServiceTagTable::from_json(SMALL.as_bytes()).unwrap();
        assert_eq!(
            table.similar_names("frontdoor", 5),
            vec!["AzureFrontDoor.Backend"]
        );
        assert_eq!(
            table.similar_names("actiongroup.westeurope", 5),
            vec!["ActionGroup"]
        );
        assert!(table.similar_names("Nope", 5).is_empty());
    }

    #[test]
    fn from_json_clears_host_bits() {
        let table = ServiceTagTable::from_json(SMALL.as_bytes()).unwrap();
        let prefixes = table.prefixes("ActionGroup").unwrap();
        assert_eq!(prefixes[0].to_string(), "4.145.74.52/30");
    }

    #[test]
    fn from_json_rejects_bad_prefix() {
        let text = r#"{"values":[{"name":"X","properties":{"addressPrefixes":["nope"]}}]}"#;
        assert_eq!(
            ServiceTagTable::from_json(text.as_bytes()).unwrap_err(),
            ServiceTagError::InvalidPrefix {
                tag: "X".into(),
                prefix: "nope".into()
            }
        );
    }

    #[test]
    fn from_json_rejects_other_json() {
        let error = ServiceTagTable::from_json(b"{\"value\": []}").unwrap_err();
        assert!(
            matches!(error, ServiceTagError::Json { line: 1, .. }),
            "{error}"
        );
    }
}
