//! Starting the emulator for a template whose sites matching `app-*` run one function app
//! with a Python custom handler, for tests that need a real handler process.

use std::path::Path;

use subnetlock_emulator::{AppBinding, Bindings, Emulator, EmulatorConfig};

/// One function of the app: its name, its `authLevel`, and its `methods` (`None` for any).
pub struct Function<'a> {
    pub name: &'a str,
    pub auth_level: &'a str,
    pub methods: Option<&'a [&'a str]>,
}

/// Writes `template`, a function app in `dir/app` with `functions` and the Python `handler`
/// (forwarding HTTP requests). Then starts the emulator with the app bound to every site
/// whose name matches `app-*`, after `configure` has changed its configuration.
pub async fn start(
    dir: &Path,
    template: &str,
    handler: &str,
    functions: &[Function<'_>],
    configure: impl FnOnce(&mut EmulatorConfig),
) -> Emulator {
    let template_path = dir.join("azuredeploy.json");
    std::fs::write(&template_path, template).expect("write template");

    let app = dir.join("app");
    std::fs::create_dir_all(&app).expect("create function app folder");
    std::fs::write(dir.join("handler.py"), handler).expect("write handler");
    let host = serde_json::json!({
        "version": "2.0",
        "customHandler": {
            "description": {"defaultExecutablePath": "python3", "arguments": ["../handler.py"]},
            "enableForwardingHttpRequest": true
        }
    });
    std::fs::write(app.join("host.json"), host.to_string()).expect("write host.json");

    for function in functions {
        let mut trigger = serde_json::json!({
            "type": "httpTrigger", "direction": "in", "name": "req",
            "authLevel": function.auth_level,
        });
        if let Some(methods) = function.methods {
            trigger["methods"] = serde_json::json!(methods);
        }
        let definition = serde_json::json!({"bindings": [
            trigger,
            {"type": "http", "direction": "out", "name": "res"}
        ]});
        let folder = app.join(function.name);
        std::fs::create_dir_all(&folder).expect("create function folder");
        std::fs::write(folder.join("function.json"), definition.to_string())
            .expect("write function.json");
    }

    let mut config = EmulatorConfig::new(template_path, dir.join("state"));
    config.run_builds = false;
    config.bindings = Bindings {
        apps: vec![AppBinding {
            site_pattern: "app-*".to_owned(),
            function_app: app,
            executable: None,
            build: None,
        }],
        ..Bindings::default()
    };
    configure(&mut config);
    Emulator::start(config).await.expect("emulator starts")
}

/// Returns the decision records after the first `from`, without sequence numbers and times,
/// so that the records of two requests compare equal when only those differ.
// Not every test crate that includes this module compares records.
#[allow(dead_code)]
pub fn records_since(emulator: &Emulator, from: usize) -> Vec<serde_json::Value> {
    emulator
        .decisions()
        .iter()
        .skip(from)
        .map(|record| {
            let mut value = serde_json::to_value(record).expect("record serializes");
            let object = value.as_object_mut().expect("record is an object");
            object.remove("sequence");
            object.remove("time");
            value
        })
        .collect()
}
