//! Lambda functions: `map`, `filter`, `reduce`, `sort`, `toObject`, `groupBy`, `mapValues`
//! and `lambdaVariables`.

use super::*;

impl Ctx<'_> {
    pub(super) fn fn_lambda_variable(&self, arguments: &Args<'_>) -> Result<Value, FnError> {
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

    pub(super) fn fn_lambda(
        &self,
        call: &Call,
        name: &str,
        site: &Site<'_>,
    ) -> Result<Value, Error> {
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
