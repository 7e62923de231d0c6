//! Local folders that stand in for the addresses linked templates are fetched from.
//!
//! Azure fetches a `templateLink.uri` over HTTP or HTTPS when it deploys. subnetlock reads no
//! network, so the user maps URI prefixes to local folders, and a linked template whose URI
//! starts with a mapped prefix is read from the folder like a `templateLink.relativePath` file.
//! A URI that no prefix matches stays unresolved.

use std::path::{Component, Path, PathBuf};

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use url::Url;

/// The `templateLink.uri` folder of a top-level template whose own location is mapped to a
/// folder. The `.invalid` top-level domain is reserved and never resolves (RFC 6761, section
/// 6.4), so a value built from this address reaches no host if it leaves subnetlock.
pub const LOCAL_ARTIFACTS_BASE: &str = "https://artifacts.subnetlock.invalid/";

/// Characters of a file name that stay as they are in a URI (RFC 3986 unreserved characters).
/// The others are percent-encoded.
const FILE_NAME: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// URI prefixes mapped to local folders, and whether the top-level template's own location is
/// one of them.
#[derive(Clone, Debug, Default)]
pub struct Artifacts {
    mappings: Vec<Mapping>,
    own_location: Option<PathBuf>,
}

#[derive(Clone, Debug)]
struct Mapping {
    /// The folder URI after parsing, with a path that ends in `/`.
    prefix: Url,
    /// The path of `prefix` after [`normalize_path`].
    path: String,
    /// The folder as given, for messages.
    directory: PathBuf,
    /// The folder with symbolic links resolved, for the containment check.
    canonical: PathBuf,
}

/// A URI prefix and the folder it is mapped to, as [`Artifacts::map`] stored them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ArtifactPrefix {
    /// The folder URI after parsing, with a path that ends in `/`, and its credentials shown
    /// as [`shown_link`] shows them.
    pub uri: String,
    /// The folder as given.
    pub directory: PathBuf,
}

/// An invalid mapping.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactsError {
    #[error("artifacts URI `{uri}` is not an absolute `http` or `https` URI")]
    InvalidUri { uri: String },
    #[error("artifacts URI `{uri}` has a query or a fragment")]
    QueryInPrefix { uri: String },
    #[error("artifacts folder `{}` is not a readable directory: {source}", directory.display())]
    NotADirectory {
        directory: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "two folders stand for the template's own location: `{}` and `{}`",
        first.display(),
        second.display()
    )]
    OwnLocationTwice { first: PathBuf, second: PathBuf },
}

impl ArtifactsError {
    /// Returns the next step for the user.
    pub fn help(&self) -> &'static str {
        match self {
            ArtifactsError::InvalidUri { .. } => {
                "write the URI of the folder that holds the linked templates, for example `https://raw.githubusercontent.com/org/repo/main/`"
            }
            ArtifactsError::QueryInPrefix { .. } => {
                "leave out the SAS token and anything after `?` or `#`; a link's query is ignored when it is matched"
            }
            ArtifactsError::NotADirectory { .. } => {
                "pass an existing folder that holds the linked templates"
            }
            ArtifactsError::OwnLocationTwice { .. } => {
                "give one folder without a URI; map other addresses as URI=DIR"
            }
        }
    }
}

/// The reason a mapped link cannot be read, with the next step for the user.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LinkError {
    pub message: String,
    pub help: String,
}

impl Artifacts {
    /// Maps linked-template URIs that start with `prefix` to files below `directory`.
    ///
    /// Scheme and host are compared ignoring case, as URIs define them (RFC 3986, sections
    /// 3.1 and 6.2.2.1). Paths are compared after the percent-encoding normalization of RFC
    /// 3986, section 6.2.2, which decodes unreserved characters and upper-cases the hexadecimal
    /// digits of other encodings, and otherwise as written, because "blob
    /// names are case-sensitive" in Azure Storage ("Naming and Referencing Containers, Blobs,
    /// and Metadata", Microsoft Learn). `prefix` names a folder, so `https://host/a` and
    /// `https://host/a/` both match `https://host/a/t.json` and neither matches
    /// `https://host/ab/t.json`.
    pub fn map(&mut self, prefix: &str, directory: &Path) -> Result<(), ArtifactsError> {
        let invalid = || ArtifactsError::InvalidUri {
            uri: shown_link(prefix),
        };
        let mut url = Url::parse(prefix).map_err(|_| invalid())?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(ArtifactsError::QueryInPrefix {
                uri: shown_link(prefix),
            });
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        let canonical =
            std::fs::canonicalize(directory).map_err(|source| ArtifactsError::NotADirectory {
                directory: directory.to_path_buf(),
                source,
            })?;
        if !canonical.is_dir() {
            return Err(ArtifactsError::NotADirectory {
                directory: directory.to_path_buf(),
                source: std::io::Error::other("it is a file"),
            });
        }
        self.mappings.push(Mapping {
            path: normalize_path(url.path()),
            prefix: url,
            directory: directory.to_path_buf(),
            canonical,
        });
        Ok(())
    }

    /// Makes `directory` the location of the top-level template: its
    /// `deployment().properties.templateLink.uri` becomes [`LOCAL_ARTIFACTS_BASE`] followed by
    /// the template's file name, and that base maps to `directory`.
    pub fn map_own_location(&mut self, directory: &Path) -> Result<(), ArtifactsError> {
        if let Some(first) = &self.own_location {
            return Err(ArtifactsError::OwnLocationTwice {
                first: first.clone(),
                second: directory.to_path_buf(),
            });
        }
        self.map(LOCAL_ARTIFACTS_BASE, directory)?;
        self.own_location = Some(directory.to_path_buf());
        Ok(())
    }

    /// Returns whether no folder is mapped.
    pub fn is_empty(&self) -> bool {
        self.mappings.is_empty()
    }

    /// Returns the mapped prefixes in the order they were added.
    pub fn prefixes(&self) -> Vec<ArtifactPrefix> {
        self.mappings
            .iter()
            .map(|mapping| ArtifactPrefix {
                uri: shown_link(mapping.prefix.as_str()),
                directory: mapping.directory.clone(),
            })
            .collect()
    }

    /// Returns the `templateLink.uri` of the top-level template named `file_name`, when a
    /// folder stands for its location.
    pub(crate) fn own_link(&self, file_name: &str) -> Option<String> {
        self.own_location.as_ref()?;
        let base = Url::parse(LOCAL_ARTIFACTS_BASE).ok()?;
        let encoded = utf8_percent_encode(file_name, FILE_NAME).to_string();
        base.join(&encoded).ok().map(String::from)
    }

    /// Returns the file a linked-template URI maps to: `None` when no prefix matches, an
    /// error when the URI matches but names no file inside the folder.
    ///
    /// The query (a SAS token) and the fragment are not part of the file name. The rest of
    /// the path is percent-decoded and must stay inside the folder, also after symbolic links
    /// are resolved.
    pub(crate) fn resolve(&self, uri: &str) -> Option<Result<PathBuf, LinkError>> {
        let link = Url::parse(uri).ok()?;
        let path = normalize_path(link.path());
        let mapping = self
            .mappings
            .iter()
            .filter(|mapping| {
                same_origin(&mapping.prefix, &link) && path.starts_with(&mapping.path)
            })
            .max_by_key(|mapping| mapping.path.len())?;
        let rest = &path[mapping.path.len()..];
        Some(mapping.file(uri, rest))
    }
}

/// Returns `uri` for messages and logs, with its query replaced by `?…`, or its fragment by
/// `#…` when it has no query, and its user name and password by `…@`. The query of a linked
/// template's URI is usually a SAS token, a secret that grants read access to the storage
/// account, and a message may end up in a CI log. A template can just as well put the token
/// after a `#` or in the user information, so those parts are hidden too.
pub fn shown_link(uri: &str) -> String {
    let Ok(mut url) = Url::parse(uri) else {
        return match uri.find(['?', '#']) {
            Some(index) => format!("{}{}…", &uri[..index], &uri[index..=index]),
            None => uri.to_owned(),
        };
    };
    let hidden_end = match (url.query(), url.fragment()) {
        (Some(_), _) => "?…",
        (None, Some(_)) => "#…",
        (None, None) => "",
    };
    let has_credentials = !url.username().is_empty() || url.password().is_some();
    if hidden_end.is_empty() && !has_credentials {
        return uri.to_owned();
    }

    url.set_query(None);
    url.set_fragment(None);
    // Only URIs without a host refuse credentials, and those have none to hide.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let mut shown = url.to_string();
    if has_credentials {
        let authority = shown.find("://").map_or(0, |index| index + 3);
        shown.insert_str(authority, "…@");
    }
    shown.push_str(hidden_end);
    shown
}

/// Returns whether `prefix` and `link` have the same scheme, host and port.
///
/// The `url` parser already lowercases the scheme and the host of `http` and `https` URIs
/// (and decodes a percent-encoded host), so ignoring case here only guards against a parser
/// that stops doing so.
fn same_origin(prefix: &Url, link: &Url) -> bool {
    let same_host = match (prefix.host_str(), link.host_str()) {
        (Some(left), Some(right)) => left.eq_ignore_ascii_case(right),
        _ => false,
    };
    prefix.scheme().eq_ignore_ascii_case(link.scheme())
        && same_host
        && prefix.port_or_known_default() == link.port_or_known_default()
}

/// Applies the percent-encoding normalization of RFC 3986, section 6.2.2 to a URI path:
/// an encoded unreserved character (`ALPHA / DIGIT / "-" / "." / "_" / "~"`, section 2.3) is
/// decoded, and the hexadecimal digits of every other encoding are upper-cased (section
/// 6.2.2.1). Reserved characters stay encoded, so `%2F` never becomes a path separator here.
/// A `%` that is not followed by two hexadecimal digits is kept as written.
///
/// Decoding `%2E` can produce a `..` segment that the `url` parser did not see as one, for
/// example in `%2E%2E%2Ft.json`. [`Mapping::file`] rejects such a segment after the rest of
/// the path is decoded.
fn normalize_path(path: &str) -> String {
    let mut normalized = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(character) = rest.chars().next() {
        let encoded = rest
            .strip_prefix('%')
            .and_then(|after| after.get(..2))
            .filter(|hex| hex.bytes().all(|byte| byte.is_ascii_hexdigit()))
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match encoded {
            Some(byte) if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) => {
                normalized.push(char::from(byte));
                rest = &rest[3..];
            }
            Some(byte) => {
                normalized.push_str(&format!("%{byte:02X}"));
                rest = &rest[3..];
            }
            None => {
                normalized.push(character);
                rest = &rest[character.len_utf8()..];
            }
        }
    }
    normalized
}

impl Mapping {
    fn file(&self, uri: &str, rest: &str) -> Result<PathBuf, LinkError> {
        let uri = shown_link(uri);
        let folder = self.directory.display();
        let escapes = |detail: &str| {
            LinkError {
            message: format!(
                "linked template `{uri}` maps to a path outside the artifacts folder `{folder}`: {detail}"
            ),
            help: "linked templates are read only from inside the mapped folder; copy the template there".to_owned(),
        }
        };

        let decoded = percent_decode_str(rest)
            .decode_utf8()
            .map_err(|_| LinkError {
                message: format!(
                    "linked template `{uri}` has a path that is not UTF-8 once decoded"
                ),
                help: "write the path of the linked template in UTF-8".to_owned(),
            })?;
        if decoded.contains('\0') {
            return Err(escapes("the path has a NUL character"));
        }
        let relative = Path::new(decoded.as_ref());
        for component in relative.components() {
            match component {
                Component::Normal(_) | Component::CurDir => {}
                Component::ParentDir => return Err(escapes("the path has a `..` segment")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(escapes("the path is absolute"))
                }
            }
        }
        if relative.file_name().is_none() {
            return Err(LinkError {
                message: format!(
                    "linked template `{uri}` names the artifacts folder `{folder}` itself, not a file"
                ),
                help: "link the template file, for example `nested/site.json`".to_owned(),
            });
        }

        let file = self.directory.join(relative);
        let canonical = std::fs::canonicalize(&file).map_err(|error| LinkError {
            message: format!(
                "linked template `{uri}` maps to `{}`, which cannot be read: {error}",
                file.display()
            ),
            help: format!(
                "copy the linked template to `{}`, or map the URI's folder to the folder that holds it",
                file.display()
            ),
        })?;
        if !canonical.starts_with(&self.canonical) {
            return Err(escapes(&format!(
                "`{}` resolves to `{}`",
                file.display(),
                canonical.display()
            )));
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Creates a folder with `t.json` and `nested/x.json`.
    fn folder() -> tempfile::TempDir {
        let directory = tempfile::tempdir().unwrap();
        std::fs::create_dir(directory.path().join("nested")).unwrap();
        std::fs::write(directory.path().join("t.json"), "{}").unwrap();
        std::fs::write(directory.path().join("nested/x.json"), "{}").unwrap();
        directory
    }

    fn mapped(prefix: &str, directory: &Path) -> Artifacts {
        let mut artifacts = Artifacts::default();
        artifacts.map(prefix, directory).unwrap();
        artifacts
    }

    #[test]
    fn prefix_matches_below_folder() {
        let directory = folder();
        let artifacts = mapped("https://Example.COM/repo/main", directory.path());
        let file = artifacts
            .resolve("HTTPS://example.com/repo/main/nested/x.json")
            .unwrap()
            .unwrap();
        assert_eq!(file, directory.path().join("nested/x.json"));
        assert!(artifacts
            .resolve("https://example.com/repo/mainline/t.json")
            .is_none());
        assert!(artifacts
            .resolve("https://example.com/Repo/main/t.json")
            .is_none());
        assert!(artifacts
            .resolve("http://example.com/repo/main/t.json")
            .is_none());
        assert!(artifacts
            .resolve("https://example.com:8443/repo/main/t.json")
            .is_none());
        assert!(artifacts.resolve("not a uri").is_none());
    }

    #[test]
    fn longest_prefix_wins() {
        let outer = folder();
        let inner = folder();
        std::fs::write(inner.path().join("only-inner.json"), "{}").unwrap();
        let mut artifacts = mapped("https://example.com/a/", outer.path());
        artifacts
            .map("https://example.com/a/b/", inner.path())
            .unwrap();
        let file = artifacts
            .resolve("https://example.com/a/b/only-inner.json")
            .unwrap()
            .unwrap();
        assert_eq!(file, inner.path().join("only-inner.json"));
    }

    #[test]
    fn query_and_fragment_are_stripped() {
        let directory = folder();
        let artifacts = mapped("https://example.com/", directory.path());
        let file = artifacts
            .resolve("https://example.com/t.json?sv=2020-08-04&sig=abc%3D#part")
            .unwrap()
            .unwrap();
        assert_eq!(file, directory.path().join("t.json"));
    }

    #[test]
    fn path_is_percent_decoded() {
        let directory = folder();
        std::fs::write(directory.path().join("my site.json"), "{}").unwrap();
        let artifacts = mapped("https://example.com/", directory.path());
        let file = artifacts
            .resolve("https://example.com/my%20site.json")
            .unwrap()
            .unwrap();
        assert_eq!(file, directory.path().join("my site.json"));
    }

    /// Asserts that resolving each of `uris` fails because it leaves the mapped folder.
    fn assert_outside(artifacts: &Artifacts, uris: &[&str]) {
        for uri in uris {
            let error = artifacts.resolve(uri).unwrap().unwrap_err();
            assert!(
                error.message.contains("outside the artifacts folder"),
                "{uri}: {}",
                error.message
            );
        }
    }

    #[test]
    fn escape_is_rejected() {
        let directory = folder();
        let artifacts = mapped("https://example.com/a/", directory.path());
        assert_outside(
            &artifacts,
            &[
                "https://example.com/a/..%2F..%2Fetc%2Fpasswd",
                "https://example.com/a/%2Fetc%2Fpasswd",
                "https://example.com/a/nested%2F..%2F..%2Ft.json",
            ],
        );
        // A `..` the URI parser resolves leaves the folder's prefix, so it matches nothing.
        assert!(artifacts
            .resolve("https://example.com/a/../t.json")
            .is_none());
    }

    #[test]
    fn percent_encoding_is_normalized() {
        let directory = folder();
        // (prefix, link, whether the link is below the prefix)
        let cases = [
            (
                "https://example.com/a%7Eb/",
                "https://example.com/a~b/t.json",
                true,
            ),
            (
                "https://example.com/a~b/",
                "https://example.com/a%7eb/t.json",
                true,
            ),
            (
                "https://example.com/%41-%2e_/",
                "https://example.com/A-._/t.json",
                true,
            ),
            (
                "https://example.com/a%2fb/",
                "https://example.com/a%2Fb/t.json",
                true,
            ),
            (
                "https://example.com/caf%c3%a9/",
                "https://example.com/caf%C3%A9/t.json",
                true,
            ),
            (
                "https://example.com/a%2Fb/",
                "https://example.com/a/b/t.json",
                false,
            ),
            (
                "https://example.com/a/b/",
                "https://example.com/a%2Fb/t.json",
                false,
            ),
            (
                "https://example.com/a%20b/",
                "https://example.com/a+b/t.json",
                false,
            ),
            (
                "https://example.com/a%7Eb/",
                "https://example.com/a%257Eb/t.json",
                false,
            ),
        ];
        for (prefix, link, below) in cases {
            let artifacts = mapped(prefix, directory.path());
            let resolved = artifacts.resolve(link);
            if below {
                let file = resolved.unwrap_or_else(|| panic!("{link} is not below {prefix}"));
                assert_eq!(file.unwrap(), directory.path().join("t.json"), "{link}");
            } else {
                assert!(resolved.is_none(), "{link} is below {prefix}");
            }
        }
    }

    #[test]
    fn normalization_keeps_reserved_encoded() {
        assert_eq!(normalize_path("/a%7eb/%2f/%3A"), "/a~b/%2F/%3A");
        assert_eq!(normalize_path("/%2e%2E%2F"), "/..%2F");
        assert_eq!(normalize_path("/%c3%A9/%25"), "/%C3%A9/%25");
        assert_eq!(normalize_path("/%zz/%4/%+1/%"), "/%zz/%4/%+1/%");
        assert_eq!(normalize_path("/é/%41"), "/é/A");
    }

    #[test]
    fn url_parser_normalizes_scheme_and_host() {
        let url = Url::parse("HTTPS://Ex%41mple.COM:443/A%7e/").unwrap();
        assert_eq!(url.scheme(), "https");
        assert_eq!(url.host_str(), Some("example.com"));
        assert_eq!(url.port(), None);
        // The path is left to `normalize_path`.
        assert_eq!(url.path(), "/A%7e/");
    }

    #[test]
    fn encoded_dots_cannot_escape() {
        let outer = folder();
        std::fs::write(outer.path().join("secret.json"), "{}").unwrap();
        let inner = outer.path().join("nested");
        let artifacts = mapped("https://example.com/a/", &inner);

        assert_outside(
            &artifacts,
            &[
                "https://example.com/a/%2E%2E%2Fsecret.json",
                "https://example.com/a/%2e%2e%2fsecret.json",
                "https://example.com/a/.%2E%2Fsecret.json",
                "https://example.com/a/x.json%2F%2E%2E%2F%2E%2E%2Fsecret.json",
            ],
        );

        // A backslash is a separator on Windows and part of the file name elsewhere.
        assert!(artifacts
            .resolve("https://example.com/a/%2E%2E%5Csecret.json")
            .unwrap()
            .is_err());

        // The parser resolves encoded dot segments, so these leave the prefix and match nothing.
        for uri in [
            "https://example.com/a/%2E%2E/secret.json",
            "https://example.com/a/%2e./secret.json",
        ] {
            assert!(artifacts.resolve(uri).is_none(), "{uri}");
        }

        // A double encoding is decoded once: the file name is `%2E%2E%2Fsecret.json`.
        let error = artifacts
            .resolve("https://example.com/a/%252E%252E%252Fsecret.json")
            .unwrap()
            .unwrap_err();
        assert!(
            error.message.contains("cannot be read"),
            "{}",
            error.message
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlink_out_of_folder_is_rejected() {
        let directory = folder();
        let elsewhere = folder();
        std::os::unix::fs::symlink(
            elsewhere.path().join("t.json"),
            directory.path().join("link.json"),
        )
        .unwrap();
        let artifacts = mapped("https://example.com/", directory.path());
        let error = artifacts
            .resolve("https://example.com/link.json")
            .unwrap()
            .unwrap_err();
        assert!(
            error.message.contains("outside the artifacts folder"),
            "{}",
            error.message
        );
    }

    #[test]
    fn missing_file_names_uri_and_file() {
        let directory = folder();
        let artifacts = mapped("https://example.com/", directory.path());
        let error = artifacts
            .resolve("https://example.com/nested/missing.json?sig=x")
            .unwrap()
            .unwrap_err();
        let expected = directory.path().join("nested/missing.json");
        assert!(
            error.message.starts_with(&format!(
                "linked template `https://example.com/nested/missing.json?…` maps to `{}`, which cannot be read",
                expected.display()
            )),
            "{}",
            error.message
        );
        assert!(error.help.contains(&expected.display().to_string()));
    }

    #[test]
    fn errors_hide_sas_token() {
        let directory = folder();
        let artifacts = mapped("https://example.com/", directory.path());
        for uri in [
            "https://example.com/missing.json?sv=2022-11-02&sig=SECRET",
            "https://example.com/..%2Ft.json?sig=SECRET",
        ] {
            let error = artifacts.resolve(uri).unwrap().unwrap_err();
            assert!(!error.message.contains("SECRET"), "{}", error.message);
            assert!(!error.help.contains("SECRET"), "{}", error.help);
        }
        assert_eq!(
            shown_link("https://example.com/t.json?sig=SECRET#part"),
            "https://example.com/t.json?…"
        );
        assert_eq!(
            shown_link("https://example.com/t.json"),
            "https://example.com/t.json"
        );
    }

    #[test]
    fn shown_link_hides_fragment_and_credentials() {
        // (link, as shown)
        let cases = [
            (
                "https://example.com/t.json#sv=2022-11-02&sig=SECRET",
                "https://example.com/t.json#…",
            ),
            (
                "https://example.com/t.json#?sig=SECRET",
                "https://example.com/t.json#…",
            ),
            (
                "https://user:SECRET@example.com/a/t.json",
                "https://…@example.com/a/t.json",
            ),
            (
                "https://SECRET@example.com/t.json?sig=SECRET",
                "https://…@example.com/t.json?…",
            ),
            ("nested/t.json#sig=SECRET", "nested/t.json#…"),
            ("nested/t.json?sig=SECRET#part", "nested/t.json?…"),
            (
                "https://Example.com/a%7e/t.json",
                "https://Example.com/a%7e/t.json",
            ),
        ];
        for (link, shown) in cases {
            assert_eq!(shown_link(link), shown, "{link}");
        }
    }

    #[test]
    fn folder_itself_is_not_a_file() {
        let directory = folder();
        let artifacts = mapped("https://example.com/a", directory.path());
        let error = artifacts
            .resolve("https://example.com/a/")
            .unwrap()
            .unwrap_err();
        assert!(
            error.message.contains("itself, not a file"),
            "{}",
            error.message
        );
    }

    #[test]
    fn invalid_prefixes_are_rejected() {
        let directory = folder();
        let mut artifacts = Artifacts::default();
        for prefix in ["example.com/a", "file:///tmp/", "ftp://example.com/"] {
            assert!(matches!(
                artifacts.map(prefix, directory.path()),
                Err(ArtifactsError::InvalidUri { .. })
            ));
        }
        assert!(matches!(
            artifacts.map("https://example.com/?sv=1", directory.path()),
            Err(ArtifactsError::QueryInPrefix { .. })
        ));
        assert!(matches!(
            artifacts.map("https://example.com/", &directory.path().join("t.json")),
            Err(ArtifactsError::NotADirectory { .. })
        ));
        assert!(matches!(
            artifacts.map("https://example.com/", &directory.path().join("missing")),
            Err(ArtifactsError::NotADirectory { .. })
        ));
    }

    #[test]
    fn own_location_is_under_invalid_base() {
        let directory = folder();
        let mut artifacts = Artifacts::default();
        assert_eq!(artifacts.own_link("main.json"), None);
        artifacts.map_own_location(directory.path()).unwrap();
        assert_eq!(
            artifacts.own_link("main template.json").unwrap(),
            "https://artifacts.subnetlock.invalid/main%20template.json"
        );
        let file = artifacts
            .resolve("https://artifacts.subnetlock.invalid/t.json")
            .unwrap()
            .unwrap();
        assert_eq!(file, directory.path().join("t.json"));
        assert!(matches!(
            artifacts.map_own_location(directory.path()),
            Err(ArtifactsError::OwnLocationTwice { .. })
        ));
    }
}
