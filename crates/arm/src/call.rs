//! Expression evaluation: JSON nodes with expressions, function calls, property access,
//! lazy functions, lambdas, and the functions that read the deployment context.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use crate::error::{Error, ErrorKind};
use crate::eval::{literal_value, CopyFrame, Engine, SharedMap, Site, Template};
use crate::expr::{classify, parse, Accessor, Call, Expr, StringForm};
use crate::format::to_expression;
use crate::functions::{call_pure, Args, FnError};
use crate::provider::{ListRequest, ReferenceRequest};
use crate::resources::{build_resource_id, copy_count, scope_prefix, MAX_COPY_COUNT};
use crate::run::Run;
use crate::source::{path_index, path_key, Member, Node, NodeKind, StringLit};
use crate::value::{Object, Unknown, UnknownCause, Value};

mod lambdas;
mod runtime;
mod scope;
mod udf;

use runtime::Lenient;
use scope::environment;

/// Nesting limit for user-defined function calls, so that recursion ends in an error.
const MAX_CALL_DEPTH: usize = 64;

const FUNCTIONS_HELP: &str = "see https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions for the function list";

/// The place name [`Ctx::for_declarations`] takes for parameter defaults, the one place
/// where `utcNow()` and `newGuid()` are allowed.
pub(crate) const PARAMETER_DEFAULTS: &str = "parameter defaults";

/// The context an expression is evaluated in.
#[derive(Clone)]
pub(crate) struct Ctx<'a> {
    pub engine: &'a Engine<'a>,
    pub tpl: &'a Template<'a>,
    pub run: Option<&'a Run<'a>>,
    pub copy: Vec<CopyFrame>,
    lambdas: Vec<(String, Value)>,
    udf: Option<SharedMap>,
    /// The resource whose body is being evaluated, for implicit dependencies.
    pub current: Option<usize>,
    /// Where `reference()`/`list*()` are not allowed, named for the error message.
    runtime_forbidden: Option<&'static str>,
    depth: usize,
}

impl<'a> Ctx<'a> {
    pub fn new(engine: &'a Engine<'a>, tpl: &'a Template<'a>, run: Option<&'a Run<'a>>) -> Self {
        Ctx {
            engine,
            tpl,
            run,
            copy: tpl.base_copy.clone(),
            lambdas: Vec::new(),
            udf: None,
            current: None,
            runtime_forbidden: if run.is_none() {
                Some("resource names, types and copy counts")
            } else {
                None
            },
            depth: 0,
        }
    }

    /// Returns a context for parameter defaults and variables, without copy loops or runtime
    /// functions.
    pub fn for_declarations(&self, place: &'static str) -> Self {
        debug_assert!(place == PARAMETER_DEFAULTS || place == "variables");
        Ctx {
            engine: self.engine,
            tpl: self.tpl,
            run: None,
            copy: Vec::new(),
            lambdas: Vec::new(),
            udf: None,
            current: None,
            runtime_forbidden: Some(place),
            depth: self.depth,
        }
    }

    pub fn eval_node(&self, node: &Arc<Node>, path: &str) -> Result<Value, Error> {
        match &node.kind {
            NodeKind::String(literal) => self.eval_string(node, literal, path),
            NodeKind::Array(items) => {
                let mut values = Vec::with_capacity(items.len());
                for (index, item) in items.iter().enumerate() {
                    values.push(self.eval_node(item, &path_index(path, index))?);
                }
                Ok(Value::Array(values))
            }
            NodeKind::Object(members) => self.eval_object(members, path, None),
            _ => Ok(literal_value(node)),
        }
    }

    /// Evaluates an object; a `copy` array of `{name, count, input}` becomes one array
    /// property per entry (property copy). The member named `skip` is kept unevaluated.
    pub fn eval_object(
        &self,
        members: &[Member],
        path: &str,
        skip: Option<&str>,
    ) -> Result<Value, Error> {
        let mut object = Object::new();
        let repeats = crate::source::may_repeat_keys(members);
        for member in members {
            let member_path = path_key(path, &member.key.text);
            if skip.is_some_and(|skip| member.key.text.eq_ignore_ascii_case(skip)) {
                object.insert(member.key.text.clone(), literal_value(&member.value));
                continue;
            }
            if member.key.text.eq_ignore_ascii_case("copy") && is_property_copy(&member.value) {
                for (index, entry) in member.value.as_array().unwrap_or(&[]).iter().enumerate() {
                    let entry_path = path_index(&member_path, index);
                    let name = match entry.get("name") {
                        Some(name) => self.eval_node(name, &path_key(&entry_path, "name"))?,
                        None => Value::Null,
                    };
                    let name = crate::format::to_text(&name);
                    let value = self.eval_copy_entry(entry, &entry_path)?;
                    // A copy's array replaces a key of the same name written earlier, and a
                    // later key replaces it, as for any key written twice.
                    object.insert_written(name, value);
                }
                continue;
            }
            let key = self.eval_key(member, path)?;
            let value = self.eval_node(&member.value, &member_path)?;
            if repeats {
                object.insert_written(key, value);
            } else {
                object.insert(key, value);
            }
        }
        Ok(Value::Object(object))
    }

    /// Evaluates an object key; keys may be expressions too (Bicep emits
    /// `"[string('copy')]"` for a literal `copy` key).
    pub fn eval_key(&self, member: &Member, parent_path: &str) -> Result<String, Error> {
        match classify(&member.key.text) {
            StringForm::Literal(text) => Ok(text.into_owned()),
            StringForm::Expression(inner) => {
                let path = path_key(parent_path, &member.key.text);
                let site = self.site(member.key_start, member.key_end, &member.key, &path);
                let value = self.eval_expression_text(inner, &member.key.text, &site)?;
                match value {
                    Value::String(text) => Ok(text),
                    Value::Unknown(unknown) => Ok(format!("[{}]", unknown.expression)),
                    other => Ok(crate::format::to_text(&other)),
                }
            }
        }
    }

    /// Evaluates one `{name, count, input}` copy entry into an array.
    pub fn eval_copy_entry(&self, entry: &Arc<Node>, path: &str) -> Result<Value, Error> {
        let name = match entry.get("name") {
            Some(name) => crate::format::to_text(&self.eval_node(name, &path_key(path, "name"))?),
            None => String::new(),
        };
        let count = copy_count(self, entry, path)?.min(MAX_COPY_COUNT);
        let Some(input) = entry.get("input") else {
            let site = self.node_site(entry, path);
            return Err(site.error(
                ErrorKind::Template,
                format!("copy loop `{name}` has no `input`"),
                "add `\"input\": <value for each element>`".to_owned(),
            ));
        };
        let input_path = path_key(path, "input");
        let mut items = Vec::new();
        for index in 0..count {
            let mut instance = self.clone();
            instance.copy.push(CopyFrame {
                name: Some(name.to_ascii_lowercase()),
                index,
                unnamed_target: false,
            });
            items.push(instance.eval_node(input, &input_path)?);
        }
        Ok(Value::Array(items))
    }

    fn node_site<'s>(&'s self, node: &Node, path: &'s str) -> Site<'s> {
        crate::eval::node_site(&self.tpl.source, node, path)
    }

    fn site<'s>(
        &'s self,
        start: usize,
        end: usize,
        literal: &StringLit,
        path: &'s str,
    ) -> Site<'s> {
        Site {
            source: &self.tpl.source,
            start,
            end,
            path,
            // Skip the opening quote and `[`.
            expression_start: literal.verbatim.then_some(start + 2),
        }
    }

    fn eval_string(&self, node: &Node, literal: &StringLit, path: &str) -> Result<Value, Error> {
        match classify(&literal.text) {
            StringForm::Literal(text) => Ok(Value::String(text.into_owned())),
            StringForm::Expression(inner) => {
                let site = self.site(node.start, node.end, literal, path);
                self.eval_expression_text(inner, &literal.text, &site)
            }
        }
    }

    fn eval_expression_text(
        &self,
        inner: &str,
        whole: &str,
        site: &Site<'_>,
    ) -> Result<Value, Error> {
        let expr = parse(inner).map_err(|failure| {
            site.error_at(
                ErrorKind::Expression,
                Some(failure.offset),
                format!("{} in `{}`", failure.message, shorten(whole)),
                "fix the expression syntax; string literals use single quotes and `''` for a quote"
                    .to_owned(),
            )
        })?;
        self.eval_expr(&expr, site)
    }

    pub fn eval_expr(&self, expr: &Expr, site: &Site<'_>) -> Result<Value, Error> {
        match expr {
            Expr::String(text) => Ok(Value::String(text.clone())),
            Expr::Int(number) => Ok(Value::Int(*number)),
            Expr::Call(call) => self.eval_call(call, site),
        }
    }

    fn eval_call(&self, call: &Call, site: &Site<'_>) -> Result<Value, Error> {
        let name = call.name.to_ascii_lowercase();
        let (value, lenient) = self.call_function(call, &name, site)?;
        self.apply_accessors(value, call, site, lenient)
    }

    fn fail(&self, site: &Site<'_>, call: &Call, error: FnError) -> Error {
        site.error_at(
            ErrorKind::Function,
            Some(call.offset),
            error.message,
            error.help,
        )
    }

    fn eval_args(&self, call: &Call, site: &Site<'_>) -> Result<Vec<Value>, Error> {
        call.args
            .iter()
            .map(|arg| self.eval_expr(arg, site))
            .collect()
    }

    /// Calls a function; the second result is set for `reference()`/`list*()`, whose missing
    /// properties become unknown instead of an error.
    fn call_function(
        &self,
        call: &Call,
        name: &str,
        site: &Site<'_>,
    ) -> Result<(Value, Option<Lenient>), Error> {
        let plain = |value| Ok((value, None));
        match name {
            "if" => return plain(self.fn_if(call, site)?),
            "and" | "or" => return plain(self.fn_and_or(call, name == "and", site)?),
            "coalesce" => return plain(self.fn_coalesce(call, site)?),
            "map" | "filter" | "reduce" | "sort" | "toobject" | "groupby" | "mapvalues" => {
                return plain(self.fn_lambda(call, name, site)?)
            }
            "lambda" => {
                return Err(self.fail(
                    site,
                    call,
                    FnError::new(
                        "`lambda` can only be an argument of `map`, `filter`, `reduce`, `sort`, `toObject`, `groupBy` or `mapValues`",
                        "pass the lambda directly to one of those functions",
                    ),
                ))
            }
            _ => {}
        }

        let args = self.eval_args(call, site)?;
        if name.contains('.') {
            return plain(self.call_user_function(call, args, site)?);
        }
        if name == "reference" {
            return self.fn_reference(call, &args, site);
        }
        if name.starts_with("list") {
            return self.fn_list(call, &args, site);
        }
        if let Some(mut residual) = residual_unknown(call, name, &args) {
            // A known secure value is a plain string by now, so the residual text may contain
            // it. The unknown is marked secret when the call reads a secure parameter.
            if let Value::Unknown(unknown) = &mut residual {
                if !unknown.secret && self.reads_secure_parameter(call) {
                    unknown.secret = true;
                }
            }
            return plain(residual);
        }

        let arguments = Args {
            name: &call.name,
            args: &args,
        };
        let result = match name {
            "parameters" => {
                arguments.exactly(1).map_err(|e| self.fail(site, call, e))?;
                let parameter = arguments.str(0).map_err(|e| self.fail(site, call, e))?;
                return plain(self.parameter(parameter, call, site)?);
            }
            "variables" => {
                arguments.exactly(1).map_err(|e| self.fail(site, call, e))?;
                let variable = arguments.str(0).map_err(|e| self.fail(site, call, e))?;
                if self.udf.is_some() {
                    return Err(self.fail(
                        site,
                        call,
                        FnError::new(
                            "`variables()` is not allowed inside a user-defined function",
                            "pass the value as a function parameter",
                        ),
                    ));
                }
                return plain(self.tpl.variable(self, variable, site)?);
            }
            "lambdavariables" => self.fn_lambda_variable(&arguments),
            "copyindex" => self.fn_copy_index(&arguments),
            "resourcegroup" => arguments.between(0, 2).map(|()| self.resource_group()),
            "subscription" => arguments.between(0, 1).map(|()| self.subscription()),
            "tenant" => arguments.exactly(0).map(|()| self.tenant()),
            "deployment" => arguments.exactly(0).map(|()| self.deployment()),
            "environment" => arguments.exactly(0).map(|()| environment()),
            "managementgroup" | "deployer" => Ok(unknown(
                format!("{}()", call.name),
                UnknownCause::DeploymentMetadata,
            )),
            "resourceid"
            | "subscriptionresourceid"
            | "tenantresourceid"
            | "extensionresourceid"
            | "managementgroupresourceid" => self.fn_resource_id(name, &arguments),
            "references" => return plain(self.fn_references(call, &args, site)?),
            "utcnow" | "newguid" => self.fn_nondeterministic(call, name, &arguments),
            "pickzones" | "providers" | "tologicalzone" | "tologicalzones" | "tophysicalzone"
            | "tophysicalzones" | "roledefinitions" => {
                Ok(unknown(render_call(call, &args), UnknownCause::Reference))
            }
            "fail" => Err(FnError::new(
                format!(
                    "the template called `fail` with `{}`",
                    args.first().map(crate::format::to_text).unwrap_or_default()
                ),
                "fix the input the template rejected",
            )),
            _ => match call_pure(name, &args) {
                Some(result) => result,
                None => Err(FnError::new(
                    format!("unknown function `{}`", call.name),
                    FUNCTIONS_HELP,
                )),
            },
        };
        result
            .map(|value| (value, None))
            .map_err(|error| self.fail(site, call, error))
    }

    /// Evaluates `utcNow([format])` or `newGuid()`. Both are allowed only in a parameter's
    /// `defaultValue`, and using them elsewhere is an error (Microsoft Learn,
    /// template-functions-date and template-functions-string, remarks). Their values come
    /// from the provider, which leaves them unknown when nothing is deployed.
    fn fn_nondeterministic(
        &self,
        call: &Call,
        name: &str,
        arguments: &Args<'_>,
    ) -> Result<Value, FnError> {
        if self.runtime_forbidden != Some(PARAMETER_DEFAULTS) {
            return Err(FnError::new(
                format!(
                    "`{}` can only be used in a parameter's `defaultValue`",
                    call.name
                ),
                "declare a parameter whose `defaultValue` calls it, and read that parameter",
            ));
        }
        let value = if name == "utcnow" {
            arguments.between(0, 1)?;
            let format = match arguments.args.first() {
                Some(_) => arguments.str(0)?,
                None => "yyyyMMddTHHmmssZ",
            };
            // Offline the format is still checked, on a stand-in time, so that a format ARM
            // rejects is an error in `check` too.
            let time = self.engine.provider.deployment_time();
            let text = crate::dates::format_dotnet(&time.unwrap_or_default(), format)
                .map_err(|message| FnError::new(message, crate::dates::FORMAT_HELP))?;
            time.map(|_| Value::String(text))
        } else {
            arguments.exactly(0)?;
            self.engine.provider.new_guid().map(Value::String)
        };
        Ok(value.unwrap_or_else(|| {
            unknown(
                render_call(call, arguments.args),
                UnknownCause::Nondeterministic,
            )
        }))
    }

    fn parameter(&self, name: &str, call: &Call, site: &Site<'_>) -> Result<Value, Error> {
        if let Some(bound) = &self.udf {
            return bound
                .get(&name.to_ascii_lowercase())
                .cloned()
                .ok_or_else(|| {
                    self.fail(
                        site,
                        call,
                        FnError::new(
                            format!("user-defined function has no parameter `{name}`"),
                            "only the function's own parameters are visible inside it",
                        ),
                    )
                });
        }
        self.tpl.parameter(self, name, site)
    }

    fn apply_accessors(
        &self,
        value: Value,
        call: &Call,
        site: &Site<'_>,
        lenient: Option<Lenient>,
    ) -> Result<Value, Error> {
        // Rendering the call below formats all of its arguments, so doing it for a call
        // without accessors would make nested calls cost time quadratic in their depth.
        if call.accessors.is_empty() {
            return Ok(value);
        }
        let mut current = value;
        // Text of `current` as an expression, for residuals of unknown values.
        let mut rendered = match &lenient {
            Some(lenient) => lenient.head.clone(),
            None => plain_call_text(call),
        };
        for accessor in &call.accessors {
            let key = match accessor {
                Accessor::Property(name) => Value::String(name.clone()),
                Accessor::Index(index) => self.eval_expr(index, site)?,
            };
            if let Value::Unknown(unknown) = &key {
                if let Value::Unknown(base) = &current {
                    rendered.clone_from(&base.expression);
                }
                rendered = format!("{rendered}[{}]", unknown.expression);
                current = Value::Unknown(Unknown {
                    expression: rendered.clone(),
                    cause: unknown.cause.clone(),
                    secret: unknown.secret,
                });
                continue;
            }
            let next = match (&current, &key) {
                (Value::Unknown(unknown), _) => Ok(Value::Unknown(Unknown {
                    expression: format!("{}{}", unknown.expression, accessor_text(&key)),
                    cause: unknown.cause.clone(),
                    secret: unknown.secret,
                })),
                (Value::Object(object), Value::String(name)) => match object.get(name) {
                    Some(found) => Ok(found.clone()),
                    None => Err(FnError::new(
                        format!(
                            "property `{name}` does not exist; available properties are {}",
                            property_list(object)
                        ),
                        "check the property name, or use `tryGet()` for an optional property",
                    )),
                },
                (Value::Array(items), Value::Int(index)) => usize::try_from(*index)
                    .ok()
                    .and_then(|index| items.get(index))
                    .cloned()
                    .ok_or_else(|| {
                        FnError::new(
                            format!(
                                "index `{index}` is out of range for an array of length {}",
                                items.len()
                            ),
                            "use an index from 0 to the array length minus one",
                        )
                    }),
                (Value::Null, _) => Err(FnError::new(
                    format!("cannot read `{}` of null", crate::format::to_text(&key)),
                    "check that the value exists, or use `tryGet()`",
                )),
                (other, _) => Err(FnError::new(
                    format!(
                        "cannot read `{}` of a value of type {}",
                        crate::format::to_text(&key),
                        other.type_name()
                    ),
                    "index arrays with ints and objects with property names",
                )),
            };
            rendered.push_str(&accessor_text(&key));
            current = match (next, &lenient) {
                (Ok(value), _) => value,
                (Err(_), Some(lenient)) => Value::Unknown(Unknown {
                    expression: rendered.clone(),
                    cause: lenient.cause.clone(),
                    secret: lenient.secret,
                }),
                (Err(error), None) => return Err(self.fail(site, call, error)),
            };
        }
        Ok(current)
    }

    fn fn_if(&self, call: &Call, site: &Site<'_>) -> Result<Value, Error> {
        let [condition, when_true, when_false] = call.args.as_slice() else {
            return Err(self.fail(
                site,
                call,
                FnError::new(
                    format!(
                        "function `if` expects 3 argument(s), but {} were given",
                        call.args.len()
                    ),
                    "write `if(condition, trueValue, falseValue)`",
                ),
            ));
        };
        match self.eval_expr(condition, site)? {
            Value::Bool(true) => self.eval_expr(when_true, site),
            Value::Bool(false) => self.eval_expr(when_false, site),
            Value::Unknown(unknown) => Ok(Value::Unknown(Unknown {
                expression: plain_call_text(call),
                cause: unknown.cause,
                secret: unknown.secret,
            })),
            other => Err(self.fail(
                site,
                call,
                Args {
                    name: &call.name,
                    args: &[],
                }
                .type_error(0, "a bool", &other),
            )),
        }
    }

    fn fn_and_or(&self, call: &Call, is_and: bool, site: &Site<'_>) -> Result<Value, Error> {
        if call.args.len() < 2 {
            return Err(self.fail(
                site,
                call,
                FnError::new(
                    format!(
                        "function `{}` expects at least 2 argument(s), but {} were given",
                        call.name,
                        call.args.len()
                    ),
                    "pass two or more bools",
                ),
            ));
        }
        let mut pending: Option<Unknown> = None;
        for (index, arg) in call.args.iter().enumerate() {
            match self.eval_expr(arg, site)? {
                // Short-circuit: the engine stops at the first deciding argument.
                Value::Bool(flag) if flag != is_and => return Ok(Value::Bool(flag)),
                Value::Bool(_) => {}
                Value::Unknown(unknown) => {
                    pending.get_or_insert(unknown);
                }
                other => {
                    let arguments = Args {
                        name: &call.name,
                        args: &[],
                    };
                    return Err(self.fail(
                        site,
                        call,
                        arguments.type_error(index, "a bool", &other),
                    ));
                }
            }
        }
        Ok(match pending {
            Some(unknown) => Value::Unknown(Unknown {
                expression: plain_call_text(call),
                cause: unknown.cause,
                secret: unknown.secret,
            }),
            None => Value::Bool(is_and),
        })
    }

    fn fn_coalesce(&self, call: &Call, site: &Site<'_>) -> Result<Value, Error> {
        for arg in &call.args {
            match self.eval_expr(arg, site)? {
                Value::Null => continue,
                Value::Unknown(unknown) => {
                    return Ok(Value::Unknown(Unknown {
                        expression: plain_call_text(call),
                        cause: unknown.cause,
                        secret: unknown.secret,
                    }))
                }
                value => return Ok(value),
            }
        }
        Ok(Value::Null)
    }
}

/// Returns true for a property copy: a `copy` array whose entries have `name` and `input`.
fn is_property_copy(node: &Node) -> bool {
    node.as_array().is_some_and(|entries| {
        !entries.is_empty()
            && entries
                .iter()
                .all(|entry| entry.get("name").is_some() && entry.get("input").is_some())
    })
}

/// Functions that build structure keep unknown arguments inside their result.
fn keeps_unknown_arguments(name: &str) -> bool {
    matches!(name, "createarray" | "array")
}

impl Ctx<'_> {
    /// Returns whether `call` or a call nested in its arguments or index accessors is
    /// `parameters('<name>')` of a `securestring` or `secureObject` parameter.
    // NOTE: a secure value that reaches the call through a variable is not detected.
    fn reads_secure_parameter(&self, call: &Call) -> bool {
        let reads_here = call.name.eq_ignore_ascii_case("parameters")
            && self.udf.is_none()
            && matches!(call.args.as_slice(), [Expr::String(name)] if self.is_secure_parameter(name));
        if reads_here {
            return true;
        }
        let nested = |expr: &Expr| match expr {
            Expr::Call(inner) => self.reads_secure_parameter(inner),
            Expr::String(_) | Expr::Int(_) => false,
        };
        call.args.iter().any(nested)
            || call.accessors.iter().any(|accessor| match accessor {
                Accessor::Index(index) => nested(index),
                Accessor::Property(_) => false,
            })
    }

    /// Returns whether the template declares parameter `name` as `securestring` or
    /// `secureObject`, directly or through a `$ref` to `definitions` (languageVersion 2.0).
    fn is_secure_parameter(&self, name: &str) -> bool {
        let Some(declaration) = self
            .tpl
            .root
            .get("parameters")
            .and_then(|parameters| parameters.get(name))
        else {
            return false;
        };
        let definition = declaration
            .get("$ref")
            .and_then(|reference| reference.as_str())
            .and_then(|reference| reference.strip_prefix("#/definitions/"))
            .and_then(|definition| self.tpl.root.get("definitions")?.get(definition));
        [Some(declaration), definition]
            .into_iter()
            .flatten()
            .filter_map(|node| node.get("type").and_then(|kind| kind.as_str()))
            .any(|kind| {
                kind.eq_ignore_ascii_case("securestring")
                    || kind.eq_ignore_ascii_case("secureobject")
            })
    }
}

/// When an argument is unknown, the call's result is unknown too; returns the residual.
fn residual_unknown(call: &Call, name: &str, args: &[Value]) -> Option<Value> {
    if keeps_unknown_arguments(name) {
        return None;
    }
    if name == "createobject" {
        let key_unknown = args.iter().step_by(2).any(Value::is_unknown);
        if !key_unknown {
            return None;
        }
    }
    let first = args.iter().find_map(|arg| match arg {
        Value::Unknown(unknown) => Some(unknown),
        _ => None,
    })?;
    let secret = args
        .iter()
        .any(|arg| matches!(arg, Value::Unknown(unknown) if unknown.secret));
    Some(Value::Unknown(Unknown {
        expression: render_call(call, args),
        cause: first.cause.clone(),
        secret,
    }))
}

fn residual_from(call: &Call, cause: &Unknown) -> Value {
    Value::Unknown(Unknown {
        expression: plain_call_text(call),
        cause: cause.cause.clone(),
        secret: cause.secret,
    })
}

/// Renders the call with its evaluated arguments as expressions, without accessors.
fn render_call(call: &Call, args: &[Value]) -> String {
    let parts: Vec<String> = args.iter().map(to_expression).collect();
    format!("{}({})", call.name, parts.join(", "))
}

/// Renders the call as written, without accessors.
fn plain_call_text(call: &Call) -> String {
    let bare = Call {
        name: call.name.clone(),
        args: call.args.clone(),
        accessors: Vec::new(),
        offset: call.offset,
    };
    Expr::Call(Box::new(bare)).to_string()
}

fn accessor_text(key: &Value) -> String {
    match key {
        Value::String(name)
            if !name.is_empty()
                && name
                    .chars()
                    .all(|ch| ch.is_alphanumeric() || ch == '_' || ch == '$') =>
        {
            format!(".{name}")
        }
        other => format!("[{}]", to_expression(other)),
    }
}

fn property_list(object: &Object) -> String {
    if object.is_empty() {
        return "none".to_owned();
    }
    let mut names: Vec<String> = object
        .iter()
        .take(10)
        .map(|(key, _)| format!("`{key}`"))
        .collect();
    if object.len() > 10 {
        names.push("...".to_owned());
    }
    names.join(", ")
}

fn unknown(expression: String, cause: UnknownCause) -> Value {
    Value::Unknown(Unknown {
        expression,
        cause,
        secret: false,
    })
}

fn unknown_secret(expression: String) -> Value {
    Value::Unknown(Unknown {
        expression,
        cause: UnknownCause::List,
        secret: true,
    })
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= 80 {
        return text.to_owned();
    }
    let head: String = text.chars().take(77).collect();
    format!("{head}...")
}

#[cfg(test)]
mod tests {
    use crate::{evaluate_str, EvalOptions, OfflineProvider, Value};

    /// Evaluates output `o` of a template with a `securestring` parameter `pw` and a resource
    /// `vnet` whose runtime properties are unknown offline.
    fn output(expression: &str) -> Value {
        let template = format!(
            r#"{{
              "parameters": {{
                "pw": {{ "type": "securestring", "defaultValue": "hunter2" }},
                "name": {{ "type": "string", "defaultValue": "plain" }}
              }},
              "resources": [{{ "type": "Microsoft.Network/virtualNetworks",
                               "apiVersion": "2020-06-01", "name": "vnet" }}],
              "outputs": {{ "o": {{ "type": "string", "value": "{expression}" }} }}
            }}"#
        );
        let deployment = evaluate_str(
            "t.json",
            &template,
            &EvalOptions::default(),
            &OfflineProvider,
        )
        .unwrap();
        deployment.outputs["o"].clone()
    }

    fn secret(value: &Value) -> Option<bool> {
        match value {
            Value::Unknown(unknown) => Some(unknown.secret),
            _ => None,
        }
    }

    /// Found by a corpus template (a SQL connection string built with concat() from
    /// reference().fullyQualifiedDomainName and a securestring password): the residual text
    /// contained the password while the unknown was not marked secret.
    #[test]
    fn residual_with_secure_parameter_is_secret() {
        let value = output("[concat(reference('vnet').x, ';Password=', parameters('pw'))]");
        assert_eq!(secret(&value), Some(true));
    }

    #[test]
    fn residual_with_nested_secure_parameter_is_secret() {
        let value = output("[format('{0}{1}', reference('vnet').x, toUpper(parameters('PW')))]");
        assert_eq!(secret(&value), Some(true));
    }

    #[test]
    fn residual_with_plain_parameter_is_not_secret() {
        let value = output("[concat(reference('vnet').x, parameters('name'))]");
        assert_eq!(secret(&value), Some(false));
    }
}
