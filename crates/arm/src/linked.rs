//! Linked templates read from disk: `templateLink.relativePath` files beside the template, and
//! `templateLink.uri` addresses that [`crate::Artifacts`] maps to a local folder.

use std::path::Path;
use std::sync::Arc;

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
}

/// How error messages name a linked file, and the next step for each failure.
struct Origin<'a> {
    /// The link as the message names it: the relative path or the URI.
    named: String,
    not_json_help: &'a str,
    unreadable_help: &'a str,
}

impl Run<'_> {
    /// Reads the template a `templateLink` names, or returns `None` when it is behind a URI no
    /// artifacts folder maps, a template spec, or an unknown value.
    pub(crate) fn read_linked(
        &self,
        decl: &Decl,
        link: Option<&Value>,
    ) -> Result<Option<Linked>, Error> {
        let relative = link
            .and_then(|link| link.get("relativePath"))
            .and_then(Value::as_str);
        if let Some(relative) = relative {
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
            // "If the parent was linked with a URI, the child deployment will be a combination
            // of the parent and relativePath URIs" (`ArmDeploymentTemplateLink.RelativePath`,
            // Azure Resource Manager .NET SDK reference on Microsoft Learn).
            let link = self
                .tpl
                .template_link
                .as_deref()
                .and_then(|parent| url::Url::parse(parent).ok()?.join(relative).ok())
                .map(String::from);
            return Ok(Some(Linked { source, root, link }));
        }

        let Some(uri) = link
            .and_then(|link| link.get("uri"))
            .and_then(Value::as_str)
        else {
            return Ok(None);
        };
        let Some(resolved) = self.tpl.scope.artifacts.resolve(uri) else {
            return Ok(None);
        };
        let (node, path) = uri_node(decl);
        let site = node_site(&self.tpl.source, &node, &path);
        let file =
            resolved.map_err(|error| site.error(ErrorKind::Template, error.message, error.help))?;
        let origin = Origin {
            named: format!("`{}` (mapped from `{uri}`)", file.display()),
            not_json_help: "map the URI to a folder that holds the JSON template",
            unreadable_help: "check that the file is a readable template",
        };
        let (source, root) = self.read_template_file(&file, &site, &origin)?;
        tracing::debug!(
            deployment = %decl.name,
            uri,
            file = %file.display(),
            "linked template read from an artifacts folder"
        );
        Ok(Some(Linked {
            source,
            root,
            link: Some(uri.to_owned()),
        }))
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

/// Returns the `templateLink.uri` node of a deployment and its JSON path, or the deepest
/// ancestor written in the source when the link is built by an expression.
fn uri_node(decl: &Decl) -> (Arc<Node>, String) {
    let mut node = Arc::clone(&decl.node);
    let mut path = decl.path.clone();
    for key in ["properties", "templateLink", "uri"] {
        let Some(member) = node.member(key) else {
            break;
        };
        path = path_key(&path, &member.key.text);
        let next = Arc::clone(&member.value);
        node = next;
    }
    (node, path)
}
