//! Linked templates read from disk: `templateLink.relativePath` files beside the template, and
//! `templateLink.uri` addresses that [`crate::Artifacts`] maps to a local folder.

use std::path::Path;
use std::sync::Arc;

use crate::artifacts::{shown_link, LinkError};
use crate::error::{Error, ErrorKind};
use crate::eval::{node_site, Site};
use crate::resources::Decl;
use crate::run::Run;
use crate::source::{path_key, Node, Source};
use crate::value::Value;

/// A linked template read from disk.
pub(crate) struct Linked {
    pub source: Arc<Source>,
    pub root: Arc<Node>,
    /// The `templateLink.uri` its `deployment()` returns, when it is known.
    pub link: Option<String>,
    /// Whether an artifacts folder mapped the link to the file.
    pub from_artifacts: bool,
}

/// The outcome of looking for a linked template on disk.
pub(crate) enum LinkedTemplate {
    Read(Linked),
    /// The template is behind a URI no artifacts folder maps, a template spec, or an unknown
    /// value. `uri` is the URI that was looked up, when there was one.
    Unresolved {
        uri: Option<String>,
    },
}

/// The name error messages give a linked file, and the next step for each failure.
struct Origin<'a> {
    /// The link as the message names it: the relative path or the URI.
    named: String,
    not_json_help: &'a str,
    unreadable_help: &'a str,
}

impl Run<'_> {
    /// Reads the template a `templateLink` names, or reports it unresolved when it is behind a
    /// URI no artifacts folder maps, a template spec, or an unknown value. A `relativePath` in
    /// a file read from an artifacts folder is resolved as the URI it combines to.
    pub(crate) fn read_linked(
        &self,
        decl: &Decl,
        link: Option<&Value>,
    ) -> Result<LinkedTemplate, Error> {
        let relative = link
            .and_then(|link| link.get("relativePath"))
            .and_then(Value::as_str);
        if let Some(relative) = relative {
            // "If the parent was linked with a URI, the child deployment will be a combination
            // of the parent and relativePath URIs" (`ArmDeploymentTemplateLink.RelativePath`,
            // Azure Resource Manager .NET SDK reference on Microsoft Learn).
            let combined = self
                .tpl
                .template_link
                .as_deref()
                .and_then(|parent| url::Url::parse(parent).ok()?.join(relative).ok())
                .map(String::from);
            if self.tpl.from_artifacts {
                // Azure fetches the combined URI, so it is mapped like any other link and stays
                // inside the artifacts folders. A `..` that leaves every mapped prefix names an
                // address that no folder stands for. An inner-scope nested template inside the
                // file has no link of its own to combine with, so its `relativePath` is left
                // unresolved rather than read from beside the file.
                let Some(combined) = combined else {
                    return Ok(LinkedTemplate::Unresolved { uri: None });
                };
                let Some(resolved) = self.tpl.scope.artifacts.resolve(&combined) else {
                    return Ok(LinkedTemplate::Unresolved {
                        uri: Some(combined),
                    });
                };
                let (node, path) = link_node(decl, "relativePath");
                return self
                    .read_mapped(decl, &combined, resolved, &node, &path)
                    .map(LinkedTemplate::Read);
            }

            let directory = self
                .tpl
                .source
                .name
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            let file = directory.join(relative);
            let site = node_site(&self.tpl.source, &decl.node, &decl.path);
            let origin = Origin {
                named: format!("`{}`", file.display()),
                not_json_help: "point `templateLink.relativePath` at a JSON template",
                unreadable_help:
                    "check `templateLink.relativePath`; it is relative to this template's file",
            };
            let (source, root) = self.read_template_file(&file, &site, &origin)?;
            return Ok(LinkedTemplate::Read(Linked {
                source,
                root,
                link: combined,
                from_artifacts: false,
            }));
        }

        let Some(uri) = link
            .and_then(|link| link.get("uri"))
            .and_then(Value::as_str)
        else {
            return Ok(LinkedTemplate::Unresolved { uri: None });
        };
        let Some(resolved) = self.tpl.scope.artifacts.resolve(uri) else {
            return Ok(LinkedTemplate::Unresolved {
                uri: Some(uri.to_owned()),
            });
        };
        let (node, path) = link_node(decl, "uri");
        self.read_mapped(decl, uri, resolved, &node, &path)
            .map(LinkedTemplate::Read)
    }

    /// Reads the file that an artifacts folder maps the link `uri` to. Errors point at `node`,
    /// the link in the source, whose JSON path is `path`.
    fn read_mapped(
        &self,
        decl: &Decl,
        uri: &str,
        resolved: Result<std::path::PathBuf, LinkError>,
        node: &Node,
        path: &str,
    ) -> Result<Linked, Error> {
        let site = node_site(&self.tpl.source, node, path);
        let file =
            resolved.map_err(|error| site.error(ErrorKind::Template, error.message, error.help))?;
        let shown = shown_link(uri);
        let origin = Origin {
            named: format!("`{}` (mapped from `{shown}`)", file.display()),
            not_json_help: "map the URI to a folder that holds the JSON template",
            unreadable_help: "check that the file is a readable template",
        };
        let (source, root) = self.read_template_file(&file, &site, &origin)?;
        tracing::debug!(
            deployment = %decl.name,
            uri = %shown,
            file = %file.display(),
            "linked template read from an artifacts folder"
        );
        Ok(Linked {
            source,
            root,
            link: Some(uri.to_owned()),
            from_artifacts: true,
        })
    }

    /// Reads and parses one linked template file, and records its duplicate keys.
    fn read_template_file(
        &self,
        file: &Path,
        site: &Site<'_>,
        origin: &Origin<'_>,
    ) -> Result<(Arc<Source>, Arc<Node>), Error> {
        let is_template = file
            .extension()
            .and_then(|extension| extension.to_str())
            .is_some_and(|extension| {
                extension.eq_ignore_ascii_case("json") || extension.eq_ignore_ascii_case("jsonc")
            });
        if !is_template {
            return Err(site.error(
                ErrorKind::Template,
                format!(
                    "linked template {} is not a `.json` or `.jsonc` file",
                    origin.named
                ),
                origin.not_json_help.to_owned(),
            ));
        }
        let source = Source::read(file).map_err(|error| {
            site.error(
                ErrorKind::Template,
                format!("cannot read the linked template {}: {error}", origin.named),
                origin.unreadable_help.to_owned(),
            )
        })?;
        let source = Arc::new(source);
        let root = source.parse()?;
        self.engine.note_duplicate_keys(&source, &root);
        crate::placement::check_nondeterministic_calls(&source, &root)?;
        Ok((source, root))
    }
}

/// Returns the `templateLink.<key>` node of a deployment and its JSON path, or the deepest
/// ancestor written in the source when the link is built by an expression.
fn link_node(decl: &Decl, key: &str) -> (Arc<Node>, String) {
    let mut node = Arc::clone(&decl.node);
    let mut path = decl.path.clone();
    for key in ["properties", "templateLink", key] {
        let Some(member) = node.member(key) else {
            break;
        };
        path = path_key(&path, &member.key.text);
        let next = Arc::clone(&member.value);
        node = next;
    }
    (node, path)
}
