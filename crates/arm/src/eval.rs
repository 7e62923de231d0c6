//! Evaluation entry points, the public result types, and templates with their parameters
//! and variables, all resolved before the resources.
//!
//! Resources are declared in `resources.rs` and evaluated in `run.rs`. Expressions are
//! evaluated in `call.rs`.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use indexmap::IndexMap;

use crate::artifacts::ArtifactPrefix;
use crate::error::{Error, ErrorKind};
use crate::params::{key_vault_unknown, Parameters, Supplied};
use crate::provider::Provider;
use crate::source::{path_index, path_key, Member, Node, NodeKind, Source};
use crate::value::{Object, Unknown, Value};
use crate::{Scope, SourceLocation};

/// Inputs of an evaluation.
#[derive(Clone, Debug, Default)]
pub struct EvalOptions {
    pub scope: Scope,
    pub parameters: Parameters,
}

/// One resource the deployment declares, after evaluation.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Resource {
    /// Full ARM id, e.g. `/subscriptions/../resourceGroups/../providers/Microsoft.Web/sites/a/config/web`.
    pub id: String,
    /// Full type with child types composed, e.g. `Microsoft.Web/sites/config`.
    pub resource_type: String,
    /// Full name, e.g. `a/web`.
    pub name: String,
    pub api_version: String,
    /// The key of the resource in a languageVersion 2.0 template.
    pub symbolic_name: Option<String>,
    /// The evaluated resource object without `resources`, `copy`, `condition` and `dependsOn`.
    pub body: Value,
    /// Full ids of the resources this one depends on, explicitly or through `reference()`.
    pub depends_on: Vec<String>,
    /// Location of the resource object in the source.
    pub declared_at: SourceLocation,
    /// `existing: true` in a languageVersion 2.0 template: a reference, never deployed.
    pub existing: bool,
    /// Names of the nested deployments the resource came through; empty at the top level.
    pub deployment_path: Vec<String>,
}

impl Resource {
    /// Returns the evaluated `properties` object, when present.
    pub fn properties(&self) -> Option<&Object> {
        self.body.get("properties").and_then(Value::as_object)
    }
}

/// A nested deployment whose template could not be read offline.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct UnresolvedTemplate {
    /// Name of the `Microsoft.Resources/deployments` resource.
    pub deployment: String,
    /// The `templateLink` value (`uri`, `id` or `relativePath`), possibly unknown.
    pub link: Value,
    /// The URI that was looked up in the artifacts folders and matched no prefix, with its
    /// query (usually a SAS token) and credentials hidden as [`crate::shown_link`] hides them.
    /// It is `None` when the link is a template spec, an unknown value, or a `relativePath`
    /// with no URI to combine with.
    pub looked_up_uri: Option<String>,
    /// The URI prefixes mapped to artifacts folders, none of which covers `looked_up_uri`.
    /// It is empty when no folder was mapped.
    pub artifact_prefixes: Vec<ArtifactPrefix>,
    pub declared_at: SourceLocation,
}

/// An object key written twice (or in two spellings that differ only in case) in one object
/// of a template. ARM accepts such a template, and observed deployments used the last copy
/// (azure-quickstart-templates#5847), but no documentation says so. The evaluator also reads
/// the last copy.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DuplicateKey {
    /// The key as written the second time.
    pub key: String,
    /// The place of the earlier copy.
    pub first: SourceLocation,
    /// The place of the later copy, the one that is read.
    pub duplicate: SourceLocation,
}

/// The result of evaluating a template.
#[derive(Clone, Debug)]
pub struct Deployment {
    /// Resources in an order that respects `dependsOn` and `reference()`/`list*()`
    /// dependencies; resources whose `condition` is false are left out. A nested
    /// deployment's resources follow the deployment resource.
    pub resources: Vec<Resource>,
    /// Outputs of the top-level template.
    pub outputs: IndexMap<String, Value>,
    /// Nested deployments whose template is behind a URI that no artifacts folder maps, a
    /// template spec, or an unknown value.
    pub unresolved_templates: Vec<UnresolvedTemplate>,
    /// Keys written twice in one object, in the parameters file, the template and linked
    /// templates read from disk, by file and position.
    pub duplicate_keys: Vec<DuplicateKey>,
    declarations: Declarations,
}

/// Syntax nodes of resource declarations, keyed by file and JSON path, for
/// [`Deployment::locate`].
type Declarations = HashMap<(PathBuf, String), (Arc<Source>, Arc<Node>)>;

impl Deployment {
    /// Returns the location of the value at `path` (object keys and array indices as strings)
    /// below the resource's declaration, or of the deepest ancestor written in the source.
    pub fn locate(&self, resource: &Resource, path: &[&str]) -> SourceLocation {
        let key = (
            resource.declared_at.file.clone(),
            resource.declared_at.json_path.clone(),
        );
        let Some((source, node)) = self.declarations.get(&key) else {
            return resource.declared_at.clone();
        };
        let mut current = Arc::clone(node);
        let mut json_path = resource.declared_at.json_path.clone();
        for segment in path {
            let next = match &current.kind {
                NodeKind::Object(_) => current.member(segment).map(|member| {
                    json_path = path_key(&json_path, &member.key.text);
                    Arc::clone(&member.value)
                }),
                NodeKind::Array(items) => segment
                    .parse::<usize>()
                    .ok()
                    .and_then(|index| items.get(index).map(|item| (index, item)))
                    .map(|(index, item)| {
                        json_path = path_index(&json_path, index);
                        Arc::clone(item)
                    }),
                _ => None,
            };
            match next {
                Some(node) => current = node,
                None => break,
            }
        }
        source.location(current.start, current.end, &json_path)
    }
}

/// Evaluates the template file at `path`.
pub fn evaluate_file(
    path: &Path,
    options: &EvalOptions,
    provider: &dyn Provider,
) -> Result<Deployment, Error> {
    let source = Arc::new(Source::read(path)?);
    evaluate_source(source, options, provider)
}

/// Evaluates a template given as text; `file_name` appears in locations and errors.
pub fn evaluate_str(
    file_name: &str,
    text: &str,
    options: &EvalOptions,
    provider: &dyn Provider,
) -> Result<Deployment, Error> {
    let source = Arc::new(Source::new(file_name, text.to_owned()));
    evaluate_source(source, options, provider)
}

fn evaluate_source(
    source: Arc<Source>,
    options: &EvalOptions,
    provider: &dyn Provider,
) -> Result<Deployment, Error> {
    let root = source.parse()?;
    crate::template_kind::check_deployment_template(&source, &root)?;
    let engine = Engine {
        provider,
        evaluation_depth: Cell::new(0),
        declarations: RefCell::new(HashMap::new()),
        unresolved: RefCell::new(Vec::new()),
        duplicate_keys: RefCell::new(options.parameters.duplicate_keys().to_vec()),
        scanned: RefCell::new(std::collections::HashSet::new()),
    };
    engine.note_duplicate_keys(&source, &root);
    crate::placement::check_nondeterministic_calls(&source, &root)?;
    let supplied: HashMap<String, Value> = options
        .parameters
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
        .collect();
    let level = ScopeLevel::from_schema_of(&root).unwrap_or(ScopeLevel::ResourceGroup);
    let file_name = source
        .name
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let template_link = options.scope.artifacts.own_link(&file_name);
    let template = Template::new(TemplateInit {
        source,
        root,
        path: "$".to_owned(),
        scope: options.scope.clone(),
        level,
        supplied,
        supplied_from: options.parameters.supplied(),
        outer: None,
        deployment_path: Vec::new(),
        base_copy: Vec::new(),
        template_link,
        from_artifacts: false,
    })?;
    let (resources, outputs) = template.execute(&engine, None)?;
    Ok(Deployment {
        resources,
        outputs: outputs
            .into_iter()
            .map(|(name, output)| (name, output.value))
            .collect(),
        unresolved_templates: engine.unresolved.into_inner(),
        duplicate_keys: engine.duplicate_keys.into_inner(),
        declarations: engine.declarations.into_inner(),
    })
}

/// Converts a syntax node to a value without evaluating expressions.
pub(crate) fn literal_value(node: &Node) -> Value {
    match &node.kind {
        NodeKind::Null => Value::Null,
        NodeKind::Bool(flag) => Value::Bool(*flag),
        NodeKind::Int(number) => Value::Int(*number),
        NodeKind::Float(number) => Value::Float(*number),
        NodeKind::String(literal) => Value::String(literal.text.clone()),
        NodeKind::Array(items) => {
            Value::Array(items.iter().map(|item| literal_value(item)).collect())
        }
        NodeKind::Object(members) => {
            let mut object = Object::new();
            let repeats = crate::source::may_repeat_keys(members);
            for member in members {
                let (key, value) = (member.key.text.clone(), literal_value(&member.value));
                if repeats {
                    object.insert_written(key, value);
                } else {
                    object.insert(key, value);
                }
            }
            Value::Object(object)
        }
    }
}

/// State shared by every template of one evaluation.
pub(crate) struct Engine<'p> {
    pub provider: &'p dyn Provider,
    /// Number of resources being evaluated, one inside the other, across all templates of the
    /// deployment. [`crate::run::Run::evaluate`] keeps it below
    /// [`crate::run::MAX_EVALUATION_DEPTH`].
    pub evaluation_depth: Cell<usize>,
    declarations: RefCell<Declarations>,
    unresolved: RefCell<Vec<UnresolvedTemplate>>,
    duplicate_keys: RefCell<Vec<DuplicateKey>>,
    /// Template files already scanned for duplicate keys, by canonical path.
    scanned: RefCell<std::collections::HashSet<PathBuf>>,
}

impl Engine<'_> {
    /// Records the duplicate keys of a template file, once per file however often, and under
    /// whichever relative path, it is read.
    pub fn note_duplicate_keys(&self, source: &Source, root: &Node) {
        let file = std::fs::canonicalize(&source.name).unwrap_or_else(|_| source.name.clone());
        if !self.scanned.borrow_mut().insert(file) {
            return;
        }
        crate::source::find_duplicate_keys(source, root, &mut self.duplicate_keys.borrow_mut());
    }
}

/// The deployment scope a template targets, from its `$schema` file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScopeLevel {
    ResourceGroup,
    Subscription,
    ManagementGroup,
    Tenant,
}

/// One iteration of a copy loop.
#[derive(Clone, Debug)]
pub(crate) struct CopyFrame {
    /// Lower-case loop name; `None` for an output loop.
    pub name: Option<String>,
    pub index: i64,
    /// A resource or output loop, which unnamed `copyIndex()` refers to.
    pub unnamed_target: bool,
}

#[derive(Clone, Debug)]
enum Slot {
    InProgress,
    Done(Value),
}

/// One template (top level or nested) with its parameters and variables, each evaluated once.
pub(crate) struct Template<'a> {
    pub source: Arc<Source>,
    pub root: Arc<Node>,
    pub path: String,
    pub scope: Scope,
    pub level: ScopeLevel,
    /// For an outer-scope nested template: the parent, whose parameters and variables apply.
    pub outer: Option<&'a Template<'a>>,
    supplied: HashMap<String, Value>,
    /// The origin of each value of the top-level deployment, keyed by lower-case name. Empty
    /// for a nested template, whose values are written in its parent template.
    supplied_from: HashMap<String, Supplied>,
    params: RefCell<HashMap<String, Slot>>,
    vars: RefCell<HashMap<String, Slot>>,
    /// Names being resolved, for cycle messages.
    resolving: RefCell<Vec<String>>,
    pub deployment_path: Vec<String>,
    pub language_v2: bool,
    pub deployment_value: OnceCell<Value>,
    pub base_copy: Vec<CopyFrame>,
    /// The `deployment().properties.templateLink.uri`, or `None` when it is not known offline.
    pub template_link: Option<String>,
    /// Whether the template's file was read from an artifacts folder by its link, so that its
    /// `relativePath` links are mapped by URI too.
    pub from_artifacts: bool,
}

pub(crate) struct TemplateInit<'a> {
    pub source: Arc<Source>,
    pub root: Arc<Node>,
    pub path: String,
    pub scope: Scope,
    pub level: ScopeLevel,
    pub supplied: HashMap<String, Value>,
    pub supplied_from: HashMap<String, Supplied>,
    pub outer: Option<&'a Template<'a>>,
    pub deployment_path: Vec<String>,
    pub base_copy: Vec<CopyFrame>,
    pub template_link: Option<String>,
    pub from_artifacts: bool,
}

/// Location of an expression, for errors.
#[derive(Clone, Debug)]
pub(crate) struct Site<'s> {
    pub source: &'s Source,
    pub start: usize,
    pub end: usize,
    pub path: &'s str,
    /// Byte offset in the file of the expression text after `[`, when the JSON string has no
    /// escapes (so offsets inside the expression map onto the file).
    pub expression_start: Option<usize>,
}

impl Site<'_> {
    pub fn error(&self, kind: ErrorKind, message: String, help: String) -> Error {
        self.error_at(kind, None, message, help)
    }

    /// Builds an error whose line and column are those of the string. The underline points at
    /// `offset` inside the expression when the string maps one-to-one onto the file.
    pub fn error_at(
        &self,
        kind: ErrorKind,
        offset: Option<usize>,
        message: String,
        help: String,
    ) -> Error {
        let mut location = self.source.location(self.start, self.end, self.path);
        if let (Some(offset), Some(base)) = (offset, self.expression_start) {
            location.offset = (base + offset).min(self.end.saturating_sub(1));
            location.length = 1;
        }
        Error::located(kind, message, help, self.source, location)
    }
}

pub(crate) fn node_site<'s>(source: &'s Source, node: &Node, path: &'s str) -> Site<'s> {
    Site {
        source,
        start: node.start,
        end: node.end,
        path,
        expression_start: None,
    }
}

impl<'a> Template<'a> {
    pub fn new(init: TemplateInit<'a>) -> Result<Self, Error> {
        let language_v2 = init
            .root
            .get("languageVersion")
            .and_then(|version| version.as_str())
            .is_some_and(|version| version.starts_with('2'));
        if init.root.as_object().is_none() {
            let site = node_site(&init.source, &init.root, &init.path);
            return Err(site.error(
                ErrorKind::Template,
                "a template must be a JSON object".to_owned(),
                "start the template with `{` and a `$schema` property".to_owned(),
            ));
        }
        Ok(Template {
            source: init.source,
            root: init.root,
            path: init.path,
            scope: init.scope,
            level: init.level,
            outer: init.outer,
            supplied: init.supplied,
            supplied_from: init.supplied_from,
            params: RefCell::new(HashMap::new()),
            vars: RefCell::new(HashMap::new()),
            resolving: RefCell::new(Vec::new()),
            deployment_path: init.deployment_path,
            language_v2,
            deployment_value: OnceCell::new(),
            base_copy: init.base_copy,
            template_link: init.template_link,
            from_artifacts: init.from_artifacts,
        })
    }

    fn section(&self, name: &str) -> Option<(&Member, String)> {
        self.root
            .member(name)
            .map(|member| (member, path_key(&self.path, &member.key.text)))
    }

    /// Evaluates parameters, resources and outputs; returns resources in dependency order.
    pub fn execute(
        &self,
        engine: &Engine<'_>,
        deployer: Option<crate::run::Deployer<'_>>,
    ) -> Result<(Vec<Resource>, IndexMap<String, crate::run::OutputValue>), Error> {
        if self.outer.is_none() {
            self.resolve_all_parameters(engine)?;
            self.resolve_all_variables(engine)?;
        }
        let declarations = {
            let ctx = crate::call::Ctx::new(engine, self, None);
            crate::resources::enumerate(&ctx)?
        };
        let run = crate::run::Run::new(engine, self, declarations, deployer);
        run.evaluate_all()?;
        let resources = run.ordered_resources()?;
        let outputs = run.outputs()?;
        Ok((resources, outputs))
    }

    pub fn register_declaration(&self, engine: &Engine<'_>, path: &str, node: &Arc<Node>) {
        engine.declarations.borrow_mut().insert(
            (self.source.name.clone(), path.to_owned()),
            (Arc::clone(&self.source), Arc::clone(node)),
        );
    }

    pub fn push_unresolved(&self, engine: &Engine<'_>, unresolved: UnresolvedTemplate) {
        tracing::debug!(
            deployment = %unresolved.deployment,
            uri = unresolved.looked_up_uri.as_deref().unwrap_or("(none)"),
            "nested template is not available offline; its outputs stay unknown"
        );
        engine.unresolved.borrow_mut().push(unresolved);
    }

    fn resolve_all_parameters(&self, engine: &Engine<'_>) -> Result<(), Error> {
        let Some((section, _)) = self.section("parameters") else {
            return Ok(());
        };
        let Some(members) = section.value.as_object() else {
            let site = node_site(&self.source, &section.value, &self.path);
            return Err(site.error(
                ErrorKind::Template,
                "`parameters` must be an object".to_owned(),
                "declare parameters as `\"name\": {\"type\": ...}`".to_owned(),
            ));
        };
        for member in members {
            let ctx = crate::call::Ctx::new(engine, self, None);
            let site = node_site(&self.source, &member.value, &self.path);
            self.parameter(&ctx, &member.key.text, &site)?;
        }
        let mut undeclared: Vec<&String> = self
            .supplied
            .keys()
            .filter(|name| {
                !members
                    .iter()
                    .any(|member| member.key.text.eq_ignore_ascii_case(name))
            })
            .collect();
        undeclared.sort();
        if let Some(name) = undeclared.first() {
            // ARM rejects the top-level deployment: "The template parameters '<name>' in the
            // parameters file are not valid; they are not present in the original template".
            // NOTE: values passed to nested deployments are only warned about, because the
            // evaluator's outer-scope handling passes the parent's parameters down.
            if self.deployment_path.is_empty() {
                if let Some(supplied) = self.supplied_from.get(name.as_str()) {
                    let declared: Vec<&str> = members
                        .iter()
                        .map(|member| member.key.text.as_str())
                        .collect();
                    return Err(supplied.undeclared_error(&declared));
                }
                let section_path = format!("{}.parameters", self.path);
                let site = node_site(&self.source, &section.value, &section_path);
                return Err(site.error(
                    ErrorKind::Parameter,
                    format!(
                        "parameter `{name}` is supplied but the template does not declare it"
                    ),
                    "remove it from the parameters file or the command line, or declare it in `parameters`".to_owned(),
                ));
            }
            tracing::warn!(parameter = %name, "supplied parameter is not declared by the nested template");
        }
        Ok(())
    }

    /// Returns the value of parameter `name`, resolving its default on first use.
    pub fn parameter(
        &self,
        ctx: &crate::call::Ctx<'_>,
        name: &str,
        site: &Site<'_>,
    ) -> Result<Value, Error> {
        if let Some(outer) = self.outer {
            // NOTE: in outer scope the parent's parameters apply. Bicep still emits nested
            // templates that declare their own parameters and pass them with outer scope;
            // those declared parameters resolve locally.
            if !self.declares_parameter(name) {
                let outer_ctx = crate::call::Ctx::new(ctx.engine, outer, None);
                return outer.parameter(&outer_ctx, name, site);
            }
        }
        let key = name.to_ascii_lowercase();
        match self.params.borrow().get(&key) {
            Some(Slot::Done(value)) => return Ok(value.clone()),
            Some(Slot::InProgress) => {
                return Err(self.cycle_error(site, "parameter", name));
            }
            None => {}
        }

        let declaration = self.section("parameters").and_then(|(section, path)| {
            section
                .value
                .member(name)
                .map(|member| (Arc::clone(&member.value), path_key(&path, &member.key.text)))
        });
        let Some((declaration, declaration_path)) = declaration else {
            return Err(site.error(
                ErrorKind::Function,
                format!("parameter `{name}` is not declared"),
                "declare it in the `parameters` section or fix the name".to_owned(),
            ));
        };

        self.params
            .borrow_mut()
            .insert(key.clone(), Slot::InProgress);
        self.resolving.borrow_mut().push(name.to_owned());
        let result = self.resolve_parameter(ctx, name, &declaration, &declaration_path);
        self.resolving.borrow_mut().pop();
        match result {
            Ok(value) => {
                self.params
                    .borrow_mut()
                    .insert(key, Slot::Done(value.clone()));
                Ok(value)
            }
            Err(error) => {
                self.params.borrow_mut().remove(&key);
                Err(error)
            }
        }
    }

    fn declares_parameter(&self, name: &str) -> bool {
        self.section("parameters")
            .is_some_and(|(section, _)| section.value.member(name).is_some())
    }

    fn resolve_parameter(
        &self,
        ctx: &crate::call::Ctx<'_>,
        name: &str,
        declaration: &Arc<Node>,
        path: &str,
    ) -> Result<Value, Error> {
        let site = node_site(&self.source, declaration, path);
        let definition = self.parameter_definition(declaration);
        // A null value counts as not supplied, so the default applies; Bicep modules pass
        // `null` for optional parameters they leave unset.
        let supplied = self
            .supplied
            .get(&name.to_ascii_lowercase())
            .filter(|value| !matches!(value, Value::Null));
        let value = if let Some(value) = supplied {
            value.clone()
        } else if let Some(default) = declaration.get("defaultValue") {
            let default_path = path_key(path, "defaultValue");
            let default_ctx = ctx.for_declarations(crate::call::PARAMETER_DEFAULTS);
            default_ctx.eval_node(default, &default_path)?
        } else if is_true(declaration.get("nullable")) || is_true(definition.get("nullable")) {
            Value::Null
        } else {
            // A nested deployment gets its values from its `parameters`, the top-level template
            // from the parameters file or the command line.
            let help = if self.deployment_path.is_empty() {
                format!(
                    "supply `{name}` in the parameters file or on the command line with `-p {name}=VALUE`, or give it a `defaultValue`"
                )
            } else {
                format!(
                    "pass `{name}` in the nested deployment's `parameters`, or give it a `defaultValue`"
                )
            };
            return Err(site.error(
                ErrorKind::Parameter,
                format!("missing value for parameter `{name}`"),
                help,
            ));
        };
        // NOTE: a known `securestring`/`secureObject` value is returned as a plain value; only
        // Key Vault references arrive as secret unknowns.
        // An invalid supplied value is the user's mistake where they wrote it, not in the
        // declaration; a default value is the template's own.
        let supplied_from =
            supplied.and_then(|_| self.supplied_from.get(&name.to_ascii_lowercase()));
        crate::params::validate_parameter(name, &value, declaration, definition).map_err(
            |(message, help)| match supplied_from {
                Some(supplied) => supplied.value_error(message, help),
                None => site.error(ErrorKind::Parameter, message, help),
            },
        )?;
        Ok(value)
    }

    /// Follows `$ref: "#/definitions/x"` (languageVersion 2.0) to the type definition.
    fn parameter_definition<'n>(&'n self, declaration: &'n Arc<Node>) -> &'n Arc<Node> {
        let reference = declaration
            .get("$ref")
            .and_then(|reference| reference.as_str());
        let target = reference
            .and_then(|reference| reference.strip_prefix("#/definitions/"))
            .and_then(|name| self.root.get("definitions")?.get(name));
        target.unwrap_or(declaration)
    }

    /// Returns the value of variable `name`, evaluating it on first use.
    pub fn variable(
        &self,
        ctx: &crate::call::Ctx<'_>,
        name: &str,
        site: &Site<'_>,
    ) -> Result<Value, Error> {
        if let Some(outer) = self.outer {
            // NOTE: in outer scope the parent's variables apply. A variable declared only in
            // the nested template is looked up there as a fallback, and that is unverified.
            let outer_ctx = crate::call::Ctx::new(ctx.engine, outer, None);
            if outer.has_variable(name) || !self.has_variable(name) {
                return outer.variable(&outer_ctx, name, site);
            }
        }
        let key = name.to_ascii_lowercase();
        match self.vars.borrow().get(&key) {
            Some(Slot::Done(value)) => return Ok(value.clone()),
            Some(Slot::InProgress) => return Err(self.cycle_error(site, "variable", name)),
            None => {}
        }

        let Some((section, section_path)) = self.section("variables") else {
            return Err(unknown_variable(site, name));
        };
        let definition = variable_definition(&section.value, name, &section_path);
        let Some(definition) = definition else {
            return Err(unknown_variable(site, name));
        };

        self.vars.borrow_mut().insert(key.clone(), Slot::InProgress);
        self.resolving.borrow_mut().push(name.to_owned());
        let var_ctx = crate::call::Ctx::new(ctx.engine, self, None).for_declarations("variables");
        let result = match definition {
            VariableDefinition::Plain(node, path) => var_ctx.eval_node(&node, &path),
            VariableDefinition::Copy(node, path) => var_ctx.eval_copy_entry(&node, &path),
        };
        self.resolving.borrow_mut().pop();
        match result {
            Ok(value) => {
                self.vars
                    .borrow_mut()
                    .insert(key, Slot::Done(value.clone()));
                Ok(value)
            }
            Err(error) => {
                self.vars.borrow_mut().remove(&key);
                Err(error)
            }
        }
    }

    /// Evaluates every variable, read or not. "Resource Manager resolves variables before
    /// starting the deployment operations" (Microsoft Learn, "Variables in ARM templates"), so
    /// an invalid variable fails the deployment even when nothing reads it. `reference()` and
    /// `list*()` are rejected in variables, so none of them needs a deployed resource.
    fn resolve_all_variables(&self, engine: &Engine<'_>) -> Result<(), Error> {
        let Some((section, section_path)) = self.section("variables") else {
            return Ok(());
        };
        let Some(members) = section.value.as_object() else {
            let site = node_site(&self.source, &section.value, &section_path);
            return Err(site.error(
                ErrorKind::Template,
                "`variables` must be an object".to_owned(),
                "declare variables as `\"name\": value`".to_owned(),
            ));
        };
        let ctx = crate::call::Ctx::new(engine, self, None);
        for member in members.iter() {
            if !member.key.text.eq_ignore_ascii_case("copy") {
                let site = node_site(&self.source, &member.value, &section_path);
                self.variable(&ctx, &member.key.text, &site)?;
                continue;
            }
            // Each entry of a `copy` array declares the variable its `name` names.
            let entries = member.value.as_array().into_iter().flatten();
            for entry in entries {
                if let Some(name) = entry.get("name").and_then(|name| name.as_str()) {
                    let site = node_site(&self.source, entry, &section_path);
                    self.variable(&ctx, name, &site)?;
                }
            }
        }
        Ok(())
    }

    fn has_variable(&self, name: &str) -> bool {
        self.section("variables")
            .and_then(|(section, path)| variable_definition(&section.value, name, &path))
            .is_some()
    }

    fn cycle_error(&self, site: &Site<'_>, what: &str, name: &str) -> Error {
        let resolving = self.resolving.borrow();
        let start = resolving
            .iter()
            .position(|entry| entry.eq_ignore_ascii_case(name))
            .unwrap_or(0);
        let mut chain: Vec<String> = resolving[start..]
            .iter()
            .map(|entry| format!("`{entry}`"))
            .collect();
        chain.push(format!("`{name}`"));
        site.error(
            ErrorKind::Cycle,
            format!("{what} `{name}` depends on itself: {}", chain.join(" -> ")),
            format!("break the cycle so that `{name}` does not refer back to itself"),
        )
    }
}

fn is_true(node: Option<&Arc<Node>>) -> bool {
    matches!(node.map(|node| &node.kind), Some(NodeKind::Bool(true)))
}

fn unknown_variable(site: &Site<'_>, name: &str) -> Error {
    site.error(
        ErrorKind::Function,
        format!("variable `{name}` is not declared"),
        "declare it in the `variables` section or fix the name".to_owned(),
    )
}

enum VariableDefinition {
    Plain(Arc<Node>, String),
    Copy(Arc<Node>, String),
}

/// Finds a variable: a plain member of `variables`, or an entry of the `copy` array there.
fn variable_definition(section: &Node, name: &str, path: &str) -> Option<VariableDefinition> {
    let members = section.as_object()?;
    // The later of two declarations wins, as for any key written twice.
    let plain = members.iter().rev().find(|member| {
        member.key.text.eq_ignore_ascii_case(name) && !member.key.text.eq_ignore_ascii_case("copy")
    });
    if let Some(member) = plain {
        return Some(VariableDefinition::Plain(
            Arc::clone(&member.value),
            path_key(path, &member.key.text),
        ));
    }
    // Every `copy` array counts, because sibling property copies all expand. A later entry of
    // the same name wins.
    members
        .iter()
        .rev()
        .filter(|member| member.key.text.eq_ignore_ascii_case("copy"))
        .find_map(|copy| {
            let copy_path = path_key(path, &copy.key.text);
            let entries = copy.value.as_array()?;
            entries.iter().enumerate().rev().find_map(|(index, entry)| {
                let entry_name = entry.get("name")?.as_str()?;
                entry_name.eq_ignore_ascii_case(name).then(|| {
                    VariableDefinition::Copy(Arc::clone(entry), path_index(&copy_path, index))
                })
            })
        })
}

/// Reads the `{name: {value}}` parameter object passed to an inner-scope nested deployment.
pub(crate) fn nested_parameters(parameters: Option<&Value>) -> HashMap<String, Value> {
    let mut supplied = HashMap::new();
    let Some(Value::Object(object)) = parameters else {
        return supplied;
    };
    for (name, entry) in object.iter() {
        let value = match entry {
            Value::Object(wrapper) => {
                if let Some(value) = wrapper.get("value") {
                    value.clone()
                } else if let Some(reference) = wrapper.get("reference") {
                    let vault = reference
                        .get("keyVault")
                        .and_then(|vault| vault.get("id"))
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    let secret = reference
                        .get("secretName")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    key_vault_unknown(vault, secret)
                } else {
                    continue;
                }
            }
            Value::Unknown(unknown) => Value::Unknown(Unknown {
                expression: format!("{}.value", unknown.expression),
                cause: unknown.cause.clone(),
                secret: unknown.secret,
            }),
            _ => continue,
        };
        supplied.insert(name.to_ascii_lowercase(), value);
    }
    supplied
}

pub(crate) type SharedMap = Rc<HashMap<String, Value>>;
