#![allow(clippy::unwrap_used)]
use subnetlock_arm::*;
#[test]
fn dump() {
    let dir = std::path::Path::new("/work/shared/corpus/arm");
    let t = dir.join("alz-appsvc-secure-baseline-multitenant.json");
    let p = dir.join("alz-appsvc-secure-baseline-multitenant.parameters.jsonc");
    let o = EvalOptions { scope: Scope::default(), parameters: Parameters::from_file(&p).unwrap() };
    let d = evaluate_file(&t, &o, &OfflineProvider).unwrap();
    for r in &d.resources {
        if r.resource_type.starts_with("Microsoft.Web") || r.name.contains('[') {
        eprintln!("{} | {} | {:?} | {}", r.resource_type, r.name, r.deployment_path, r.id);
        }
    }
    eprintln!("unresolved {}", d.unresolved_templates.len());
    for (k, v) in &d.outputs { eprintln!("out {k} = {}", serde_json::to_string(v).unwrap().chars().take(150).collect::<String>()); }
}
