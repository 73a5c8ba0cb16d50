//! Checks the deployment files under `deploy/` and the configs in `docs/idp-setup.md`:
//!
//! - every Kubernetes manifest validates against the Kubernetes JSON schemas (strict, for the
//!   oldest and a newer supported version), and the sidecar pod is shaped as documented
//!   (probes, security contexts, the Service reaching only samlgate's port);
//! - every samlgate config (the examples, the ConfigMap's, the IdP guide's) passes
//!   `samlgate check-config` with stand-in IdP metadata, secret and TLS files;
//! - the Grafana and JupyterLab companion files agree with their samlgate configs;
//! - the Dockerfile passes hadolint, has the documented stages, runs as a non-root user, and
//!   installs exactly the Debian packages that own the libraries the binary links;
//! - `.dockerignore` admits exactly what the builder copies, and that is enough for cargo;
//! - the systemd unit passes `systemd-analyze verify` and a hardening threshold.
//!
//! The validators (kubernetes-validate, hadolint) live in a venv that
//! `scripts/install-deploy-check.sh` creates; a missing tool fails the test, naming that script.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const INSTALL_HINT: &str =
    "run scripts/install-deploy-check.sh first (it installs the deploy validators)";

/// The Kubernetes versions the manifests must validate against: the oldest one they support
/// (the preStop `sleep` action is on by default from 1.30) and a newer one.
const KUBERNETES_VERSIONS: &[&str] = &["1.30.0", "1.33.0"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn samlgate_bin() -> &'static str {
    env!("CARGO_BIN_EXE_samlgate")
}

// ---------------------------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------------------------

/// Same rule as scripts/install-deploy-check.sh.
fn venv() -> PathBuf {
    if let Some(v) = std::env::var_os("SAMLGATE_DEPLOY_CHECK_VENV") {
        return PathBuf::from(v);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache")
        });
    cache.join("samlgate").join("deploy-check-venv")
}

fn venv_tool(name: &str) -> PathBuf {
    let path = venv().join("bin").join(name);
    assert!(
        path.is_file(),
        "{name} not found at {}: {INSTALL_HINT}",
        path.display()
    );
    path
}

fn system_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not on PATH: {INSTALL_HINT}"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `samlgate <args>` with no `SAMLGATE_*` variable from the test's environment.
fn samlgate(args: &[&str]) -> Command {
    let mut cmd = Command::new(samlgate_bin());
    cmd.args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SAMLGATE_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn files_under(dir: &Path, pred: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = entry.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if pred(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn kubernetes_manifests() -> Vec<PathBuf> {
    let files = files_under(&root().join("deploy/kubernetes"), &|p| {
        matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
    });
    assert!(
        files.len() >= 4,
        "expected the sidecar manifests under deploy/kubernetes, found {files:?}"
    );
    files
}

/// Every YAML document of the manifests, as JSON (PyYAML from the validator venv), with the
/// file it came from.
fn kubernetes_documents() -> Vec<(PathBuf, Value)> {
    let files = kubernetes_manifests();
    let script = "import json, sys, yaml\n\
                  out = []\n\
                  for f in sys.argv[1:]:\n\
                  \x20   with open(f) as fh:\n\
                  \x20       out += [[f, d] for d in yaml.safe_load_all(fh) if d is not None]\n\
                  print(json.dumps(out))\n";
    let stdout = run_ok(
        Command::new(venv_tool("python"))
            .arg("-c")
            .arg(script)
            .args(&files),
    );
    let docs: Vec<(String, Value)> = serde_json::from_str(&stdout).expect("JSON from PyYAML");
    docs.into_iter()
        .map(|(f, d)| (PathBuf::from(f), d))
        .collect()
}

fn find_doc<'a>(docs: &'a [(PathBuf, Value)], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes"))
}

fn parse_toml(text: &str, what: &str) -> toml::Table {
    text.parse()
        .unwrap_or_else(|e| panic!("{what} is not TOML: {e}"))
}

fn toml_str<'a>(t: &'a toml::Table, dotted: &str) -> Option<&'a str> {
    let mut cur = t;
    let mut parts = dotted.split('.').peekable();
    while let Some(p) = parts.next() {
        if parts.peek().is_none() {
            return cur.get(p).and_then(|v| v.as_str());
        }
        cur = cur.get(p)?.as_table()?;
    }
    None
}

fn port_of(addr_or_url: &str) -> u16 {
    let s = addr_or_url.trim_end_matches('/');
    s.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr_or_url:?}"))
}

// ---------------------------------------------------------------------------------------------
// Stand-in IdP metadata, cookie secret and TLS key pair for `check-config`
// ---------------------------------------------------------------------------------------------

struct Fixtures {
    idp_metadata: String,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

fn fixtures() -> &'static Fixtures {
    static F: std::sync::OnceLock<Fixtures> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        use openssl::asn1::Asn1Time;
        use openssl::hash::MessageDigest;
        use openssl::pkey::PKey;
        use openssl::rsa::Rsa;
        use openssl::x509::{X509NameBuilder, X509};

        let key = PKey::from_rsa(Rsa::generate(2048).expect("RSA")).expect("PKey");
        let mut name = X509NameBuilder::new().expect("name");
        name.append_entry_by_text("CN", "localhost")
            .expect("CN");
        let name = name.build();
        let mut b = X509::builder().expect("X509 builder");
        b.set_version(2).expect("v3");
        b.set_subject_name(&name).expect("subject");
        b.set_issuer_name(&name).expect("issuer");
        b.set_pubkey(&key).expect("pubkey");
        b.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
            .expect("not before");
        b.set_not_after(&Asn1Time::days_from_now(30).expect("time"))
            .expect("not after");
        b.sign(&key, MessageDigest::sha256()).expect("sign");
        let cert = b.build();
        let cert_b64 = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(cert.to_der().expect("DER"))
        };
        let idp_metadata = format!(
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?>"#,
                r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://idp.example.com/metadata">"#,
                r#"<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">"#,
                r#"<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#,
                r#"<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.com/sso"/>"#,
                r#"</md:IDPSSODescriptor></md:EntityDescriptor>"#
            ),
            cert_b64
        );
        Fixtures {
            idp_metadata,
            cert_pem: cert.to_pem().expect("PEM"),
            key_pem: key.private_key_to_pem_pkcs8().expect("PKCS#8"),
        }
    })
}

/// Copies `config_text` into a fresh directory next to stand-ins for every file the examples
/// name (idp-metadata.xml, cookie.secret, tls.crt, tls.key) and runs `samlgate check-config`.
/// Returns the directory (kept alive by the caller) and the config path.
fn checked_config(config_text: &str, what: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = fixtures();
    std::fs::write(dir.path().join("idp-metadata.xml"), &f.idp_metadata).expect("write");
    std::fs::write(
        dir.path().join("cookie.secret"),
        "0123456789abcdef0123456789abcdef0123456789abcdef\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("tls.crt"), &f.cert_pem).expect("write");
    std::fs::write(dir.path().join("tls.key"), &f.key_pem).expect("write");
    std::fs::write(dir.path().join("redis.password"), "placeholder-password\n").expect("write");
    let config = dir.path().join("samlgate.toml");
    std::fs::write(&config, config_text).expect("write");
    let out = run(&mut samlgate(&[
        "check-config",
        "--config",
        config.to_str().expect("UTF-8 path"),
    ]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("config OK: "),
        "samlgate check-config refused {what}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir, config)
}

fn example_configs() -> Vec<PathBuf> {
    let files = files_under(&root().join("deploy/examples"), &|p| {
        p.extension().and_then(|e| e.to_str()) == Some("toml")
    });
    assert!(
        files.len() >= 3,
        "expected the HEAVY.AI, Grafana and JupyterLab examples, found {files:?}"
    );
    files
}

fn example(name: &str) -> toml::Table {
    let path = root()
        .join("deploy/examples")
        .join(name)
        .join("samlgate.toml");
    parse_toml(&read(&path), &path.display().to_string())
}

// ---------------------------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------------------------

#[test]
fn kubernetes_manifests_pass_strict_schema_validation() {
    let validator = venv_tool("kubernetes-validate");
    let files = kubernetes_manifests();
    for version in KUBERNETES_VERSIONS {
        // The schemas ship inside the package: this runs offline.
        let stdout = run_ok(
            Command::new(&validator)
                .args(["--strict", "--no-warn", "-k", version])
                .args(&files),
        );
        for f in &files {
            assert!(
                stdout.contains(&format!("{} passed", f.display())),
                "kubernetes-validate {version} did not report {} as passed:\n{stdout}",
                f.display()
            );
        }
    }
}

#[test]
fn kubernetes_sidecar_pod_is_locked_down_and_only_samlgate_is_exposed() {
    let docs = kubernetes_documents();
    let deployment = find_doc(&docs, "Deployment", "analytics");
    let pod = &deployment["spec"]["template"]["spec"];
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["automountServiceAccountToken"], false);

    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 2, "the app and samlgate in one pod");
    for c in containers {
        let name = &c["name"];
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
        assert!(
            sc["capabilities"]["drop"]
                .as_array()
                .is_some_and(|d| d.iter().any(|x| x == "ALL")),
            "{name} must drop ALL capabilities"
        );
        assert!(
            c["resources"]["requests"]["memory"].is_string()
                && c["resources"]["limits"]["memory"].is_string(),
            "{name} needs memory requests and limits"
        );
    }
    let gate = containers
        .iter()
        .find(|c| c["name"] == "samlgate")
        .expect("samlgate container");
    let app = containers
        .iter()
        .find(|c| c["name"] != "samlgate")
        .expect("app container");
    assert!(
        app["ports"].is_null(),
        "the app declares no container port: it listens on loopback only"
    );
    let app_listen = app["env"]
        .as_array()
        .and_then(|env| env.iter().find(|e| e["name"] == "LISTEN_ADDRESS"))
        .and_then(|e| e["value"].as_str())
        .expect("the app's LISTEN_ADDRESS placeholder");
    assert!(app_listen.starts_with("127.0.0.1:"), "{app_listen}");

    let gate_ports: Vec<(String, u64)> = gate["ports"]
        .as_array()
        .expect("samlgate ports")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().to_string(),
                p["containerPort"].as_u64().expect("containerPort"),
            )
        })
        .collect();
    // Two ports: the proxy ("http", probed, behind the Service) and the admin listener
    // ("metrics", scraped per pod).
    assert_eq!(gate_ports.len(), 2, "{gate_ports:?}");
    let (gate_port_name, gate_port) = gate_ports
        .iter()
        .find(|(n, _)| n == "http")
        .cloned()
        .expect("a port named http");
    let metrics_port = gate_ports
        .iter()
        .find(|(n, _)| n == "metrics")
        .map(|(_, p)| *p)
        .expect("a port named metrics");
    assert_eq!(gate["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(gate["livenessProbe"]["httpGet"]["path"], "/healthz");
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(
            gate[probe]["httpGet"]["port"], gate_port_name,
            "{probe} must hit samlgate's port"
        );
    }

    // The config in the ConfigMap agrees with the pod.
    let cm = find_doc(&docs, "ConfigMap", "samlgate-config");
    let config_text = cm["data"]["samlgate.toml"].as_str().expect("samlgate.toml");
    let config = parse_toml(config_text, "the ConfigMap's samlgate.toml");
    let listen = toml_str(&config, "listen").expect("listen");
    assert_eq!(
        u64::from(port_of(listen)),
        gate_port,
        "listen vs containerPort"
    );
    assert!(listen.starts_with("0.0.0.0:"), "{listen}");
    let admin = config
        .get("admin")
        .and_then(|a| a.get("listen"))
        .and_then(|v| v.as_str())
        .expect("admin.listen");
    assert_eq!(
        u64::from(port_of(admin)),
        metrics_port,
        "admin.listen vs the metrics port"
    );
    let upstream = toml_str(&config, "upstream").expect("upstream");
    assert_eq!(
        upstream,
        format!("http://{app_listen}"),
        "upstream vs the app"
    );
    assert_eq!(
        toml_str(&config, "public_url"),
        Some("https://analytics.example.com")
    );
    // Termination: the preStop pause plus samlgate's drain fit in the grace period.
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    let pause = gate["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .expect("preStop sleep");
    let drain = config
        .get("server")
        .and_then(|s| s.get("shutdown_grace_secs"))
        .and_then(|v| v.as_integer())
        .map_or(30, |v| v as u64);
    assert!(pause + drain < grace, "{pause} + {drain} >= {grace}");

    // The mounted directory provides every file the config names.
    let mount = gate["volumeMounts"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["mountPath"] == "/etc/samlgate"))
        .expect("/etc/samlgate mount");
    assert_eq!(mount["readOnly"], true);
    let volume = pod["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == mount["name"]))
        .expect("the /etc/samlgate volume");
    let mut provided = BTreeSet::new();
    for source in volume["projected"]["sources"]
        .as_array()
        .expect("projected")
    {
        if let Some(items) = source["configMap"]["items"].as_array() {
            let cm = find_doc(
                &docs,
                "ConfigMap",
                source["configMap"]["name"].as_str().expect("name"),
            );
            for item in items {
                assert!(cm["data"][item["key"].as_str().expect("key")].is_string());
                provided.insert(item["path"].as_str().expect("path").to_string());
            }
        }
        if let Some(name) = source["secret"]["name"].as_str() {
            let secret = find_doc(&docs, "Secret", name);
            for key in secret["stringData"].as_object().expect("stringData").keys() {
                provided.insert(key.clone());
            }
            // The placeholder must be unusable: samlgate refuses secrets under 32 bytes.
            if let Some(placeholder) = secret["stringData"]["cookie.secret"].as_str() {
                assert!(placeholder.trim_end().len() < 32, "{placeholder:?}");
            }
            if let Some(items) = source["secret"]["items"].as_array() {
                // Only the listed keys are mounted (the Redis password, optional).
                for item in items {
                    provided.insert(item["path"].as_str().expect("path").to_string());
                }
            }
        }
    }
    for key in [
        "config:samlgate.toml",
        "saml.idp_metadata_file",
        "session.cookie_secret_file",
    ] {
        let file = match key.strip_prefix("config:") {
            Some(f) => f,
            None => toml_str(&config, key).unwrap_or_else(|| panic!("{key} unset")),
        };
        assert!(
            provided.contains(file),
            "{file} ({key}) is not in the /etc/samlgate volume: {provided:?}"
        );
    }

    // The Service reaches samlgate's port and nothing else.
    let service = find_doc(&docs, "Service", "analytics");
    let selector = service["spec"]["selector"].as_object().expect("selector");
    for (k, v) in selector {
        assert_eq!(&pod_labels[k], v, "Service selector {k}");
    }
    let service_ports = service["spec"]["ports"].as_array().expect("ports");
    assert!(!service_ports.is_empty());
    for p in service_ports {
        let target = &p["targetPort"];
        let ok = target == gate_port_name.as_str() || target.as_u64() == Some(gate_port);
        assert!(ok, "Service port {p} must target samlgate's port only");
    }

    // The Ingress serves public_url's host through that Service.
    let ingress = find_doc(&docs, "Ingress", "analytics");
    let rule = &ingress["spec"]["rules"][0];
    assert_eq!(rule["host"], "analytics.example.com");
    let backend = &rule["http"]["paths"][0]["backend"]["service"];
    assert_eq!(backend["name"], "analytics");
    assert_eq!(backend["port"]["name"], service_ports[0]["name"]);

    // The NetworkPolicy opens samlgate's ports only (never the app's), and the admin port
    // only to the monitoring namespace, not to the Ingress controller.
    let np = docs
        .iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"] == "NetworkPolicy")
        .expect("NetworkPolicy");
    for rule in np["spec"]["ingress"].as_array().expect("ingress rules") {
        let from_ns = rule["from"][0]["namespaceSelector"]["matchLabels"]
            ["kubernetes.io/metadata.name"]
            .as_str()
            .unwrap_or_default();
        for p in rule["ports"].as_array().expect("ports") {
            let port = p["port"].as_u64();
            if port == Some(metrics_port) {
                assert_eq!(from_ns, "monitoring", "{rule}");
            } else {
                assert_eq!(port, Some(gate_port), "{p}");
                assert_ne!(from_ns, "monitoring", "{rule}");
            }
        }
    }
}

#[test]
fn kubernetes_configmap_config_passes_check_config() {
    let docs = kubernetes_documents();
    let cm = find_doc(&docs, "ConfigMap", "samlgate-config");
    let text = cm["data"]["samlgate.toml"].as_str().expect("samlgate.toml");
    checked_config(text, "deploy/kubernetes/configmap.yaml (samlgate.toml)");
}

/// The multi-replica variant (deploy/kubernetes/replicas): the commented `[state]` section of
/// the ConfigMap, uncommented, passes `check-config`, names the Redis Service of
/// replicas/redis.yaml, and its password file is what the optional Secret mounts from the
/// Secret that Redis itself reads.
#[test]
fn kubernetes_replicas_variant_shares_state_through_the_redis_it_ships() {
    let docs = kubernetes_documents();
    let cm = find_doc(&docs, "ConfigMap", "samlgate-config");
    let text = cm["data"]["samlgate.toml"].as_str().expect("samlgate.toml");
    let mut uncommented = String::new();
    let mut in_state = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t == "# [state]" {
            in_state = true;
        } else if in_state && !t.starts_with("# ") {
            in_state = false;
        }
        match t.strip_prefix("# ") {
            Some(rest) if in_state => uncommented.push_str(rest),
            _ => uncommented.push_str(line),
        }
        uncommented.push('\n');
    }
    let config = parse_toml(&uncommented, "the ConfigMap with [state] uncommented");
    assert_eq!(toml_str(&config, "state.backend"), Some("redis"));
    checked_config(&uncommented, "configmap.yaml with [state] uncommented");

    let url = toml_str(&config, "state.redis_url").expect("state.redis_url");
    let service = find_doc(&docs, "Service", "samlgate-redis");
    let host_port = format!(
        "redis://{}:{}/",
        service["metadata"]["name"].as_str().expect("name"),
        service["spec"]["ports"][0]["port"]
    );
    assert!(url.starts_with(&host_port), "{url} vs {host_port}");
    let redis = find_doc(&docs, "Deployment", "samlgate-redis");
    let env = &redis["spec"]["template"]["spec"]["containers"][0]["env"][0];
    let key_ref = &env["valueFrom"]["secretKeyRef"];
    let pod = &find_doc(&docs, "Deployment", "analytics")["spec"]["template"]["spec"];
    let mounted = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .flat_map(|v| {
            v["projected"]["sources"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|s| s["secret"]["name"] == key_ref["name"])
        .expect("the Redis password Secret is mounted for samlgate");
    assert_eq!(mounted["secret"]["items"][0]["key"], key_ref["key"]);
    assert_eq!(
        mounted["secret"]["items"][0]["path"].as_str(),
        toml_str(&config, "state.redis_password_file")
    );
}

// ---------------------------------------------------------------------------------------------
// Example configs and their companions
// ---------------------------------------------------------------------------------------------

#[test]
fn every_example_config_passes_check_config() {
    for path in example_configs() {
        checked_config(&read(&path), &path.display().to_string());
    }
}

#[test]
fn heavyai_example_receives_the_idp_post_at_saml_post() {
    let path = root().join("deploy/examples/heavyai-immerse/samlgate.toml");
    let (_dir, config) = checked_config(&read(&path), "the HEAVY.AI example");
    let xml = run_ok(&mut samlgate(&[
        "metadata",
        "--config",
        config.to_str().expect("UTF-8"),
    ]));
    assert!(
        xml.contains(r#"Location="https://immerse.example.com/saml-post""#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"entityID="https://immerse.example.com/saml/metadata""#),
        "{xml}"
    );
    let t = example("heavyai-immerse");
    assert_eq!(toml_str(&t, "upstream"), Some("http://127.0.0.1:6273"));
    assert!(t["authz"]["allowed_groups"]
        .as_array()
        .is_some_and(|g| !g.is_empty()));
}

/// `[section] key = value` lines of an INI file (Grafana's format), comments dropped.
fn parse_ini(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key = value: {line}"));
        out.entry(section.clone())
            .or_default()
            .insert(k.trim().to_string(), v.trim().to_string());
    }
    out
}

#[test]
fn grafana_ini_trusts_exactly_the_headers_samlgate_sets_and_only_from_loopback() {
    let t = example("grafana");
    let ini = parse_ini(&read(&root().join("deploy/examples/grafana/grafana.ini")));
    let proxy = &ini["auth.proxy"];
    assert_eq!(proxy["enabled"], "true");
    assert_eq!(
        Some(proxy["header_name"].as_str()),
        toml_str(&t, "headers.user")
    );
    assert_eq!(proxy["whitelist"], "127.0.0.1");
    assert_eq!(proxy["enable_login_token"], "false");

    // headers = Email:X-WEBAUTH-EMAIL Name:... Groups:...  (space or comma separated)
    let mapped: BTreeMap<&str, &str> = proxy["headers"]
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(|pair| pair.split_once(':').expect("Field:Header"))
        .collect();
    let expected = [
        ("Email", "headers.email"),
        ("Name", "headers.preferred_username"),
        ("Groups", "headers.groups"),
        ("Role", "headers.role"),
    ];
    for (field, key) in expected {
        assert_eq!(mapped.get(field).copied(), toml_str(&t, key), "{field}");
    }
    // Any other trusted header could be forged by a client: samlgate strips only its own.
    assert_eq!(mapped.len(), expected.len(), "{mapped:?}");
    assert_eq!(toml_str(&t, "headers.groups_separator"), Some(","));
    // Grafana decodes quoted-printable exactly when headers_encoded is on.
    assert_eq!(proxy["headers_encoded"], "true");
    assert_eq!(toml_str(&t, "headers.encoding"), Some("quoted-printable"));
    // Grafana's org roles, most privileged first, and a role for everyone else.
    let roles: Vec<&str> = t["roles"]
        .as_array()
        .expect("[[roles]]")
        .iter()
        .map(|r| r["role"].as_str().expect("role"))
        .collect();
    assert_eq!(roles, ["Admin", "Editor"]);
    assert_eq!(toml_str(&t, "authz.default_role"), Some("Viewer"));

    let server = &ini["server"];
    assert_eq!(server["http_addr"], "127.0.0.1");
    let upstream = toml_str(&t, "upstream").expect("upstream");
    assert_eq!(
        upstream,
        format!("http://{}:{}", server["http_addr"], server["http_port"])
    );
    let public = toml_str(&t, "public_url").expect("public_url");
    assert_eq!(
        server["root_url"].trim_end_matches('/'),
        public.trim_end_matches('/')
    );
    assert_eq!(
        ini["auth"]["signout_redirect_url"],
        format!("{}/saml/logout", public.trim_end_matches('/'))
    );
}

#[test]
fn jupyter_config_admits_the_one_user_samlgate_admits() {
    let t = example("jupyterlab");
    let py_path = root().join("deploy/examples/jupyterlab/jupyter_server_config.py");
    let py = read(&py_path);
    // Valid Python (syntax only: jupyter-server itself is not installed here).
    run_ok(
        Command::new(venv_tool("python"))
            .args(["-c", "import ast, sys; ast.parse(open(sys.argv[1]).read())"])
            .arg(&py_path),
    );
    let py_string = |prefix: &str| -> String {
        py.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().trim_matches('"').to_string())
            .unwrap_or_else(|| panic!("no `{prefix}` line in jupyter_server_config.py"))
    };
    let user = py_string("JUPYTER_USER = ");
    let allowed: Vec<&str> = t["authz"]["allowed_users"]
        .as_array()
        .expect("allowed_users")
        .iter()
        .map(|v| v.as_str().expect("string"))
        .collect();
    assert_eq!(allowed, vec![user.as_str()], "exactly the one Jupyter user");
    assert!(t["authz"]
        .get("allowed_groups")
        .and_then(|g| g.as_array())
        .is_none_or(|g| g.is_empty()));
    assert_eq!(py_string("c.ServerApp.ip = "), "127.0.0.1");
    let port = py_string("c.ServerApp.port = ");
    assert_eq!(
        toml_str(&t, "upstream").map(str::to_string),
        Some(format!("http://127.0.0.1:{port}"))
    );
    assert!(py.contains(r#"headers.get("X-Forwarded-User""#));
    let host = toml_str(&t, "public_url")
        .and_then(|u| u.strip_prefix("https://"))
        .and_then(|h| h.split(':').next())
        .expect("public_url host");
    assert!(
        py.contains(&format!("\"{host}\"")),
        "local_hostnames must name {host}"
    );
}

// ---------------------------------------------------------------------------------------------
// The IdP guide's configs
// ---------------------------------------------------------------------------------------------

#[test]
fn idp_guide_configs_pass_check_config() {
    let doc = read(&root().join("docs/idp-setup.md"));
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```toml") => current = Some(String::new()),
            (Some(b), l) if l.starts_with("```") => {
                blocks.push(std::mem::take(b));
                current = None;
            }
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            _ => {}
        }
    }
    assert!(
        blocks.len() >= 3,
        "one complete samlgate.toml per IdP (Okta, OneLogin, Entra ID)"
    );
    for (i, block) in blocks.iter().enumerate() {
        checked_config(block, &format!("docs/idp-setup.md toml block #{}", i + 1));
    }
}

// ---------------------------------------------------------------------------------------------
// Container image
// ---------------------------------------------------------------------------------------------

/// One Dockerfile instruction: keyword (upper case) and its arguments, continuations joined.
#[derive(Debug)]
struct Instruction {
    stage: usize,
    keyword: String,
    args: String,
}

fn dockerfile() -> Vec<Instruction> {
    let text = read(&root().join("deploy/Dockerfile"));
    let mut out = Vec::new();
    let mut stage = 0usize;
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                pending.push_str(part);
                pending.push(' ');
                continue;
            }
            None => pending.push_str(trimmed),
        }
        let full = std::mem::take(&mut pending);
        let (keyword, args) = full.split_once(char::is_whitespace).unwrap_or((&full, ""));
        let keyword = keyword.to_ascii_uppercase();
        if keyword == "FROM" {
            stage += 1;
        }
        out.push(Instruction {
            stage,
            keyword,
            args: args.split_whitespace().collect::<Vec<_>>().join(" "),
        });
    }
    out
}

/// Packages named by `apt-get install` in the RUN instructions of one stage.
fn apt_packages(instructions: &[Instruction], stage: usize) -> BTreeSet<String> {
    let mut pkgs = BTreeSet::new();
    for i in instructions
        .iter()
        .filter(|i| i.stage == stage && i.keyword == "RUN")
    {
        for command in i.args.split("&&") {
            let words: Vec<&str> = command.split_whitespace().collect();
            if let Some(pos) = words.windows(2).position(|w| w == ["apt-get", "install"]) {
                pkgs.extend(
                    words[pos + 2..]
                        .iter()
                        .filter(|w| !w.starts_with('-'))
                        .map(|w| w.to_string()),
                );
            }
        }
    }
    pkgs
}

/// Debian packages that own the shared libraries the binary names as NEEDED.
fn packages_of_needed_libraries(binary: &str) -> BTreeMap<String, String> {
    let dynamic = run_ok(Command::new(system_tool("readelf")).args(["-dW", binary]));
    let needed: Vec<String> = dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next().map(str::to_string))
        .collect();
    assert!(!needed.is_empty(), "no NEEDED entries in {binary}");
    let ldd = run_ok(Command::new(system_tool("ldd")).arg(binary));
    let mut soname_to_pkg = BTreeMap::new();
    for soname in needed {
        let path = ldd
            .lines()
            .map(str::trim)
            .find_map(|l| {
                if let Some((name, rest)) = l.split_once(" => ") {
                    (name == soname).then(|| rest.split_whitespace().next().map(str::to_string))?
                } else {
                    let p = l.split_whitespace().next()?;
                    (Path::new(p).file_name()?.to_str()? == soname).then(|| p.to_string())
                }
            })
            .unwrap_or_else(|| panic!("ldd does not resolve {soname}:\n{ldd}"));
        // usrmerge: dpkg may know the file under /usr/lib or under /lib.
        let candidates = [
            path.clone(),
            match path.strip_prefix("/usr") {
                Some(p) => p.to_string(),
                None => format!("/usr{path}"),
            },
        ];
        let pkg = candidates
            .iter()
            .find_map(|p| {
                let out = Command::new(system_tool("dpkg"))
                    .args(["-S", p])
                    .output()
                    .ok()?;
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                let first = text.lines().find(|l| l.contains(": /"))?;
                first.split(':').next().map(str::to_string)
            })
            .unwrap_or_else(|| panic!("no Debian package owns {path} ({soname})"));
        soname_to_pkg.insert(soname, pkg);
    }
    soname_to_pkg
}

#[test]
fn dockerfile_passes_hadolint() {
    let hadolint = venv_tool("hadolint");
    let out = run(Command::new(hadolint)
        .arg("--no-color")
        .arg(root().join("deploy/Dockerfile")));
    assert!(
        out.status.success(),
        "hadolint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dockerfile_builds_in_one_stage_and_runs_non_root_with_only_the_linked_libraries() {
    let ins = dockerfile();
    let froms: Vec<&Instruction> = ins.iter().filter(|i| i.keyword == "FROM").collect();
    assert_eq!(froms.len(), 2, "builder + runtime: {froms:?}");
    assert_eq!(froms[0].args, "rust:1-bookworm AS builder");
    assert!(
        froms[1].args.starts_with("debian:bookworm-slim"),
        "{}",
        froms[1].args
    );

    let builder_pkgs = apt_packages(&ins, 1);
    let want: BTreeSet<String> = [
        "pkg-config",
        "libxml2-dev",
        "libxmlsec1-dev",
        "libssl-dev",
        "libclang-dev",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(builder_pkgs, want, "builder packages");
    assert!(
        ins.iter().any(|i| i.stage == 1
            && i.keyword == "RUN"
            && i.args
                .contains("cargo build --release --locked --no-default-features")),
        "the builder runs cargo build --release --locked --no-default-features (no dev tools \
         in a production image)"
    );

    // Runtime stage.
    let runtime: Vec<&Instruction> = ins.iter().filter(|i| i.stage == 2).collect();
    let last = |kw: &str| {
        runtime
            .iter()
            .rev()
            .find(|i| i.keyword == kw)
            .map(|i| i.args.as_str())
    };
    let user = last("USER").expect("USER in the runtime stage");
    let uid = user.split(':').next().unwrap_or_default();
    assert_eq!(uid, "10001", "numeric non-root user, got {user}");
    assert!(runtime
        .iter()
        .any(|i| i.keyword == "RUN" && i.args.contains("--uid 10001")));
    assert!(runtime
        .iter()
        .any(|i| i.keyword == "COPY" && i.args.starts_with("--from=builder ")));
    assert_eq!(last("EXPOSE"), Some("8443"));
    assert_eq!(last("ENTRYPOINT"), Some(r#"["samlgate"]"#));
    assert_eq!(
        last("CMD"),
        Some(r#"["run", "--config", "/etc/samlgate/samlgate.toml"]"#)
    );
    assert!(
        !runtime.iter().any(|i| i.keyword == "HEALTHCHECK"),
        "no HEALTHCHECK: the image has no HTTP client; orchestrators probe /healthz"
    );

    // The runtime packages are exactly the owners of the libraries the binary links, except
    // what debian:bookworm-slim already has, plus the CA bundle for https upstreams.
    let in_base_image = ["libc6", "libgcc-s1"];
    let linked = packages_of_needed_libraries(samlgate_bin());
    let needed: BTreeSet<String> = linked
        .values()
        .filter(|p| !in_base_image.contains(&p.as_str()))
        .cloned()
        .collect();
    let mut installed = apt_packages(&ins, 2);
    assert!(
        installed.remove("ca-certificates"),
        "ca-certificates for https upstreams"
    );
    assert_eq!(
        installed, needed,
        "runtime packages vs the owners of the NEEDED libraries {linked:?}"
    );
}

#[test]
fn dockerignore_admits_exactly_what_the_builder_copies_and_cargo_needs_nothing_else() {
    let ins = dockerfile();
    let sources: Vec<String> = ins
        .iter()
        .filter(|i| i.stage == 1 && i.keyword == "COPY" && !i.args.starts_with("--from"))
        .flat_map(|i| {
            let words: Vec<&str> = i.args.split_whitespace().collect();
            words[..words.len() - 1]
                .iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(sources.contains(&"Cargo.lock".to_string()), "{sources:?}");

    let ignore = read(&root().join(".dockerignore"));
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        patterns.first(),
        Some(&"*"),
        "allow-list: exclude everything first"
    );
    let admitted: BTreeSet<&str> = patterns
        .iter()
        .filter_map(|p| p.strip_prefix('!'))
        .map(|p| p.trim_end_matches('/'))
        .collect();
    let copied: BTreeSet<&str> = sources.iter().map(|s| s.trim_end_matches('/')).collect();
    assert_eq!(
        admitted, copied,
        ".dockerignore vs the builder's COPY sources"
    );

    // A build context with only those files is a complete Cargo package: the manifest's
    // targets (the [[bench]] files) exist and the lock file matches.
    let ctx = tempfile::tempdir().expect("tempdir");
    for s in &copied {
        let status = Command::new("cp")
            .arg("-r")
            .arg(root().join(s))
            .arg(ctx.path().join(s))
            .status()
            .expect("cp");
        assert!(status.success(), "cp {s}");
    }
    let host = run_ok(Command::new("rustc").arg("-vV"))
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("rustc host triple");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_ok(
        Command::new(cargo)
            .args(["fetch", "--offline", "--locked", "--target", &host])
            .arg("--manifest-path")
            .arg(ctx.path().join("Cargo.toml")),
    );
}

// ---------------------------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------------------------

fn unit_directives(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let unit = read(&root().join("deploy/systemd/samlgate.service"));
    let d = unit_directives(&unit);
    let get = |k: &str| -> Vec<&str> {
        d.iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let one = |k: &str| -> &str {
        let v = get(k);
        assert_eq!(v.len(), 1, "{k}: {v:?}");
        v[0]
    };
    assert!(one("ExecStartPre").contains(" check-config --config /etc/samlgate/samlgate.toml"));
    assert!(one("ExecStart").contains(" run --config /etc/samlgate/samlgate.toml"));
    assert_eq!(one("KillSignal"), "SIGTERM");
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("RestartPreventExitStatus"), "2");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("ReadOnlyPaths"), "/etc/samlgate");
    assert_eq!(one("CapabilityBoundingSet"), "", "no capabilities at all");
    assert_eq!(one("AmbientCapabilities"), "");
    assert_eq!(one("User"), "samlgate");
    let stop: u64 = one("TimeoutStopSec").parse().expect("seconds");
    assert!(
        stop > 30,
        "TimeoutStopSec must exceed the default 30 s drain"
    );

    // systemd-analyze on a copy whose binary path exists, so that the only thing checked is
    // the unit itself (the real path, /usr/local/bin/samlgate, is not installed here).
    let analyze = system_tool("systemd-analyze");
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("samlgate.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/samlgate", samlgate_bin()),
    )
    .expect("write");
    let out = run(Command::new(&analyze).arg("verify").arg(&copy));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("samlgate.service"),
        "systemd-analyze verify:\n{stderr}"
    );
    // Exposure 2.0 of 10 at most ("OK"); the unit scores about 1.2.
    let out = run(Command::new(&analyze)
        .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
        .arg(&copy));
    assert!(
        out.status.success(),
        "systemd-analyze security above threshold:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
