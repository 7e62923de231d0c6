//! Runtime functions: `reference`, `references` and `list*`.

use super::*;

impl<'a> Ctx<'a> {
    pub(super) fn runtime_check(&self, call: &Call, site: &Site<'_>) -> Result<(), Error> {
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

    pub(super) fn fn_reference(
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

        if let Some((run, index)) = self.declared_target(target, call, site)? {
            let value = run.reference_value(index, api_version, full, &expression);
            return Ok((value, lenient));
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
    /// the implicit dependency. A nested template can also read resources of the templates
    /// that deploy it, as [`Ctx::enclosing_target`] describes.
    pub(super) fn declared_target(
        &self,
        target: &str,
        call: &Call,
        site: &Site<'_>,
    ) -> Result<Option<(&'a Run<'a>, usize)>, Error> {
        let Some(run) = self.run else {
            return Ok(None);
        };
        let Some(index) = run.find_target(target) else {
            return self.enclosing_target(run, target, site);
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
        Ok(Some((run, index)))
    }

    /// Finds a resource that a template deploying `run` declares.
    ///
    /// An outer-scope nested template evaluates in its parent's scope and reads the parent's
    /// resources by any name, and the deployment resource gets the implicit dependency.
    ///
    /// A linked or inner-scope nested template has a scope of its own, and Azure reads a
    /// resource "that isn't deployed in the same template" by its resource ID from the
    /// resources that exist when the call runs ("Resource functions for ARM templates",
    /// Microsoft Learn). A resource of an enclosing template exists by then only when the
    /// deployment depends on it, so only a full ID of such a resource is resolved here. Any
    /// other target stays with the provider, which usually leaves it unknown.
    fn enclosing_target(
        &self,
        run: &'a Run<'a>,
        target: &str,
        site: &Site<'_>,
    ) -> Result<Option<(&'a Run<'a>, usize)>, Error> {
        let by_id = target.starts_with('/');
        let mut in_scope = true;
        let mut deployer = run.deployer.as_ref();
        while let Some(current) = deployer {
            in_scope &= current.outer_scope;
            let Some(index) = current.run.find_target(target) else {
                deployer = current.run.deployer.as_ref();
                continue;
            };
            if in_scope {
                current.run.evaluate(index, Some(site))?;
                current.run.record_implicit(current.deployment, index);
                return Ok(Some((current.run, index)));
            }
            if by_id && current.run.deploys_before(current, index, site)? {
                current.run.evaluate(index, Some(site))?;
                return Ok(Some((current.run, index)));
            }
            tracing::debug!(
                target,
                "`reference()`/`list*()` names a resource of an enclosing template that the deployment does not depend on, so it is left to the provider"
            );
            return Ok(None);
        }
        Ok(None)
    }

    pub(super) fn fn_references(
        &self,
        call: &Call,
        args: &[Value],
        site: &Site<'_>,
    ) -> Result<Value, Error> {
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

    pub(super) fn fn_list(
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
        let answer = match declared {
            Some((run, index)) => run
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
}

/// Marks the result of `reference()`/`list*()`: a property the value lacks is a runtime
/// property, so reading it yields an unknown value instead of an error.
pub(super) struct Lenient {
    pub(super) cause: UnknownCause,
    pub(super) secret: bool,
    /// The call rendered with evaluated arguments.
    pub(super) head: String,
}
