//! User-defined functions from the template's `functions` section.

use super::*;

impl Ctx<'_> {
    pub(super) fn call_user_function(
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

    pub(super) fn find_user_function(
        &self,
        namespace: &str,
        member: &str,
    ) -> Option<(Arc<Node>, String)> {
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
