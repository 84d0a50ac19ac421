//! The front door: the Helm chart, the kustomize base, the checked-in copies and the Argo CD health
//! check, exercised with the real `helm`, `kubectl` and `lua5.4` (`make deps` installs them).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tool(env: &str, default: &str, args: &[&str]) -> Output {
    let program = std::env::var(env).unwrap_or_else(|_| default.to_string());
    Command::new(&program)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("{program} is not available ({e}): run `make deps` (or set {env})"))
}

fn ok(output: Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn helm(args: &[&str]) -> Output {
    tool("PGW_HELM", "helm", args)
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml).unwrap().into_iter().filter(|d| !d.is_null()).collect()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const CHART: &str = "charts/pgwarehouse-operator";

#[test]
fn checked_in_copies_match_their_one_source() {
    let crd = pgwarehouse::crd::crd_yaml();
    assert_eq!(read("charts/pgwarehouse-operator/crds/datawarehousestacks.pgwarehouse.dev.yaml"), crd, "make crd");
    assert_eq!(read("config/crd/datawarehousestacks.pgwarehouse.dev.yaml"), crd, "make crd");
    let rbac = pgwarehouse::controller::rbac::cluster_role_yaml;
    assert_eq!(read("charts/pgwarehouse-operator/files/clusterrole.yaml"), rbac("pgwarehouse-operator"), "make crd");
    assert_eq!(read("config/rbac/clusterrole.yaml"), rbac("pgwarehouse"), "make crd");
    let patch: Value = serde_saphyr::from_str(&read("charts/gitops/argocd-cm-patch.yaml")).unwrap();
    let script = patch["data"]["resource.customizations.health.pgwarehouse.dev_DataWarehouseStack"].as_str().unwrap();
    assert_eq!(script.trim(), read("charts/gitops/argocd-health.lua").trim());
}

#[test]
fn the_chart_lints_and_renders_least_privilege_defaults() {
    ok(helm(&["lint", CHART, "--strict"]));
    let rendered = documents(&ok(helm(&["template", "pgwarehouse", CHART, "--namespace", "pgwarehouse-system"])));
    let kinds: Vec<&str> = rendered.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service", "Deployment"]);
    let deployment = &rendered[4];
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"], true);
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");

    let namespaced =
        documents(&ok(helm(&["template", "t", CHART, "--set", "watchNamespaces={a,b}", "--namespace", "ops"])));
    let bindings: Vec<(&str, &str)> = namespaced
        .iter()
        .filter(|d| d["kind"] == "RoleBinding")
        .map(|d| (d["metadata"]["namespace"].as_str().unwrap(), d["roleRef"]["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(bindings, [("a", "ClusterRole"), ("b", "ClusterRole"), ("ops", "ClusterRole")]);
    assert!(!namespaced.iter().any(|d| d["kind"] == "ClusterRoleBinding"), "no cluster-wide grant");
    let args = namespaced.iter().find(|d| d["kind"] == "Deployment").unwrap()["spec"]["template"]["spec"]["containers"]
        [0]["args"]
        .clone();
    assert!(args.as_array().unwrap().contains(&Value::from("--namespace=a")));
    // A watched namespace that does not exist yet is created first, and outlives the release.
    let created: Vec<(&str, &str)> = namespaced
        .iter()
        .filter(|d| d["kind"] == "Namespace")
        .map(|d| {
            (
                d["metadata"]["name"].as_str().unwrap(),
                d["metadata"]["annotations"]["helm.sh/resource-policy"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(created, [("a", "keep"), ("b", "keep")], "the release's own namespace is not one of them");
    assert_eq!(namespaced[0]["kind"], "Namespace", "before the RoleBindings that need it");
    let without = documents(&ok(helm(&[
        "template",
        "t",
        CHART,
        "--set",
        "watchNamespaces={a}",
        "--set",
        "createWatchNamespaces=false",
    ])));
    assert!(!without.iter().any(|d| d["kind"] == "Namespace"));
}

#[test]
fn the_chart_passes_extra_arguments_environment_and_scheduling_values() {
    let rendered = documents(&ok(helm(&[
        "template",
        "t",
        CHART,
        "--set",
        "extraArgs={--database-host-override=db.internal:5432}",
        "--set",
        "extraEnv[0].name=HTTPS_PROXY,extraEnv[0].value=http://proxy:3128",
        "--set",
        "priorityClassName=system-cluster-critical",
        "--set",
        "hostAliases[0].ip=10.0.0.5,hostAliases[0].hostnames={api.internal}",
        "--set",
        "podAnnotations.a=b,podLabels.team=data,nodeSelector.disk=ssd",
        "--set",
        "tolerations[0].key=dedicated,tolerations[0].operator=Exists",
    ])));
    let pod = &rendered.iter().find(|d| d["kind"] == "Deployment").unwrap()["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    assert!(container["args"].as_array().unwrap().contains(&Value::from("--database-host-override=db.internal:5432")));
    assert!(container["env"].as_array().unwrap().iter().any(|e| e["name"] == "HTTPS_PROXY"));
    assert_eq!(pod["spec"]["priorityClassName"], "system-cluster-critical");
    assert_eq!(pod["spec"]["hostAliases"][0]["hostnames"][0], "api.internal");
    assert_eq!(pod["spec"]["nodeSelector"]["disk"], "ssd");
    assert_eq!(pod["spec"]["tolerations"][0]["key"], "dedicated");
    assert_eq!(
        (pod["metadata"]["annotations"]["a"].as_str(), pod["metadata"]["labels"]["team"].as_str()),
        (Some("b"), Some("data"))
    );
}

#[test]
fn the_chart_refuses_bad_values_with_a_clear_error() {
    for (set, expected) in [
        ("replicas=two", "/replicas"),
        ("bogus=1", "additional properties 'bogus' not allowed"),
        ("logFormat=xml", "/logFormat"),
        ("watchNamespaces={Analytics_NS}", "/watchNamespaces/0"),
        ("extraArgz={--x}", "additional properties 'extraArgz' not allowed"),
        ("extraArgs={run}", "/extraArgs/0"),
        ("hostAliases[0].ip=10.0.0.5", "/hostAliases/0"),
    ] {
        let out = helm(&["template", "t", CHART, "--set", set]);
        assert!(!out.status.success(), "{set} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{set}: {stderr}");
    }
    let out = helm(&["template", "t", CHART, "--set", "replicas=2", "--set", "leaderElection.enabled=false"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("replicas > 1 needs leaderElection.enabled=true"));
    assert!(helm(&["template", "t", CHART, "--set", "replicas=2"]).status.success());
}

/// kustomize writes `0` where helm keeps `0.0`: the same number.
fn normalize(value: Value) -> Value {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, normalize(v))).collect()),
        other => other,
    }
}

/// The parts of a rendering that matter: objects by kind and name, and what they grant and run.
fn essentials(docs: &[Value]) -> Vec<(String, String, Value)> {
    let mut out: Vec<(String, String, Value)> = docs
        .iter()
        .filter(|d| d["kind"] != "Namespace")
        .map(|d| {
            let kind = d["kind"].as_str().unwrap().to_string();
            let essence = match kind.as_str() {
                "ClusterRole" => d["rules"].clone(),
                "CustomResourceDefinition" => d["spec"].clone(),
                "Deployment" => {
                    let pod = &d["spec"]["template"]["spec"];
                    let mut c = pod["containers"][0].clone();
                    c["image"] = Value::from(c["image"].as_str().unwrap().split(':').next().unwrap());
                    serde_json::json!({"container": c, "securityContext": pod["securityContext"], "replicas": d["spec"]["replicas"]})
                }
                "Service" => d["spec"]["ports"].clone(),
                _ => Value::Null,
            };
            (kind, d["metadata"]["name"].as_str().unwrap().to_string(), normalize(essence))
        })
        .collect();
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

#[test]
fn the_kustomize_base_renders_what_the_chart_renders() {
    let kustomized = documents(&ok(tool("PGW_KUBECTL", "kubectl", &["kustomize", "config/default"])));
    let charted = documents(&ok(helm(&[
        "template",
        "pgwarehouse",
        CHART,
        "--namespace",
        "pgwarehouse-system",
        "--include-crds",
    ])));
    let (k, c) = (essentials(&kustomized), essentials(&charted));
    let names = |e: &[(String, String, Value)]| e.iter().map(|(k, n, _)| format!("{k}/{n}")).collect::<Vec<_>>();
    assert_eq!(names(&k), names(&c));
    for (a, b) in k.iter().zip(&c) {
        assert_eq!(a.2, b.2, "{}/{} differs between config/ and the chart", a.0, a.1);
    }
    assert!(kustomized.iter().any(|d| d["kind"] == "Namespace" && d["metadata"]["name"] == "pgwarehouse-system"));
}

fn lua_table(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => format!("{{{}}}", items.iter().map(lua_table).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => {
            format!(
                "{{{}}}",
                map.iter().map(|(k, v)| format!("[{k:?}] = {}", lua_table(v))).collect::<Vec<_>>().join(", ")
            )
        }
    }
}

#[test]
fn the_argocd_health_check_follows_the_ready_condition() {
    let script = root().join("charts/gitops/argocd-health.lua");
    let health = |obj: Value| {
        let program = format!(
            "obj = {}\nlocal hs = dofile({:?})\nio.write(hs.status)",
            lua_table(&obj),
            script.display().to_string()
        );
        ok(tool("PGW_LUA", "lua5.4", &["-e", &program]))
    };
    let ready = |status: &str, phase: &str, observed: i64| {
        serde_json::json!({"metadata": {"generation": 2}, "status": {"observedGeneration": observed, "phase": phase,
            "conditions": [{"type": "Ready", "status": status, "message": "m"}]}})
    };
    assert_eq!(health(ready("True", "Ready", 2)), "Healthy");
    assert_eq!(health(ready("False", "Degraded", 2)), "Degraded");
    assert_eq!(health(ready("False", "Failed", 2)), "Degraded");
    assert_eq!(health(ready("False", "Provisioning", 2)), "Progressing");
    assert_eq!(health(ready("True", "Ready", 1)), "Progressing", "an older generation is not yet healthy");
    assert_eq!(health(serde_json::json!({"metadata": {}})), "Progressing");
}

/// The README's cluster commands create every Secret (and key) the example they apply names, in
/// the namespace they apply it to: a new user who runs them verbatim gets a stack that can be
/// Ready.
#[test]
fn the_readme_creates_every_secret_the_cluster_example_names() {
    let readme = read("README.md");
    let commands: Vec<&str> = readme.lines().filter(|l| l.starts_with("kubectl ")).collect();
    let applied = commands
        .iter()
        .find_map(|c| c.strip_prefix("kubectl apply -f stack-templates/examples/"))
        .expect("the README applies an example");
    let (example, namespace) = applied.split_once(" -n ").expect("the example is applied to a namespace");
    let mut created = std::collections::BTreeSet::new();
    for command in &commands {
        let words: Vec<&str> = command.split_whitespace().collect();
        let Some(at) = words.windows(3).position(|w| w == ["create", "secret", "generic"]) else { continue };
        assert_eq!(words[1..3], ["-n", namespace], "{command}: another namespace than the example's");
        let name = words[at + 3];
        for literal in words.iter().filter_map(|w| w.strip_prefix("--from-literal=")) {
            created.insert((name.to_string(), literal.split_once('=').unwrap().0.to_string()));
        }
    }
    let stack = pgwarehouse::template::load_manifest(&read(&format!("stack-templates/examples/{example}"))).unwrap();
    let named = stack.spec.secret_refs();
    assert!(!named.is_empty());
    for (path, reference) in named {
        assert!(
            created.contains(&(reference.name.clone(), reference.key.clone())),
            "{example} {path} names Secret {:?} key {:?}, which the README's commands do not create (they create {created:?})",
            reference.name,
            reference.key
        );
    }
}
