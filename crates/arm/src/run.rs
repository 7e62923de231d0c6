//! Evaluation of the declared resources of one template: on-demand evaluation for
//! `reference()`, nested deployments, `dependsOn` ordering and outputs.

use std::cell::RefCell;
use std::sync::Arc;

use indexmap::IndexMap;

use crate::artifacts::shown_link;
use crate::call::Ctx;
use crate::error::{Error, ErrorKind};
use crate::eval::{
    nested_parameters, node_site, CopyFrame, Engine, Resource, ScopeLevel, Site, Template,
    TemplateInit, UnresolvedTemplate,
};
use crate::linked::LinkedTemplate;
use crate::provider::ReferenceRequest;
use crate::resources::{copy_count, Decl};
use crate::source::{path_index, path_key, Node, NodeKind, Source};
use crate::value::{Object, Unknown, UnknownCause, Value};

/// Deepest chain of nested deployments evaluated. Real templates nest a few levels (the
/// deepest in the corpus, four); the bound turns a linked template that links back to itself
/// into an error instead of exhausting the stack.
// NOTE: Azure's own limit on nesting depth is not known here; this bound is subnetlock's.
const MAX_NESTING_DEPTH: usize = 16;

/// Maximum length of a chain of resources evaluated one inside the other, across the
/// templates of a deployment. A resource that reads another with `reference()` evaluates it
/// first, and so does a deployment whose template reads a resource it depends on. Azure
/// allows "800 resources (including copy count)" in one template ("ARM template best
/// practices", Microsoft Learn), so a chain within one template is shorter than that. The
/// bound turns a longer chain into a located error and limits the stack evaluation grows.
// NOTE: the bound is subnetlock's. It admits a chain through every resource of a full template
// and a few nested ones, not through 16 nested templates of 800 resources each.
pub(crate) const MAX_EVALUATION_DEPTH: usize = 4000;

/// Stack that must remain before one more resource of a chain is evaluated. Evaluating one
/// resource recurses through its expressions, which nest up to 256 levels, and through
/// nested templates.
const STACK_RED_ZONE_BYTES: usize = 4 << 20;

/// Size of each stack segment added when the red zone is reached.
const STACK_SEGMENT_BYTES: usize = 32 << 20;

#[derive(Debug)]
enum State {
    Pending,
    Evaluating,
    Omitted,
    Done(Box<Done>),
}

#[derive(Debug)]
struct Done {
    resource: Resource,
    explicit: Vec<usize>,
    /// The written `dependsOn` entry behind each target of `explicit`, where one maps onto it.
    entries: Vec<DependencyEntry>,
    nested: Option<Nested>,
}

/// A `dependsOn` array item that names resource `target`, with its JSON path.
#[derive(Debug)]
struct DependencyEntry {
    target: usize,
    node: Arc<Node>,
    path: String,
}

/// Result of a nested deployment: its resources and outputs.
#[derive(Debug)]
struct Nested {
    resources: Vec<Resource>,
    /// `None` when the template could not be read offline.
    outputs: Option<IndexMap<String, OutputValue>>,
}

/// An output with its declared type.
#[derive(Clone, Debug)]
pub(crate) struct OutputValue {
    pub type_name: String,
    pub value: Value,
}

/// Evaluation of the resources of one template.
pub(crate) struct Run<'a> {
    pub engine: &'a Engine<'a>,
    pub tpl: &'a Template<'a>,
    pub decls: Vec<Decl>,
    states: RefCell<Vec<State>>,
    implicit: RefCell<Vec<Vec<usize>>>,
    stack: RefCell<Vec<usize>>,
    /// For a nested or linked template: the deployment resource that deploys it, so that
    /// `reference()` reaches the resources of the template that declares that resource.
    pub deployer: Option<Deployer<'a>>,
}

/// The deployment resource a nested or linked template is deployed by.
pub(crate) struct Deployer<'a> {
    /// The run of the template that declares the deployment resource.
    pub run: &'a Run<'a>,
    /// The deployment resource in `run`.
    pub deployment: usize,
    /// Whether the nested template evaluates its expressions in the scope of `run`.
    pub outer_scope: bool,
    /// The resources of `run` that the deployment's `dependsOn` names.
    pub depends_on: Vec<usize>,
}

impl<'a> Run<'a> {
    pub fn new(
        engine: &'a Engine<'a>,
        tpl: &'a Template<'a>,
        decls: Vec<Decl>,
        deployer: Option<Deployer<'a>>,
    ) -> Self {
        let count = decls.len();
        Run {
            engine,
            tpl,
            decls,
            states: RefCell::new((0..count).map(|_| State::Pending).collect()),
            implicit: RefCell::new(vec![Vec::new(); count]),
            stack: RefCell::new(Vec::new()),
            deployer,
        }
    }

    fn ctx(&self, copy: Vec<CopyFrame>, current: Option<usize>) -> Ctx<'_> {
        let mut ctx = Ctx::new(self.engine, self.tpl, Some(self));
        ctx.copy = copy;
        ctx.current = current;
        ctx
    }

    pub fn evaluate_all(&self) -> Result<(), Error> {
        for index in 0..self.decls.len() {
            self.evaluate(index, None)?;
        }
        Ok(())
    }

    /// Evaluates one resource (once); `site` is the `reference()` call that needs it.
    pub fn evaluate(&self, index: usize, site: Option<&Site<'_>>) -> Result<(), Error> {
        match self.states.borrow().get(index) {
            Some(State::Pending) => {}
            Some(State::Evaluating) => return Err(self.reference_cycle(index, site)),
            _ => return Ok(()),
        }
        let Some(decl) = self.decls.get(index) else {
            return Ok(());
        };
        let depth = &self.engine.evaluation_depth;
        if depth.get() >= MAX_EVALUATION_DEPTH {
            return Err(self.chain_too_deep(decl, site));
        }
        depth.set(depth.get() + 1);
        // Each level of the chain recurses through expression evaluation, so a long chain
        // needs more stack than a thread has: below the red zone, the rest of the chain runs
        // on a new stack segment.
        let result = stacker::maybe_grow(STACK_RED_ZONE_BYTES, STACK_SEGMENT_BYTES, || {
            self.evaluate_declared(index, decl, site)
        });
        depth.set(depth.get() - 1);
        result
    }

    /// Evaluates the parent resource of `decl`, then `decl` itself unless the parent is
    /// omitted.
    fn evaluate_declared(
        &self,
        index: usize,
        decl: &Decl,
        site: Option<&Site<'_>>,
    ) -> Result<(), Error> {
        if let Some(parent) = decl.parent {
            self.evaluate(parent, site)?;
            if matches!(self.states.borrow().get(parent), Some(State::Omitted)) {
                self.set_state(index, State::Omitted);
                return Ok(());
            }
        }

        self.set_state(index, State::Evaluating);
        self.stack.borrow_mut().push(index);
        let result = self.evaluate_body(index);
        self.stack.borrow_mut().pop();
        match result {
            Ok(state) => {
                self.set_state(index, state);
                Ok(())
            }
            Err(error) => {
                self.set_state(index, State::Pending);
                Err(error)
            }
        }
    }

    fn set_state(&self, index: usize, state: State) {
        if let Some(slot) = self.states.borrow_mut().get_mut(index) {
            *slot = state;
        }
    }

    /// Names the resources of a cycle that closes at `index`, from where `index` is on `stack`:
    /// `` `a` -> `b` -> `a` ``.
    fn cycle_chain(&self, stack: &[usize], index: usize) -> String {
        let start = stack.iter().position(|entry| *entry == index).unwrap_or(0);
        stack[start..]
            .iter()
            .chain(std::iter::once(&index))
            .filter_map(|entry| self.decls.get(*entry))
            .map(|decl| format!("`{}`", decl.display_name()))
            .collect::<Vec<_>>()
            .join(" -> ")
    }

    /// Returns the error for a chain of resources longer than [`MAX_EVALUATION_DEPTH`],
    /// located at the call that would go one level deeper, or else at `decl`.
    fn chain_too_deep(&self, decl: &Decl, site: Option<&Site<'_>>) -> Error {
        let message = format!(
            "evaluating `{}` needs a longer chain of resources that each read or wait for the next than subnetlock follows: at most {MAX_EVALUATION_DEPTH}",
            decl.display_name()
        );
        let help = "shorten the chain of `reference()` calls and `dependsOn` entries, for example by reading an earlier resource of a copy loop instead of the previous one".to_owned();
        match site {
            Some(site) => site.error(ErrorKind::Template, message, help),
            None => node_site(&self.tpl.source, &decl.node, &decl.path).error(
                ErrorKind::Template,
                message,
                help,
            ),
        }
    }

    fn reference_cycle(&self, index: usize, site: Option<&Site<'_>>) -> Error {
        let chain = self.cycle_chain(&self.stack.borrow(), index);
        let message = format!("resources refer to each other in a cycle: {chain}");
        let help = "remove one `reference()`/`list*()` call from the cycle".to_owned();
        match (site, self.decls.get(index)) {
            (Some(site), _) => site.error(ErrorKind::Cycle, message, help),
            (None, Some(decl)) => node_site(&self.tpl.source, &decl.node, &decl.path).error(
                ErrorKind::Cycle,
                message,
                help,
            ),
            (None, None) => node_site(&self.tpl.source, &self.tpl.root, &self.tpl.path).error(
                ErrorKind::Cycle,
                message,
                help,
            ),
        }
    }

    fn evaluate_body(&self, index: usize) -> Result<State, Error> {
        let Some(decl) = self.decls.get(index) else {
            return Ok(State::Omitted);
        };
        let ctx = self.ctx(decl.copy.clone(), Some(index));
        let source = &self.tpl.source;

        if let Some(condition) = decl.node.member("condition") {
            let condition_path = path_key(&decl.path, &condition.key.text);
            match ctx.eval_node(&condition.value, &condition_path)? {
                Value::Bool(false) => return Ok(State::Omitted),
                Value::Bool(true) => {}
                Value::Unknown(unknown) => {
                    tracing::debug!(
                        resource = %decl.name,
                        condition = %unknown.expression,
                        "condition is unknown offline; the resource is kept"
                    );
                }
                other => {
                    let site = node_site(source, &condition.value, &condition_path);
                    return Err(site.error(
                        ErrorKind::Template,
                        format!(
                            "resource `condition` must be a bool, found {}",
                            other.type_name()
                        ),
                        "use a bool expression such as `[equals(parameters('x'), 'y')]`".to_owned(),
                    ));
                }
            }
        }

        let mut body = Object::new();
        for member in decl.node.as_object().unwrap_or(&[]) {
            let key = member.key.text.to_ascii_lowercase();
            if matches!(
                key.as_str(),
                "resources" | "copy" | "condition" | "dependson"
            ) {
                continue;
            }
            let member_path = path_key(&decl.path, &member.key.text);
            // A nested template is evaluated in its own context below, not as part of the body.
            let value = match (&member.value.kind, key.as_str()) {
                (NodeKind::Object(members), "properties") if decl.is_deployment() => {
                    let inline_template = member
                        .value
                        .get("template")
                        .is_some_and(|template| template.as_object().is_some());
                    let skip = inline_template.then_some("template");
                    ctx.eval_object(members, &member_path, skip)?
                }
                _ => ctx.eval_node(&member.value, &member_path)?,
            };
            let name = ctx.eval_key(member, &decl.path)?;
            body.insert_written(name, value);
        }

        let (explicit, entries) = self.explicit_dependencies(&ctx, index, decl)?;
        let resource = Resource {
            id: decl.id.clone(),
            resource_type: decl.resource_type.clone(),
            name: decl.name.clone(),
            api_version: decl.api_version.clone(),
            symbolic_name: decl.symbolic.clone(),
            body: Value::Object(body),
            depends_on: Vec::new(),
            declared_at: source.location(decl.node.start, decl.node.end, &decl.path),
            existing: decl.existing,
            deployment_path: self.tpl.deployment_path.clone(),
        };
        self.tpl
            .register_declaration(self.engine, &decl.path, &decl.node);

        let nested = if decl.is_deployment() && !decl.existing {
            Some(self.run_nested(index, decl, &resource, &explicit)?)
        } else {
            None
        };
        Ok(State::Done(Box::new(Done {
            resource,
            explicit,
            entries,
            nested,
        })))
    }

    /// Returns the resources that `dependsOn` of resource `index` names, and the written
    /// entries that name them.
    fn explicit_dependencies(
        &self,
        ctx: &Ctx<'_>,
        index: usize,
        decl: &Decl,
    ) -> Result<(Vec<usize>, Vec<DependencyEntry>), Error> {
        let mut explicit = Vec::new();
        let mut entries = Vec::new();
        let Some(member) = decl.node.member("dependsOn") else {
            return Ok((explicit, entries));
        };
        let path = path_key(&decl.path, &member.key.text);
        let items = match ctx.eval_node(&member.value, &path)? {
            Value::Array(items) => items,
            Value::Null => Vec::new(),
            other => {
                let site = node_site(&self.tpl.source, &member.value, &path);
                return Err(site.error(
                    ErrorKind::Template,
                    format!("`dependsOn` must be an array, found {}", other.type_name()),
                    "list resource names or ids in an array".to_owned(),
                ));
            }
        };
        // Entries map onto the written array, unless an expression built the array.
        let written = member
            .value
            .as_array()
            .filter(|written| written.len() == items.len());
        for (position, item) in items.into_iter().enumerate() {
            match item {
                Value::String(text) => {
                    let targets = self.resolve_dependency(&text);
                    if targets.is_empty() {
                        tracing::debug!(resource = %decl.name, depends_on = %text, "dependsOn names no resource of this template");
                    }
                    let entry = written.and_then(|nodes| nodes.get(position));
                    if self.names_itself(index, &targets) {
                        let (node, entry_path) = match entry {
                            Some(node) => (node, path_index(&path, position)),
                            None => (&member.value, path.clone()),
                        };
                        return Err(self.self_dependency(decl, &text, node, &entry_path));
                    }
                    // NOTE: a bare name that also names other resources keeps only those, as
                    // before. Whether Azure then rejects the entry as a circular dependency is
                    // not verified.
                    for target in targets.into_iter().filter(|target| *target != index) {
                        explicit.push(target);
                        if let Some(node) = entry {
                            entries.push(DependencyEntry {
                                target,
                                node: Arc::clone(node),
                                path: path_index(&path, position),
                            });
                        }
                    }
                }
                Value::Unknown(unknown) => {
                    tracing::debug!(resource = %decl.name, depends_on = %unknown.expression, "dependsOn entry is unknown offline");
                }
                _ => {}
            }
        }
        Ok((explicit, entries))
    }

    /// Returns whether a `dependsOn` entry of resource `index`, which resolves to `targets`,
    /// names that resource itself: nothing but it, or its own copy loop.
    fn names_itself(&self, index: usize, targets: &[usize]) -> bool {
        let Some(own_loop) = self.decls.get(index).map(|decl| decl.copy_name.as_deref()) else {
            return false;
        };
        targets.contains(&index)
            && targets.iter().all(|target| {
                *target == index
                    || own_loop.is_some()
                        && self
                            .decls
                            .get(*target)
                            .map(|decl| decl.copy_name.as_deref())
                            == Some(own_loop)
            })
    }

    /// Returns the error for a `dependsOn` entry, `text` at `node`, that names its own
    /// resource `decl`. Azure Resource Manager rejects a template whose resources wait for each
    /// other with `InvalidTemplate`, "Circular dependency detected" (Microsoft Learn, "Resolve
    /// errors for invalid template"), and a resource that names itself waits for itself.
    fn self_dependency(&self, decl: &Decl, text: &str, node: &Node, path: &str) -> Error {
        let message = format!(
            "`dependsOn` of `{}` names the resource itself (`{text}`), so Azure Resource Manager rejects the template: InvalidTemplate, circular dependency detected",
            decl.display_name()
        );
        let help = format!(
            "remove `{text}` from `dependsOn`: a resource needs no dependency on itself, and a resource of a copy loop waits for the earlier ones with `\"mode\": \"serial\"` on its `copy`"
        );
        node_site(&self.tpl.source, node, path).error(ErrorKind::Cycle, message, help)
    }

    /// Resolves a `dependsOn` entry: a full id, a symbolic name, a copy loop name, a name or
    /// `type/name`.
    fn resolve_dependency(&self, text: &str) -> Vec<usize> {
        let text = text.trim_end_matches('/');
        let matching = |test: &dyn Fn(&Decl) -> bool| -> Vec<usize> {
            self.decls
                .iter()
                .enumerate()
                .filter(|(_, decl)| test(decl))
                .map(|(index, _)| index)
                .collect()
        };
        if text.starts_with('/') {
            return matching(&|decl| decl.id.eq_ignore_ascii_case(text));
        }
        let mut found = Vec::new();
        if self.tpl.language_v2 {
            found = matching(&|decl| {
                decl.symbolic
                    .as_deref()
                    .is_some_and(|symbolic| symbolic.eq_ignore_ascii_case(text))
            });
        }
        if found.is_empty() {
            found = matching(&|decl| {
                decl.copy_name
                    .as_deref()
                    .is_some_and(|name| name.eq_ignore_ascii_case(text))
                    || decl.name.eq_ignore_ascii_case(text)
                    || format!("{}/{}", decl.resource_type, decl.name).eq_ignore_ascii_case(text)
            });
        }
        found
    }

    /// Finds the resource a `reference()`/`list*()` argument names: a symbolic name, an id,
    /// a name or `type/name`.
    pub fn find_target(&self, text: &str) -> Option<usize> {
        let text = text.trim_end_matches('/');
        if self.tpl.language_v2 {
            let symbolic = self.decls.iter().position(|decl| {
                decl.symbolic
                    .as_deref()
                    .is_some_and(|symbolic| symbolic.eq_ignore_ascii_case(text))
            });
            if symbolic.is_some() {
                return symbolic;
            }
        }
        if text.starts_with('/') {
            return self
                .decls
                .iter()
                .position(|decl| decl.id.eq_ignore_ascii_case(text));
        }
        self.decls
            .iter()
            .position(|decl| decl.name.eq_ignore_ascii_case(text))
            .or_else(|| {
                self.decls.iter().position(|decl| {
                    format!("{}/{}", decl.resource_type, decl.name).eq_ignore_ascii_case(text)
                })
            })
    }

    /// Indices of the instances of a symbolic name (`references()`).
    pub fn instances(&self, symbolic: &str) -> Vec<usize> {
        self.decls
            .iter()
            .enumerate()
            .filter(|(_, decl)| {
                decl.symbolic
                    .as_deref()
                    .is_some_and(|name| name.eq_ignore_ascii_case(symbolic))
            })
            .map(|(index, _)| index)
            .collect()
    }

    pub fn record_implicit(&self, from: usize, to: usize) {
        if from == to {
            return;
        }
        if let Some(list) = self.implicit.borrow_mut().get_mut(from) {
            if !list.contains(&to) {
                list.push(to);
            }
        }
    }

    /// Returns whether Azure deploys the resource `target` of this run before it starts the
    /// deployment `deployer` describes: whether the deployment depends on `target`, directly
    /// or through other resources, by `dependsOn`, `reference()` or a serial copy loop.
    /// Dependencies not yet evaluated are evaluated here, as Azure deploys them first too.
    pub fn deploys_before(
        &self,
        deployer: &Deployer<'_>,
        target: usize,
        site: &Site<'_>,
    ) -> Result<bool, Error> {
        let mut pending = deployer.depends_on.clone();
        pending.extend(self.dependencies(deployer.deployment));
        let mut seen = vec![false; self.decls.len()];
        while let Some(index) = pending.pop() {
            if index == target {
                return Ok(true);
            }
            match seen.get_mut(index) {
                Some(visited) if !*visited => *visited = true,
                _ => continue,
            }
            if matches!(self.states.borrow().get(index), Some(State::Pending)) {
                self.evaluate(index, Some(site))?;
            }
            pending.extend(self.dependencies(index));
        }
        Ok(false)
    }

    /// Returns the resources `index` depends on so far: its `dependsOn` once it is evaluated,
    /// its `reference()`/`list*()` targets, and the previous batch of a serial copy loop.
    fn dependencies(&self, index: usize) -> Vec<usize> {
        let mut targets = Vec::new();
        if let Some(State::Done(done)) = self.states.borrow().get(index) {
            targets.extend(done.explicit.iter().copied());
        }
        if let Some(list) = self.implicit.borrow().get(index) {
            targets.extend(list.iter().copied());
        }
        if let Some(decl) = self.decls.get(index) {
            targets.extend(decl.serial_after.iter().copied());
        }
        targets
    }

    pub fn is_omitted(&self, index: usize) -> bool {
        matches!(self.states.borrow().get(index), Some(State::Omitted))
    }

    /// Returns the full id of a declared resource.
    pub fn id_of(&self, index: usize) -> Option<&str> {
        self.decls.get(index).map(|decl| decl.id.as_str())
    }

    /// Calls `f` with the evaluated resource, if it was deployed.
    pub fn with_resource<R>(&self, index: usize, f: impl FnOnce(&Resource) -> R) -> Option<R> {
        match self.states.borrow().get(index) {
            Some(State::Done(done)) => Some(f(&done.resource)),
            _ => None,
        }
    }

    /// The value `reference()` returns for a declared resource.
    pub fn reference_value(
        &self,
        index: usize,
        api_version: Option<&str>,
        full: bool,
        expression: &str,
    ) -> Value {
        let unknown = |cause| {
            Value::Unknown(Unknown {
                expression: expression.to_owned(),
                cause,
                secret: false,
            })
        };
        let states = self.states.borrow();
        let Some(State::Done(done)) = states.get(index) else {
            return unknown(UnknownCause::Reference);
        };
        if let Some(nested) = &done.nested {
            let Some(outputs) = &nested.outputs else {
                return unknown(UnknownCause::RemoteTemplate);
            };
            let mut wrapped = Object::new();
            for (name, output) in outputs {
                let mut entry = Object::new();
                entry.insert("type", Value::String(output.type_name.clone()));
                entry.insert("value", output.value.clone());
                wrapped.insert(name.clone(), Value::Object(entry));
            }
            let mut properties = Object::new();
            properties.insert("outputs", Value::Object(wrapped));
            properties.insert("provisioningState", Value::String("Succeeded".to_owned()));
            let properties = Value::Object(properties);
            if full {
                let envelope =
                    crate::provider::full_envelope(&done.resource, api_version, properties);
                return Value::Object(envelope);
            }
            return properties;
        }
        let request = ReferenceRequest {
            id: &done.resource.id,
            api_version,
            full,
            declared: Some(&done.resource),
        };
        self.engine
            .provider
            .reference(&request)
            .unwrap_or_else(|| unknown(UnknownCause::Reference))
    }

    fn run_nested(
        &self,
        index: usize,
        decl: &Decl,
        resource: &Resource,
        depends_on: &[usize],
    ) -> Result<Nested, Error> {
        let properties = resource.body.get("properties");
        let inner = properties
            .and_then(|properties| properties.get("expressionEvaluationOptions"))
            .and_then(|options| options.get("scope"))
            .and_then(Value::as_str)
            .is_some_and(|scope| scope.eq_ignore_ascii_case("inner"));

        let properties_member = decl.node.member("properties");
        let inline = properties_member.and_then(|member| {
            let member_path = path_key(&decl.path, &member.key.text);
            member.value.member("template").map(|template| {
                (
                    Arc::clone(&template.value),
                    path_key(&member_path, &template.key.text),
                )
            })
        });
        let computed = properties
            .and_then(|properties| properties.get("template"))
            .filter(|template| matches!(template, Value::Object(_)));
        // For a template read from a file: the `templateLink.uri` it was linked by, if known.
        let mut linked_from: Option<Option<String>> = None;
        let mut from_artifacts = self.tpl.from_artifacts;
        let (source, root, path) = match (inline, computed) {
            (Some((root, path)), _) if root.as_object().is_some() => {
                (Arc::clone(&self.tpl.source), root, path)
            }
            (Some((_, path)), Some(template)) => {
                // The template is itself an expression (Bicep writes `json(variables(...))`):
                // its value is read again as a template of its own.
                // NOTE: locations inside it point into this synthetic text, not the file.
                let name = format!("{}#{path}", self.tpl.source.name.display());
                let text = serde_json::to_string_pretty(&crate::format::to_json(template))
                    .unwrap_or_default();
                let source = Arc::new(Source::new(name, text));
                let root = source.parse()?;
                (source, root, "$".to_owned())
            }
            _ => {
                let link = properties.and_then(|properties| properties.get("templateLink"));
                match self.read_linked(decl, link)? {
                    LinkedTemplate::Read(linked) => {
                        linked_from = Some(linked.link);
                        from_artifacts = linked.from_artifacts;
                        (linked.source, linked.root, "$".to_owned())
                    }
                    LinkedTemplate::Unresolved { uri } => {
                        self.tpl.push_unresolved(
                            self.engine,
                            UnresolvedTemplate {
                                deployment: decl.name.clone(),
                                link: link.cloned().unwrap_or(Value::Null),
                                looked_up_uri: uri.as_deref().map(shown_link),
                                artifact_prefixes: self.tpl.scope.artifacts.prefixes(),
                                declared_at: resource.declared_at.clone(),
                            },
                        );
                        return Ok(Nested {
                            resources: Vec::new(),
                            outputs: None,
                        });
                    }
                }
            }
        };
        // `expressionEvaluationOptions` is "only applicable to nested templates" and defaults
        // to outer scope (`DeploymentProperties.ExpressionEvaluationOptions`, Azure Resource
        // Manager SDK reference on Microsoft Learn). A linked template is a file of its own, so
        // its parameters, variables and `deployment()` are its own, as in inner scope.
        let inner = inner || linked_from.is_some();
        // A linked template's `deployment()` returns its own link. An outer-scope nested
        // template evaluates `deployment()` in its parent. An inner-scope one is deployed
        // inline, so Azure gives it no link, which reads as unknown like any link not known.
        let template_link = match linked_from {
            Some(link) => link,
            None if inner => None,
            None => self.tpl.template_link.clone(),
        };

        let mut scope = self.tpl.scope.clone();
        let target_group = resource.body.get("resourceGroup").and_then(Value::as_str);
        if let Some(group) = target_group {
            scope.resource_group = group.to_owned();
        }
        if let Some(subscription) = resource.body.get("subscriptionId").and_then(Value::as_str) {
            scope.subscription_id = subscription.to_owned();
        }
        let level = ScopeLevel::from_schema_of(&root).unwrap_or(match target_group {
            Some(_) => ScopeLevel::ResourceGroup,
            None => self.tpl.level,
        });
        if inner {
            scope.deployment_name = decl.name.clone();
        }
        let supplied =
            nested_parameters(properties.and_then(|properties| properties.get("parameters")));
        let mut deployment_path = self.tpl.deployment_path.clone();
        deployment_path.push(decl.name.clone());
        if deployment_path.len() > MAX_NESTING_DEPTH {
            let site = node_site(&self.tpl.source, &decl.node, &decl.path);
            return Err(site.error(
                ErrorKind::Template,
                format!(
                    "nested deployments are more than {MAX_NESTING_DEPTH} levels deep: {}",
                    deployment_path.join(" -> ")
                ),
                "check for a linked template that links back to itself or to a template that links to it".to_owned(),
            ));
        }

        let child = Template::new(TemplateInit {
            source,
            root,
            path,
            scope,
            level,
            supplied,
            supplied_from: std::collections::HashMap::new(),
            outer: if inner { None } else { Some(self.tpl) },
            deployment_path,
            base_copy: if inner { Vec::new() } else { decl.copy.clone() },
            template_link,
            from_artifacts,
        })?;
        let deployer = Deployer {
            run: self,
            deployment: index,
            outer_scope: !inner,
            depends_on: depends_on.to_vec(),
        };
        let (resources, outputs) = child.execute(self.engine, Some(deployer))?;
        Ok(Nested {
            resources,
            outputs: Some(outputs),
        })
    }

    /// Returns the deployed resources in dependency order (depth-first, declaration order
    /// among independent resources); a `dependsOn` cycle is an error.
    pub fn ordered_resources(&self) -> Result<Vec<Resource>, Error> {
        let states = self.states.borrow();
        let implicit = self.implicit.borrow();
        let deployed = |index: usize| matches!(states.get(index), Some(State::Done(_)));
        let edges: Vec<Vec<usize>> = (0..self.decls.len())
            .map(|index| {
                let mut targets: Vec<usize> = Vec::new();
                if let Some(State::Done(done)) = states.get(index) {
                    targets.extend(done.explicit.iter().copied());
                }
                if let Some(list) = implicit.get(index) {
                    targets.extend(list.iter().copied());
                }
                if let Some(decl) = self.decls.get(index) {
                    targets.extend(decl.serial_after.iter().copied());
                }
                let mut unique = Vec::new();
                for target in targets {
                    if deployed(target) && !unique.contains(&target) {
                        unique.push(target);
                    }
                }
                unique
            })
            .collect();

        let mut marks = vec![Mark::New; self.decls.len()];
        let mut order = Vec::new();
        for index in 0..self.decls.len() {
            if deployed(index) {
                self.visit(index, &edges, &mut marks, &mut Vec::new(), &mut order)?;
            }
        }

        let mut resources = Vec::new();
        for index in order {
            let Some(State::Done(done)) = states.get(index) else {
                continue;
            };
            let mut resource = done.resource.clone();
            resource.depends_on = edges[index]
                .iter()
                .filter_map(|target| self.id_of(*target).map(str::to_owned))
                .collect();
            resources.push(resource);
            if let Some(nested) = &done.nested {
                resources.extend(nested.resources.iter().cloned());
            }
        }
        Ok(resources)
    }

    fn visit(
        &self,
        index: usize,
        edges: &[Vec<usize>],
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
        order: &mut Vec<usize>,
    ) -> Result<(), Error> {
        match marks[index] {
            Mark::Done => return Ok(()),
            Mark::Visiting => return Err(self.dependency_cycle(index, stack)),
            Mark::New => {}
        }
        marks[index] = Mark::Visiting;
        stack.push(index);
        for target in &edges[index] {
            self.visit(*target, edges, marks, stack, order)?;
        }
        stack.pop();
        marks[index] = Mark::Done;
        order.push(index);
        Ok(())
    }

    fn dependency_cycle(&self, index: usize, stack: &[usize]) -> Error {
        let chain = self.cycle_chain(stack, index);
        let message = format!("resources depend on each other in a cycle: {chain}");
        let help = "remove one of these `dependsOn` entries; Azure Resource Manager rejects the template with InvalidTemplate, circular dependency detected".to_owned();
        // The error points at the `dependsOn` of the resource where the cycle closes.
        let Some(decl) = self.decls.get(index) else {
            return node_site(&self.tpl.source, &self.tpl.root, &self.tpl.path).error(
                ErrorKind::Cycle,
                message,
                help,
            );
        };
        // The entry that names the next resource of the cycle is the one to remove, when the
        // cycle goes through a written `dependsOn` entry and not through `reference()`.
        let start = stack.iter().position(|entry| *entry == index).unwrap_or(0);
        let next = stack.get(start + 1).copied().unwrap_or(index);
        let states = self.states.borrow();
        let entry = match states.get(index) {
            Some(State::Done(done)) => done
                .entries
                .iter()
                .find(|entry| entry.target == next)
                .map(|entry| (Arc::clone(&entry.node), entry.path.clone())),
            _ => None,
        };
        let (node, path) = match (entry, decl.node.member("dependsOn")) {
            (Some(entry), _) => entry,
            (None, Some(member)) => (
                Arc::clone(&member.value),
                path_key(&decl.path, &member.key.text),
            ),
            (None, None) => (Arc::clone(&decl.node), decl.path.clone()),
        };
        node_site(&self.tpl.source, &node, &path).error(ErrorKind::Cycle, message, help)
    }

    /// Evaluates the `outputs` section.
    pub fn outputs(&self) -> Result<IndexMap<String, OutputValue>, Error> {
        let mut outputs = IndexMap::new();
        let Some(section) = self.tpl.root.member("outputs") else {
            return Ok(outputs);
        };
        let section_path = path_key(&self.tpl.path, &section.key.text);
        let Some(members) = section.value.as_object() else {
            return Ok(outputs);
        };
        for member in members {
            let path = path_key(&section_path, &member.key.text);
            let node = &member.value;
            let ctx = self.ctx(self.tpl.base_copy.clone(), None);
            if let Some(condition) = node.member("condition") {
                let condition_path = path_key(&path, &condition.key.text);
                if ctx.eval_node(&condition.value, &condition_path)? == Value::Bool(false) {
                    continue;
                }
            }
            let type_name = node
                .get("type")
                .and_then(|type_node| type_node.as_str())
                .unwrap_or("")
                .to_owned();
            let value = if let Some(copy) = node.member("copy") {
                let copy_path = path_key(&path, &copy.key.text);
                let count = copy_count(&ctx, &copy.value, &copy_path)?;
                let mut items = Vec::new();
                if let Some(input) = copy.value.get("input") {
                    let input_path = path_key(&copy_path, "input");
                    for index in 0..count {
                        let mut instance = ctx.clone();
                        instance.copy.push(CopyFrame {
                            name: None,
                            index,
                            unnamed_target: true,
                        });
                        items.push(instance.eval_node(input, &input_path)?);
                    }
                }
                Value::Array(items)
            } else if let Some(value) = node.member("value") {
                ctx.eval_node(&value.value, &path_key(&path, &value.key.text))?
            } else {
                Value::Null
            };
            outputs.insert(member.key.text.clone(), OutputValue { type_name, value });
        }
        Ok(outputs)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    New,
    Visiting,
    Done,
}

impl ScopeLevel {
    pub(crate) fn from_schema_of(root: &Node) -> Option<ScopeLevel> {
        let schema = root.get("$schema")?.as_str()?.to_ascii_lowercase();
        if schema.contains("subscriptiondeploymenttemplate") {
            Some(ScopeLevel::Subscription)
        } else if schema.contains("managementgroupdeploymenttemplate") {
            Some(ScopeLevel::ManagementGroup)
        } else if schema.contains("tenantdeploymenttemplate") {
            Some(ScopeLevel::Tenant)
        } else {
            Some(ScopeLevel::ResourceGroup)
        }
    }
}
