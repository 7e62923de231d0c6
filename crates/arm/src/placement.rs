//! The check of where `utcNow()` and `newGuid()` are written.
//!
//! Microsoft Learn writes of both functions (template-functions-date and
//! template-functions-string): "You can only use this function within an expression for the
//! default value of a parameter. Using this function anywhere else in a template returns an
//! error." The evaluator rejects a call it evaluates elsewhere. This scan reads the whole file
//! before evaluation, so it also finds calls that offline evaluation never reaches: in a
//! resource whose `condition` is false, in the branch `if()` does not take, in an output or
//! a user-defined function.

use crate::error::{Error, ErrorKind};
use crate::eval::node_site;
use crate::expr::{classify, parse, Accessor, Call, Expr, StringForm};
use crate::source::{path_index, path_key, Node, NodeKind, Source};

/// Returns an error for the first `utcNow()` or `newGuid()` call outside a parameter's
/// `defaultValue` in the template file `root`, including the inline templates of nested
/// deployments. An expression that does not parse is left to the evaluator, which reports it
/// with its own message when it reads it.
pub(crate) fn check_nondeterministic_calls(source: &Source, root: &Node) -> Result<(), Error> {
    // (node, JSON path, whether the node is a template's root, whether calls are allowed).
    // Children are pushed in reverse, so the stack yields them in file order and the first
    // call in the file is the one reported.
    let mut pending = vec![(root, "$".to_owned(), true, false)];
    while let Some((node, path, template_root, allowed)) = pending.pop() {
        match &node.kind {
            NodeKind::Object(members) => {
                for member in members.iter().rev() {
                    let key = &member.key.text;
                    let child_path = path_key(&path, key);
                    if template_root && key.eq_ignore_ascii_case("parameters") {
                        push_parameters(&mut pending, &member.value, &child_path);
                        continue;
                    }
                    let child_is_template =
                        key.eq_ignore_ascii_case("template") && member.value.as_object().is_some();
                    pending.push((&member.value, child_path, child_is_template, allowed));
                }
            }
            NodeKind::Array(items) => {
                for (index, item) in items.iter().enumerate().rev() {
                    pending.push((item, path_index(&path, index), false, allowed));
                }
            }
            NodeKind::String(literal) if !allowed => {
                let StringForm::Expression(text) = classify(&literal.text) else {
                    continue;
                };
                let Ok(expression) = parse(text) else {
                    continue;
                };
                if let Some(call) = find_nondeterministic(&expression) {
                    let mut site = node_site(source, node, &path);
                    // Skip the opening quote and `[` when offsets map onto the file.
                    site.expression_start = literal.verbatim.then_some(node.start + 2);
                    return Err(site.error_at(
                        ErrorKind::Function,
                        Some(call.offset),
                        format!(
                            "`{}` can only be used in a parameter's `defaultValue`",
                            call.name
                        ),
                        "declare a parameter whose `defaultValue` calls it, and read that parameter"
                            .to_owned(),
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Queues the members of a template's `parameters` section: each parameter's `defaultValue`
/// may call the functions, the rest of its declaration may not.
fn push_parameters<'n>(
    pending: &mut Vec<(&'n Node, String, bool, bool)>,
    parameters: &'n Node,
    path: &str,
) {
    let Some(declarations) = parameters.as_object() else {
        pending.push((parameters, path.to_owned(), false, false));
        return;
    };
    for declaration in declarations.iter().rev() {
        let declaration_path = path_key(path, &declaration.key.text);
        let Some(fields) = declaration.value.as_object() else {
            pending.push((&declaration.value, declaration_path, false, false));
            continue;
        };
        for field in fields.iter().rev() {
            let allowed = field.key.text.eq_ignore_ascii_case("defaultValue");
            let field_path = path_key(&declaration_path, &field.key.text);
            pending.push((&field.value, field_path, false, allowed));
        }
    }
}

/// Returns the first call of `utcNow` or `newGuid` in `expression`, in its arguments and its
/// index accessors included. A namespaced name (`ns.utcNow`) is a user-defined function.
fn find_nondeterministic(expression: &Expr) -> Option<&Call> {
    let Expr::Call(call) = expression else {
        return None;
    };
    if call.name.eq_ignore_ascii_case("utcNow") || call.name.eq_ignore_ascii_case("newGuid") {
        return Some(call);
    }
    let in_accessors = call.accessors.iter().filter_map(|accessor| match accessor {
        Accessor::Index(index) => Some(index),
        Accessor::Property(_) => None,
    });
    call.args
        .iter()
        .chain(in_accessors)
        .find_map(find_nondeterministic)
}
