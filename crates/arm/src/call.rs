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
use crate::resources::{build_resource_id, copy_count, scope_prefix, Run, MAX_COPY_COUNT};
use crate::source::{path_index, path_key, Member, Node, NodeKind, StringLit};
use crate::value::{Object, Unknown, UnknownCause, Value};

/// Nesting limit for user-defined function calls, so that recursion ends in an error.
const MAX_CALL_DEPTH: usize = 64;

const FUNCTIONS_HELP: &str = "see https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions for the function list";

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
                    object.insert(name, value);
                }
                continue;
            }
            let key = self.eval_key(member, path)?;
            let value = self.eval_node(&member.value, &member_path)?;
            object.insert(key, value);
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
        if let Some(residual) = residual_unknown(call, name, &args) {
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

    fn fn_lambda_variable(&self, arguments: &Args<'_>) -> Result<Value, FnError> {
        arguments.exactly(1)?;
        let name = arguments.str(0)?;
        self.lambdas
            .iter()
            .rev()
            .find(|(variable, _)| variable.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
            .ok_or_else(|| {
                FnError::new(
                    format!("lambda variable `{name}` is not defined here"),
                    "use a name declared by the enclosing `lambda(...)`",
                )
            })
    }

    fn fn_lambda(&self, call: &Call, name: &str, site: &Site<'_>) -> Result<Value, Error> {
        let (min, max) = match name {
            "reduce" => (3, 3),
            "toobject" | "groupby" => (2, 3),
            _ => (2, 2),
        };
        // Only the argument count matters here; lambdas are not values.
        let placeholders = vec![Value::Null; call.args.len()];
        let count_check = Args {
            name: &call.name,
            args: &placeholders,
        };
        count_check
            .between(min, max)
            .map_err(|error| self.fail(site, call, error))?;

        let input = self.eval_expr(&call.args[0], site)?;
        if let Value::Unknown(unknown) = &input {
            return Ok(Value::Unknown(Unknown {
                expression: plain_call_text(call),
                cause: unknown.cause.clone(),
                secret: unknown.secret,
            }));
        }
        let lambda_at = |position: usize| -> Result<Lambda<'_>, Error> {
            call.args
                .get(position)
                .and_then(lambda_parts)
                .ok_or_else(|| {
                    self.fail(
                        site,
                        call,
                        FnError::new(
                            format!(
                                "argument {} of `{}` must be a `lambda(...)`",
                                position + 1,
                                call.name
                            ),
                            "write `lambda('x', <expression using lambdaVariables('x')>)`",
                        ),
                    )
                })
        };
        let wrong_input = |expected: &str| {
            self.fail(
                site,
                call,
                Args {
                    name: &call.name,
                    args: &[],
                }
                .type_error(0, expected, &input),
            )
        };

        let result =
            match name {
                "map" | "filter" | "sort" | "reduce" | "toobject" | "groupby" => {
                    let Value::Array(items) = &input else {
                        return Err(wrong_input("an array"));
                    };
                    match name {
                        "map" => {
                            let lambda = lambda_at(1)?;
                            let mut out = Vec::new();
                            for (index, item) in items.iter().enumerate() {
                                out.push(self.apply(
                                    &lambda,
                                    vec![item.clone(), Value::Int(index as i64)],
                                    site,
                                )?);
                            }
                            Value::Array(out)
                        }
                        "filter" => {
                            let lambda = lambda_at(1)?;
                            let mut out = Vec::new();
                            for (index, item) in items.iter().enumerate() {
                                match self.apply(
                                    &lambda,
                                    vec![item.clone(), Value::Int(index as i64)],
                                    site,
                                )? {
                                    Value::Bool(true) => out.push(item.clone()),
                                    Value::Bool(false) => {}
                                    Value::Unknown(unknown) => {
                                        return Ok(residual_from(call, &unknown))
                                    }
                                    other => {
                                        return Err(
                                            self.lambda_result_error(site, call, "a bool", &other)
                                        )
                                    }
                                }
                            }
                            Value::Array(out)
                        }
                        "reduce" => {
                            let initial = self.eval_expr(&call.args[1], site)?;
                            let lambda = lambda_at(2)?;
                            let mut accumulator = initial;
                            for (index, item) in items.iter().enumerate() {
                                accumulator = self.apply(
                                    &lambda,
                                    vec![accumulator, item.clone(), Value::Int(index as i64)],
                                    site,
                                )?;
                            }
                            accumulator
                        }
                        "sort" => {
                            let lambda = lambda_at(1)?;
                            // Stable insertion sort; the predicate returns true when `a` goes first.
                            let mut sorted: Vec<Value> = Vec::with_capacity(items.len());
                            for item in items {
                                let mut position = sorted.len();
                                while position > 0 {
                                    let before = self.apply(
                                        &lambda,
                                        vec![item.clone(), sorted[position - 1].clone()],
                                        site,
                                    )?;
                                    match before {
                                        Value::Bool(true) => position -= 1,
                                        Value::Bool(false) => break,
                                        Value::Unknown(unknown) => {
                                            return Ok(residual_from(call, &unknown))
                                        }
                                        other => {
                                            return Err(self
                                                .lambda_result_error(site, call, "a bool", &other))
                                        }
                                    }
                                }
                                sorted.insert(position, item.clone());
                            }
                            Value::Array(sorted)
                        }
                        "toobject" => {
                            let key_lambda = lambda_at(1)?;
                            let value_lambda = if call.args.len() == 3 {
                                Some(lambda_at(2)?)
                            } else {
                                None
                            };
                            let mut object = Object::new();
                            for item in items {
                                let key = match self.apply(&key_lambda, vec![item.clone()], site)? {
                                    Value::String(key) => key,
                                    Value::Unknown(unknown) => {
                                        return Ok(residual_from(call, &unknown))
                                    }
                                    other => {
                                        return Err(self
                                            .lambda_result_error(site, call, "a string", &other))
                                    }
                                };
                                let value = match &value_lambda {
                                    Some(lambda) => self.apply(lambda, vec![item.clone()], site)?,
                                    None => item.clone(),
                                };
                                object.insert(key, value);
                            }
                            Value::Object(object)
                        }
                        _ => {
                            let key_lambda = lambda_at(1)?;
                            let value_lambda = if call.args.len() == 3 {
                                Some(lambda_at(2)?)
                            } else {
                                None
                            };
                            let mut groups: indexmap::IndexMap<String, Vec<Value>> =
                                indexmap::IndexMap::new();
                            for item in items {
                                let key = match self.apply(&key_lambda, vec![item.clone()], site)? {
                                    Value::String(key) => key,
                                    Value::Unknown(unknown) => {
                                        return Ok(residual_from(call, &unknown))
                                    }
                                    other => crate::format::to_text(&other),
                                };
                                let value = match &value_lambda {
                                    Some(lambda) => self.apply(lambda, vec![item.clone()], site)?,
                                    None => item.clone(),
                                };
                                groups.entry(key).or_default().push(value);
                            }
                            let mut object = Object::new();
                            for (key, values) in groups {
                                object.insert(key, Value::Array(values));
                            }
                            Value::Object(object)
                        }
                    }
                }
                _ => {
                    let Value::Object(object) = &input else {
                        return Err(wrong_input("an object"));
                    };
                    let lambda = lambda_at(1)?;
                    let mut out = Object::new();
                    for (key, value) in object.iter() {
                        out.insert(key.clone(), self.apply(&lambda, vec![value.clone()], site)?);
                    }
                    Value::Object(out)
                }
            };
        Ok(result)
    }

    fn lambda_result_error(
        &self,
        site: &Site<'_>,
        call: &Call,
        expected: &str,
        found: &Value,
    ) -> Error {
        self.fail(
            site,
            call,
            FnError::new(
                format!(
                    "the lambda of `{}` must return {expected}, found {}",
                    call.name,
                    found.type_name()
                ),
                format!("make the lambda return {expected}"),
            ),
        )
    }

    fn apply(
        &self,
        lambda: &Lambda<'_>,
        values: Vec<Value>,
        site: &Site<'_>,
    ) -> Result<Value, Error> {
        let mut inner = self.clone();
        for (parameter, value) in lambda.parameters.iter().zip(values) {
            inner.lambdas.push((parameter.clone(), value));
        }
        inner.eval_expr(lambda.body, site)
    }

    fn fn_copy_index(&self, arguments: &Args<'_>) -> Result<Value, FnError> {
        arguments.between(0, 2)?;
        let (loop_name, offset) = match arguments.args {
            [] => (None, 0),
            [Value::Int(offset)] => (None, *offset),
            [Value::String(name)] => (Some(name.as_str()), 0),
            [Value::String(name), Value::Int(offset)] => (Some(name.as_str()), *offset),
            [first, ..] if !matches!(first, Value::String(_) | Value::Int(_)) => {
                return Err(arguments.type_error(0, "a loop name or an offset", first))
            }
            [_, second] => return Err(arguments.type_error(1, "an int offset", second)),
            _ => return Err(arguments.type_error(0, "a loop name or an offset", &Value::Null)),
        };
        let frame = match loop_name {
            Some(name) => {
                let name = name.to_ascii_lowercase();
                self.copy
                    .iter()
                    .rev()
                    .find(|frame| frame.name.as_deref() == Some(name.as_str()))
            }
            None => self
                .copy
                .iter()
                .rev()
                .find(|frame| frame.unnamed_target)
                .or_else(|| self.copy.last()),
        };
        match frame {
            Some(frame) => frame
                .index
                .checked_add(offset)
                .map(Value::Int)
                .ok_or_else(|| {
                    FnError::new("`copyIndex` offset overflows", "use a smaller offset")
                }),
            None => Err(FnError::new(
                match loop_name {
                    Some(name) => {
                        format!("there is no copy loop named `{name}` around this `copyIndex`")
                    }
                    None => "`copyIndex()` is only valid inside a copy loop".to_owned(),
                },
                "use `copyIndex()` inside a resource, property, variable or output `copy`",
            )),
        }
    }

    fn resource_group(&self) -> Value {
        let scope = &self.tpl.scope;
        let mut properties = Object::new();
        properties.insert("provisioningState", Value::String("Succeeded".to_owned()));
        let mut group = Object::new();
        group.insert(
            "id",
            Value::String(format!(
                "/subscriptions/{}/resourceGroups/{}",
                scope.subscription_id, scope.resource_group
            )),
        );
        group.insert("name", Value::String(scope.resource_group.clone()));
        group.insert(
            "type",
            Value::String("Microsoft.Resources/resourceGroups".to_owned()),
        );
        group.insert("location", Value::String(scope.location.clone()));
        group.insert("properties", Value::Object(properties));
        Value::Object(group)
    }

    fn subscription(&self) -> Value {
        let scope = &self.tpl.scope;
        let mut subscription = Object::new();
        subscription.insert(
            "id",
            Value::String(format!("/subscriptions/{}", scope.subscription_id)),
        );
        subscription.insert(
            "subscriptionId",
            Value::String(scope.subscription_id.clone()),
        );
        subscription.insert("tenantId", Value::String(scope.tenant_id.clone()));
        subscription.insert(
            "displayName",
            unknown(
                "subscription().displayName".to_owned(),
                UnknownCause::DeploymentMetadata,
            ),
        );
        Value::Object(subscription)
    }

    fn tenant(&self) -> Value {
        let scope = &self.tpl.scope;
        let mut tenant = Object::new();
        tenant.insert("id", Value::String(format!("/tenants/{}", scope.tenant_id)));
        tenant.insert("tenantId", Value::String(scope.tenant_id.clone()));
        tenant.insert(
            "countryCode",
            unknown(
                "tenant().countryCode".to_owned(),
                UnknownCause::DeploymentMetadata,
            ),
        );
        tenant.insert(
            "displayName",
            unknown(
                "tenant().displayName".to_owned(),
                UnknownCause::DeploymentMetadata,
            ),
        );
        Value::Object(tenant)
    }

    fn deployment(&self) -> Value {
        self.tpl
            .deployment_value
            .get_or_init(|| {
                let mut template = Object::new();
                for key in ["$schema", "contentVersion", "languageVersion", "metadata"] {
                    if let Some(node) = self.tpl.root.get(key) {
                        template.insert(key, literal_value(node));
                    }
                }
                let mut properties = Object::new();
                // A template deployed from a URI has `templateLink`; offline the origin is
                // not known, so the link stays unknown rather than missing.
                properties.insert(
                    "templateLink",
                    unknown(
                        "deployment().properties.templateLink".to_owned(),
                        UnknownCause::DeploymentMetadata,
                    ),
                );
                properties.insert("template", Value::Object(template));
                properties.insert(
                    "templateHash",
                    unknown(
                        "deployment().properties.templateHash".to_owned(),
                        UnknownCause::DeploymentMetadata,
                    ),
                );
                properties.insert("parameters", Value::Object(Object::new()));
                properties.insert("mode", Value::String("Incremental".to_owned()));
                properties.insert("provisioningState", Value::String("Accepted".to_owned()));
                let mut deployment = Object::new();
                deployment.insert(
                    "name",
                    Value::String(self.tpl.scope.deployment_name.clone()),
                );
                deployment.insert("properties", Value::Object(properties));
                if self.tpl.level != crate::eval::ScopeLevel::ResourceGroup {
                    deployment.insert("location", Value::String(self.tpl.scope.location.clone()));
                }
                Value::Object(deployment)
            })
            .clone()
    }

    fn fn_resource_id(&self, name: &str, arguments: &Args<'_>) -> Result<Value, FnError> {
        let strings: Vec<&str> = (0..arguments.args.len())
            .map(|index| arguments.str(index))
            .collect::<Result<_, _>>()?;
        let scope = &self.tpl.scope;
        let (prefix, rest) = match name {
            "extensionresourceid" => {
                arguments.between(3, usize::MAX)?;
                (strings[0].trim_end_matches('/').to_owned(), &strings[1..])
            }
            "tenantresourceid" => (String::new(), &strings[..]),
            _ => {
                let type_position = strings
                    .iter()
                    .position(|text| text.contains('/'))
                    .ok_or_else(|| {
                        FnError::new(
                            format!(
                                "`{}` needs a resource type such as `Microsoft.Web/sites`",
                                arguments.name
                            ),
                            "pass the resource type, then one name per type segment",
                        )
                    })?;
                let leading = &strings[..type_position];
                let prefix = match (name, leading) {
                    ("resourceid", []) => scope_prefix(self.tpl, None, None),
                    ("resourceid", [group]) => scope_prefix(self.tpl, None, Some(group)),
                    ("resourceid", [subscription, group]) => {
                        scope_prefix(self.tpl, Some(subscription), Some(group))
                    }
                    ("subscriptionresourceid", []) => {
                        format!("/subscriptions/{}", scope.subscription_id)
                    }
                    ("subscriptionresourceid", [subscription]) => {
                        format!("/subscriptions/{subscription}")
                    }
                    // NOTE: the root management group's name equals the tenant id; other
                    // management groups must be named explicitly.
                    ("managementgroupresourceid", []) => format!(
                        "/providers/Microsoft.Management/managementGroups/{}",
                        scope.tenant_id
                    ),
                    ("managementgroupresourceid", [group]) => {
                        format!("/providers/Microsoft.Management/managementGroups/{group}")
                    }
                    _ => return Err(FnError::new(
                        format!(
                            "`{}` got too many arguments before the resource type",
                            arguments.name
                        ),
                        "pass at most the subscription id and resource group name before the type",
                    )),
                };
                (prefix, &strings[type_position..])
            }
        };
        let Some((resource_type, names)) = rest.split_first() else {
            return Err(FnError::new(
                format!("`{}` needs a resource type and names", arguments.name),
                "pass the resource type, then one name per type segment",
            ));
        };
        let type_segments = resource_type
            .split('/')
            .filter(|segment| !segment.is_empty())
            .count();
        let name_segments: Vec<&str> = names
            .iter()
            .flat_map(|name| name.split('/'))
            .filter(|segment| !segment.is_empty())
            .collect();
        if type_segments < 2 || name_segments.len() != type_segments - 1 {
            return Err(FnError::new(
                format!(
                    "resource type `{resource_type}` needs {} name(s), but {} were given",
                    type_segments.saturating_sub(1),
                    name_segments.len()
                ),
                "pass one name for each type segment after the namespace",
            ));
        }
        Ok(Value::String(build_resource_id(
            &prefix,
            resource_type,
            &name_segments.join("/"),
        )))
    }

    fn runtime_check(&self, call: &Call, site: &Site<'_>) -> Result<(), Error> {
        match self.runtime_forbidden {
            Some(place) => Err(self.fail(
                site,
                call,
                FnError::new(
                    format!("`{}` is not allowed in {place}", call.name),
                    "use `reference()` and `list*()` only in resource properties and outputs",
                ),
            )),
            None => Ok(()),
        }
    }

    fn fn_reference(
        &self,
        call: &Call,
        args: &[Value],
        site: &Site<'_>,
    ) -> Result<(Value, Option<Lenient>), Error> {
        self.runtime_check(call, site)?;
        let expression = render_call(call, args);
        let lenient = Some(Lenient {
            cause: UnknownCause::Reference,
            secret: false,
            head: expression.clone(),
        });
        if let Some(residual) = residual_unknown(call, "reference", args) {
            return Ok((residual, lenient));
        }
        let arguments = Args {
            name: &call.name,
            args,
        };
        arguments
            .between(1, 3)
            .map_err(|e| self.fail(site, call, e))?;
        let target = arguments.str(0).map_err(|e| self.fail(site, call, e))?;
        let api_version = args.get(1).and_then(Value::as_str);
        let full = args
            .get(2)
            .and_then(Value::as_str)
            .is_some_and(|mode| mode.eq_ignore_ascii_case("full"));

        if let Some(index) = self.declared_target(target, call, site)? {
            let run = self
                .run
                .map(|run| run.reference_value(index, api_version, full, &expression));
            return Ok((run.unwrap_or(Value::Null), lenient));
        }
        let request = ReferenceRequest {
            id: target,
            api_version,
            full,
            declared: None,
        };
        let value = self
            .engine
            .provider
            .reference(&request)
            .unwrap_or_else(|| unknown(expression, UnknownCause::Reference));
        Ok((value, lenient))
    }

    /// Finds and evaluates the declared resource a `reference()`/`list*()` names, and records
    /// the implicit dependency.
    fn declared_target(
        &self,
        target: &str,
        call: &Call,
        site: &Site<'_>,
    ) -> Result<Option<usize>, Error> {
        let Some(run) = self.run else {
            return Ok(None);
        };
        let Some(index) = run.find_target(target) else {
            return Ok(None);
        };
        if self.current == Some(index) {
            return Err(site.error_at(
                ErrorKind::Cycle,
                Some(call.offset),
                format!("resource `{target}` refers to itself with `{}`", call.name),
                "a resource cannot read its own runtime state; remove the call".to_owned(),
            ));
        }
        run.evaluate(index, Some(site))?;
        if let Some(current) = self.current {
            run.record_implicit(current, index);
        }
        Ok(Some(index))
    }

    fn fn_references(&self, call: &Call, args: &[Value], site: &Site<'_>) -> Result<Value, Error> {
        self.runtime_check(call, site)?;
        let arguments = Args {
            name: &call.name,
            args,
        };
        arguments
            .between(1, 2)
            .map_err(|e| self.fail(site, call, e))?;
        let symbolic = arguments.str(0).map_err(|e| self.fail(site, call, e))?;
        let full = args
            .get(1)
            .and_then(Value::as_str)
            .is_some_and(|mode| mode.eq_ignore_ascii_case("full"));
        let Some(run) = self.run else {
            return Ok(unknown(render_call(call, args), UnknownCause::Reference));
        };
        let mut values = Vec::new();
        for index in run.instances(symbolic) {
            run.evaluate(index, Some(site))?;
            if let Some(current) = self.current {
                run.record_implicit(current, index);
            }
            if run.is_omitted(index) {
                continue;
            }
            let expression = format!("reference('{}')", run.id_of(index).unwrap_or(symbolic));
            values.push(run.reference_value(index, None, full, &expression));
        }
        Ok(Value::Array(values))
    }

    fn fn_list(
        &self,
        call: &Call,
        args: &[Value],
        site: &Site<'_>,
    ) -> Result<(Value, Option<Lenient>), Error> {
        self.runtime_check(call, site)?;
        let expression = render_call(call, args);
        let lenient = Some(Lenient {
            cause: UnknownCause::List,
            secret: true,
            head: expression.clone(),
        });
        if args.iter().take(2).any(Value::is_unknown) {
            return Ok((unknown_secret(expression), lenient));
        }
        let arguments = Args {
            name: &call.name,
            args,
        };
        arguments
            .between(2, 3)
            .map_err(|e| self.fail(site, call, e))?;
        let id = arguments.str(0).map_err(|e| self.fail(site, call, e))?;
        let api_version = arguments.str(1).map_err(|e| self.fail(site, call, e))?;
        let body = args.get(2);

        let declared = self.declared_target(id, call, site)?;
        let provider = self.engine.provider;
        let answer = match (declared, self.run) {
            (Some(index), Some(run)) => run
                .with_resource(index, |resource| {
                    provider.list(&ListRequest {
                        function: &call.name,
                        id: &resource.id,
                        api_version,
                        body,
                        declared: Some(resource),
                    })
                })
                .flatten(),
            _ => provider.list(&ListRequest {
                function: &call.name,
                id,
                api_version,
                body,
                declared: None,
            }),
        };
        Ok((
            answer.unwrap_or_else(|| unknown_secret(expression)),
            lenient,
        ))
    }

    fn call_user_function(
        &self,
        call: &Call,
        args: Vec<Value>,
        site: &Site<'_>,
    ) -> Result<Value, Error> {
        if let Some(residual) = residual_unknown(call, "", &args) {
            return Ok(residual);
        }
        let not_found = || {
            self.fail(
                site,
                call,
                FnError::new(
                    format!("unknown function `{}`", call.name),
                    "declare it in the template's `functions` section or fix the name",
                ),
            )
        };
        let Some((namespace, member)) = call.name.split_once('.') else {
            return Err(not_found());
        };
        let (definition, path) = self
            .find_user_function(namespace, member)
            .ok_or_else(not_found)?;
        if self.depth >= MAX_CALL_DEPTH {
            return Err(self.fail(
                site,
                call,
                FnError::new(
                    format!("user-defined function calls nest deeper than {MAX_CALL_DEPTH} levels at `{}`", call.name),
                    "check the function for unbounded recursion",
                ),
            ));
        }

        let declared: Vec<String> = definition
            .get("parameters")
            .and_then(|parameters| parameters.as_array())
            .unwrap_or(&[])
            .iter()
            .filter_map(|parameter| parameter.get("name")?.as_str().map(str::to_owned))
            .collect();
        if declared.len() != args.len() {
            return Err(self.fail(
                site,
                call,
                FnError::new(
                    format!(
                        "function `{}` expects {} argument(s), but {} were given",
                        call.name,
                        declared.len(),
                        args.len()
                    ),
                    format!("check the call of `{}`", call.name),
                ),
            ));
        }
        let bound: HashMap<String, Value> = declared
            .iter()
            .map(|name| name.to_ascii_lowercase())
            .zip(args)
            .collect();
        let Some(output) = definition
            .get("output")
            .and_then(|output| output.get("value"))
        else {
            return Ok(Value::Null);
        };
        let output_path = path_key(&path_key(&path, "output"), "value");
        let body_ctx = Ctx {
            engine: self.engine,
            tpl: self.tpl,
            run: None,
            copy: Vec::new(),
            lambdas: Vec::new(),
            udf: Some(Rc::new(bound)),
            current: None,
            runtime_forbidden: Some("user-defined functions"),
            depth: self.depth + 1,
        };
        body_ctx.eval_node(output, &output_path)
    }

    fn find_user_function(&self, namespace: &str, member: &str) -> Option<(Arc<Node>, String)> {
        let section = self.tpl.root.member("functions")?;
        let section_path = path_key(&self.tpl.path, &section.key.text);
        for (index, entry) in section.value.as_array()?.iter().enumerate() {
            let matches_namespace = entry
                .get("namespace")
                .and_then(|name| name.as_str())
                .is_some_and(|name| name.eq_ignore_ascii_case(namespace));
            if !matches_namespace {
                continue;
            }
            let members = entry.member("members")?;
            if let Some(found) = members.value.member(member) {
                let path = path_key(
                    &path_key(&path_index(&section_path, index), "members"),
                    &found.key.text,
                );
                return Some((Arc::clone(&found.value), path));
            }
        }
        None
    }
}

/// Marks the result of `reference()`/`list*()`: a property the value lacks is a runtime
/// property, so reading it yields an unknown value instead of an error.
struct Lenient {
    cause: UnknownCause,
    secret: bool,
    /// The call rendered with evaluated arguments.
    head: String,
}

struct Lambda<'e> {
    parameters: Vec<String>,
    body: &'e Expr,
}

fn lambda_parts(expr: &Expr) -> Option<Lambda<'_>> {
    let Expr::Call(call) = expr else {
        return None;
    };
    if !call.name.eq_ignore_ascii_case("lambda") || !call.accessors.is_empty() {
        return None;
    }
    let (body, parameters) = call.args.split_last()?;
    let parameters = parameters
        .iter()
        .map(|parameter| match parameter {
            Expr::String(name) => Some(name.clone()),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Lambda { parameters, body })
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

/// `environment()` for the public Azure cloud
/// (<https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions-deployment#environment>).
fn environment() -> Value {
    let text = |value: &str| Value::String(value.to_owned());
    let mut authentication = Object::new();
    authentication.insert("loginEndpoint", text("https://login.microsoftonline.com/"));
    authentication.insert(
        "audiences",
        Value::Array(vec![
            text("https://management.core.windows.net/"),
            text("https://management.azure.com/"),
        ]),
    );
    authentication.insert("tenant", text("common"));
    authentication.insert("identityProvider", text("AAD"));
    let mut suffixes = Object::new();
    for (key, value) in [
        ("acrLoginServer", ".azurecr.io"),
        (
            "azureDatalakeAnalyticsCatalogAndJob",
            "azuredatalakeanalytics.net",
        ),
        ("azureDatalakeStoreFileSystem", "azuredatalakestore.net"),
        ("azureFrontDoorEndpointSuffix", "azurefd.net"),
        ("keyvaultDns", ".vault.azure.net"),
        ("sqlServerHostname", ".database.windows.net"),
        ("storage", "core.windows.net"),
    ] {
        suffixes.insert(key, text(value));
    }
    let mut environment = Object::new();
    for (key, value) in [
        ("name", "AzureCloud"),
        ("gallery", "https://gallery.azure.com/"),
        ("graph", "https://graph.windows.net/"),
        ("portal", "https://portal.azure.com"),
        ("graphAudience", "https://graph.windows.net/"),
        ("activeDirectoryDataLake", "https://datalake.azure.net/"),
        ("batch", "https://batch.core.windows.net/"),
        ("media", "https://rest.media.azure.net"),
        ("sqlManagement", "https://management.core.windows.net:8443/"),
        (
            "vmImageAliasDoc",
            "https://raw.githubusercontent.com/Azure/azure-rest-api-specs/master/arm-compute/quickstart-templates/aliases.json",
        ),
        ("resourceManager", "https://management.azure.com/"),
    ] {
        environment.insert(key, text(value));
    }
    environment.insert("authentication", Value::Object(authentication));
    environment.insert("suffixes", Value::Object(suffixes));
    Value::Object(environment)
}
