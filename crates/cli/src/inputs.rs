//! Turns the input arguments into a template path (an ARM template or a Terraform plan in
//! JSON form), parameters, bindings and a scope.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{miette, IntoDiagnostic, Result, WrapErr};
use subnetlock_access::{EngineOptions, ServiceTagTable};
use subnetlock_arm::{Artifacts, EvalOptions, Parameters, Scope, Value};
use subnetlock_emulator::{Bindings, BINDING_FILE_NAME};
use subnetlock_model::{build_topology, KeyMode, ScaleUnit, SimulatedProvider, Topology};

use crate::args::InputArgs;

/// Template name `up` and `check` look for in a directory without a binding file.
const DEFAULT_TEMPLATE: &str = "azuredeploy.json";

/// The two input formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputFormat {
    ArmTemplate,
    /// `terraform show -json <planfile>` output.
    TerraformPlan,
}

/// Everything a command needs to evaluate a template.
pub struct Inputs {
    /// The ARM template or the Terraform plan file.
    pub template: PathBuf,
    pub format: InputFormat,
    pub parameters: Option<PathBuf>,
    pub parameter_values: Vec<(String, Value)>,
    pub bindings: Bindings,
    pub scope: Scope,
    pub engine: EngineOptions,
    /// The deployment already in place, for redeploy checks.
    pub previous: Option<PathBuf>,
    pub scale_unit: ScaleUnit,
    /// The service-tag file behind `engine.service_tags`, for messages.
    pub service_tags_file: Option<PathBuf>,
}

/// Resolves the input arguments: a directory means its binding file (or its azuredeploy.json);
/// a file means that template, with a `subnetlock.json` beside it when there is one.
pub fn resolve_inputs(args: &InputArgs) -> Result<Inputs> {
    let input = &args.input;
    if !input.exists() {
        return Err(miette!(
            help = "pass an ARM template, a Terraform plan in JSON form (`terraform show -json <planfile>`), or a directory that contains `subnetlock.json` or `azuredeploy.json`",
            "input `{}` does not exist",
            input.display()
        ));
    }

    let binding_file = match &args.bindings {
        Some(path) => Some(path.clone()),
        None if input.is_dir() => Some(input.join(BINDING_FILE_NAME)).filter(|p| p.exists()),
        None => input
            .parent()
            .map(|dir| dir.join(BINDING_FILE_NAME))
            .filter(|p| p.exists()),
    };
    let bindings = match &binding_file {
        Some(path) => Bindings::load(path)?,
        None => Bindings::default(),
    };

    let template = match (&args.template, input.is_dir()) {
        (Some(template), _) => template.clone(),
        (None, false) => input.clone(),
        (None, true) => bindings
            .template
            .clone()
            .unwrap_or_else(|| input.join(DEFAULT_TEMPLATE)),
    };
    if !template.is_file() {
        if args.template.is_none() && input.is_dir() && binding_file.is_none() {
            return Err(miette!(
                help = format!(
                    "pass the template file itself, name it with --template, or add a `{BINDING_FILE_NAME}` binding file that names it"
                ),
                "directory `{}` has neither a `{BINDING_FILE_NAME}` binding file nor an `{DEFAULT_TEMPLATE}` template",
                input.display()
            ));
        }
        return Err(miette!(
            help = "name the template with --template, or add `\"template\"` to the binding file",
            "template `{}` does not exist",
            template.display()
        ));
    }

    let format = detect_format(&template)?;
    if format == InputFormat::TerraformPlan
        && (args.parameters.is_some() || !args.parameter.is_empty())
    {
        return Err(miette!(
            help = "set Terraform variables when you create the plan (`terraform plan -var ...`), then run `terraform show -json` again",
            "`{}` is a Terraform plan, which takes no ARM parameters",
            template.display()
        ));
    }

    // The binding file's parameters belong to its own template only. Without either, a
    // `<name>.parameters.json` beside the template is used, the convention of the Azure
    // quickstart templates. A Terraform plan has its variables applied already.
    let parameters = args
        .parameters
        .clone()
        .or_else(|| {
            if args.template.is_none() && input.is_dir() {
                bindings.parameters.clone()
            } else {
                None
            }
        })
        .filter(|_| format == InputFormat::ArmTemplate)
        .or_else(|| {
            if format == InputFormat::TerraformPlan {
                return None;
            }
            let found = sibling_parameters(&template);
            if let Some(path) = &found {
                err!("note: using parameters file `{}`", path.display());
            }
            found
        });

    let mut parameter_values = Vec::new();
    for entry in &args.parameter {
        let (name, text) = entry
            .split_once('=')
            .filter(|(name, _)| !name.trim().is_empty())
            .ok_or_else(|| {
                miette!(
                    help = "write it as NAME=VALUE, for example -p location=westeurope",
                    "invalid parameter `{entry}`"
                )
            })?;
        let value = match serde_json::from_str::<serde_json::Value>(text) {
            Ok(json) => json_to_value(json),
            Err(_) => Value::String(text.to_owned()),
        };
        parameter_values.push((name.to_owned(), value));
    }

    if format == InputFormat::TerraformPlan && !args.artifacts.is_empty() {
        return Err(miette!(
            help = "drop --artifacts; a Terraform plan has its modules expanded already",
            "`{}` is a Terraform plan, which links no ARM templates",
            template.display()
        ));
    }
    let artifacts = parse_artifacts(&args.artifacts)?;

    if let Some(previous) = &args.previous {
        if !previous.is_file() {
            return Err(miette!(
                help = "pass the template (or plan) of the deployment already in place",
                "previous deployment `{}` does not exist",
                previous.display()
            ));
        }
    }

    let mut engine = EngineOptions::default();
    if let Some(path) = &args.service_tags {
        let bytes = std::fs::read(path).map_err(|error| {
            miette!(
                help = "download `ServiceTags_Public_<date>.json` from Microsoft (\"Azure IP Ranges and Service Tags\") and pass its path",
                "cannot read service tags file `{}`: {error}",
                path.display()
            )
        })?;
        let table = ServiceTagTable::from_json(&bytes)
            .wrap_err_with(|| format!("invalid service tags file `{}`", path.display()))?;
        engine.service_tags = Some(Arc::new(table));
    }

    Ok(Inputs {
        template,
        format,
        parameters,
        parameter_values,
        bindings,
        scope: Scope {
            subscription_id: args.subscription_id.clone(),
            resource_group: args.resource_group.clone(),
            location: args.location.clone(),
            artifacts,
            ..Scope::default()
        },
        engine,
        previous: args.previous.clone(),
        scale_unit: args.scale_unit.into(),
        service_tags_file: args.service_tags.clone(),
    })
}

/// A `.json` file whose top level has `format_version` and `planned_values` (or
/// `terraform_version`) is a Terraform plan. So is one with `format_version` and no
/// `resources`, such as the state output of an empty workspace (`{"format_version":"1.0"}`),
/// so that the plan reader names what it lacks. Everything else is read as an ARM template.
fn detect_format(template: &Path) -> Result<InputFormat> {
    let is_json = template
        .extension()
        .is_some_and(|extension| extension.eq_ignore_ascii_case("json"));
    if !is_json {
        return Ok(InputFormat::ArmTemplate);
    }
    let bytes = std::fs::read(template)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read `{}`", template.display()))?;
    // Both readers accept UTF-8 and UTF-16 with a byte order mark, so the format is detected on
    // the decoded text, and a file neither reader accepts is reported here, by its encoding.
    let text = subnetlock_arm::decode_text(template, bytes)?;
    // serde_json rejects a UTF-8 byte order mark, which both readers skip.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    if subnetlock_terraform::is_plan_text(text) {
        return Ok(InputFormat::TerraformPlan);
    }
    let parsed = serde_json::from_str::<serde_json::Value>(text).ok();
    if let Some(root) = &parsed {
        if root.get("format_version").is_some() && root.get("resources").is_none() {
            return Ok(InputFormat::TerraformPlan);
        }
    }
    // A plan with a syntax error is still reported by the plan reader, whose message names
    // the plan, when its top-level keys are visible in the text.
    let parses = parsed.is_some();
    let plan_keys = text.contains("\"format_version\"")
        && (text.contains("\"planned_values\"") || text.contains("\"terraform_version\""));
    if !parses && plan_keys {
        return Ok(InputFormat::TerraformPlan);
    }
    Ok(InputFormat::ArmTemplate)
}

/// Reads the `--artifacts` values. A value is URI=DIR when the text before its first `=` is
/// empty or contains `://`, and a value without `=` that contains `://` is a URI that lacks its
/// folder. Otherwise the whole value is one folder, whose name may contain `=`.
fn parse_artifacts(values: &[String]) -> Result<Artifacts> {
    let mut artifacts = Artifacts::default();
    for value in values {
        // A URI's query may be a SAS token that the user pasted along, and the message may
        // end up in a CI log.
        let shown_value = if value.contains("://") {
            subnetlock_arm::shown_link(value)
        } else {
            value.clone()
        };
        let invalid = |reason: &str, help: &str| {
            miette!(
                help = help.to_owned(),
                "invalid --artifacts `{shown_value}`: {reason}"
            )
        };
        let mapped = match value.split_once('=') {
            Some((uri, _)) if uri.trim().is_empty() => {
                return Err(invalid(
                    "the URI before `=` is missing",
                    "write URI=DIR, for example --artifacts https://raw.githubusercontent.com/org/repo/main/=./templates, or DIR alone for the template's own location",
                ));
            }
            Some((uri, directory)) if uri.contains("://") => {
                if directory.trim().is_empty() {
                    return Err(invalid(
                        "the folder after `=` is missing",
                        "write URI=DIR, where DIR is the local folder that holds the templates below URI",
                    ));
                }
                artifacts.map(uri, Path::new(directory))
            }
            None if value.contains("://") => {
                return Err(invalid(
                    "the folder after the URI is missing",
                    "write URI=DIR, where DIR is the local folder that holds the templates below URI",
                ));
            }
            _ if value.trim().is_empty() => {
                return Err(invalid(
                    "the folder is missing",
                    "write DIR or URI=DIR, where DIR is the local folder that holds the linked templates",
                ));
            }
            _ => artifacts.map_own_location(Path::new(value)),
        };
        mapped.map_err(|error| invalid(&error.to_string(), error.help()))?;
    }
    Ok(artifacts)
}

/// `<stem>.parameters.json` (or `.jsonc`) beside `template`, when it exists.
fn sibling_parameters(template: &Path) -> Option<PathBuf> {
    let stem = template.file_stem()?.to_str()?;
    let dir = template.parent()?;
    ["json", "jsonc"]
        .iter()
        .map(|extension| dir.join(format!("{stem}.parameters.{extension}")))
        .find(|path| path.is_file())
}

impl Inputs {
    /// Fails when `caller` is `servicetag:<tag>` and the service-tag file has no such tag.
    /// Without a file any tag name is accepted, and the caller gets a documentation address.
    pub fn check_service_tag_caller(&self, caller: &str) -> Result<()> {
        let Some((kind, tag)) = caller.trim().split_once(':') else {
            return Ok(());
        };
        let (Some(table), Some(file)) = (&self.engine.service_tags, &self.service_tags_file) else {
            return Ok(());
        };
        if !kind.eq_ignore_ascii_case("servicetag") || table.prefixes(tag).is_some() {
            return Ok(());
        }
        let similar = table.similar_names(tag, 5);
        let help = if similar.is_empty() {
            "write the tag as the file's `values[].name` spells it, for example `AzureFrontDoor.Backend` or `AppService.WestEurope`".to_owned()
        } else {
            format!("tags with a similar name: {}", similar.join(", "))
        };
        Err(miette!(
            help = help,
            "no service tag `{tag}` in `{}`",
            file.display()
        ))
    }

    /// Builds the topology: a Terraform plan is read as it is, an ARM template is evaluated
    /// offline with placeholder keys.
    pub fn topology(&self) -> Result<Topology> {
        let mut topology = self.topology_of(&self.template)?;
        if let Some(previous) = self.previous_topology()? {
            subnetlock_model::validate_redeploy(&previous, &mut topology);
        }
        subnetlock_model::validate_scale_unit(&mut topology, self.scale_unit);
        Ok(topology)
    }

    /// Builds the topology of the deployment already in place, when `--previous` names one.
    pub fn previous_topology(&self) -> Result<Option<Topology>> {
        match &self.previous {
            Some(path) => self.topology_of(path).map(Some),
            None => Ok(None),
        }
    }

    fn topology_of(&self, template: &Path) -> Result<Topology> {
        if detect_format(template)? == InputFormat::TerraformPlan {
            return Ok(subnetlock_terraform::topology_from_plan(template)?);
        }
        let provider = SimulatedProvider::new(KeyMode::Placeholder);
        let mut parameters = match &self.parameters {
            Some(path) => Parameters::from_file(path)?,
            None => Parameters::new(),
        };
        for (name, value) in &self.parameter_values {
            parameters.set(name, value.clone());
        }
        let options = EvalOptions {
            scope: self.scope.clone(),
            parameters,
        };
        let deployment = subnetlock_arm::evaluate_file(template, &options, &provider)?;
        Ok(build_topology(&deployment))
    }

    /// The topology `up` deploys instead of evaluating the template: `Some` for a Terraform
    /// plan, which the emulator cannot evaluate itself.
    pub fn prebuilt_topology(&self) -> Result<Option<Topology>> {
        match self.format {
            InputFormat::TerraformPlan => self.topology_of(&self.template).map(Some),
            InputFormat::ArmTemplate => Ok(None),
        }
    }

    /// `authLevel` of the functions in bound folders, keyed by lower-case (site, function).
    pub fn auth_levels(&self, topology: &Topology) -> HashMap<(String, String), String> {
        let mut levels = HashMap::new();
        for site in &topology.sites {
            let Some(binding) = self.bindings.for_site(&site.name) else {
                continue;
            };
            let Ok(app) = subnetlock_emulator::functions_host::load_function_app(
                &binding.function_app,
                Some(Path::new("handler")),
            ) else {
                continue;
            };
            for function in app.functions {
                levels.insert(
                    (
                        site.name.to_ascii_lowercase(),
                        function.name.to_ascii_lowercase(),
                    ),
                    format!("{:?}", function.auth_level).to_ascii_lowercase(),
                );
            }
        }
        levels
    }
}

fn json_to_value(json: serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(flag) => Value::Bool(flag),
        serde_json::Value::Number(number) => match number.as_i64() {
            Some(integer) => Value::Int(integer),
            None => Value::Float(number.as_f64().unwrap_or_default()),
        },
        serde_json::Value::String(text) => Value::String(text),
        serde_json::Value::Array(items) => {
            Value::Array(items.into_iter().map(json_to_value).collect())
        }
        serde_json::Value::Object(map) => {
            let mut object = subnetlock_arm::Object::new();
            for (key, value) in map {
                object.insert(key, json_to_value(value));
            }
            Value::Object(object)
        }
    }
}
