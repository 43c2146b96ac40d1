"""Checks helm/fjord with real tools. Run: python tests/helm/test_chart.py

- the real Helm v4 SDK (helm-python-sdk) lints the chart strictly and renders it for the
  default values, tests/helm/three-regions.yaml, the latter with the Prometheus
  operator's kinds on, cert-manager certificates, and given secrets with an external etcd;
- every manifest rendered for the default values and three-regions.yaml validates against
  Kubernetes' schemas (kubernetes-validate), and so does every manifest of a built-in kind
  in the other sets; the Prometheus operator's and cert-manager's kinds (which have no
  schema there) are checked for their required fields, the PrometheusRule's rules with
  Debian's promtool;
- the generated secrets hold what the binaries need: a token certificate of the signing
  key, certificates that chain to the cluster CA and carry the names the components are
  dialled by; each binary's config parses as TOML and points at the mounted files;
- values.schema.json refuses a region without a name, a negative capacity and an
  unknown key.

With `--export DIR` it writes the secrets the chart makes instead, for
harness/tests/it/chart.rs to use them for real (mutual TLS, join tokens).
"""
import base64
import copy
import json
import pathlib
import socket
import subprocess
import sys
import tempfile
import time
import tomllib

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "fjord"
K8S = "1.33.0"
NS = "fjord"

# Kinds from CRDs that kubernetes-validate has no schema for: the fields each must have.
CRD_REQUIRED = {
    ("monitoring.coreos.com/v1", "PodMonitor"): ["selector", "podMetricsEndpoints"],
    ("monitoring.coreos.com/v1", "PrometheusRule"): ["groups"],
    ("cert-manager.io/v1", "Certificate"): ["secretName", "dnsNames", "issuerRef"],
}


def render(values=None):
    chart = helm.Chart.load(str(CHART))
    try:
        return chart.render(values or {}, name="t", namespace=NS)
    finally:
        chart.close()


def docs_of(rendered):
    out = []
    for path, text in rendered.items():
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                out.append((path, doc))
    return out


def openssl(*args, stdin=None):
    r = subprocess.run(["openssl", *args], input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def check_crd(doc, failures, where):
    key = (doc["apiVersion"], doc["kind"])
    spec = doc.get("spec") or {}
    for field in CRD_REQUIRED[key]:
        if field not in spec:
            failures.append(f"{where}: {doc['kind']} has no spec.{field}")
    if doc["kind"] == "PrometheusRule":
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            yaml.safe_dump({"groups": spec.get("groups", [])}, f)
            f.flush()
            r = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True)
            if r.returncode != 0:
                failures.append(f"{where}: promtool: {r.stdout}{r.stderr}")


def by_kind(docs, kind):
    return {d["metadata"]["name"]: d for _, d in docs if d["kind"] == kind}


def secret_text(secret, key):
    return base64.b64decode(secret["data"][key]).decode()


def check_secrets(docs, values, failures, where):
    """The generated keys and certificates are what the binaries will load."""
    secrets = by_kind(docs, "Secret")
    cms = by_kind(docs, "ConfigMap")
    full = "t-fjord"
    tok = secrets[f"{full}-token-key"]
    pub_of_key = openssl("pkey", "-pubout", stdin=secret_text(tok, "signing-key.pem"))
    cert = cms[f"{full}-token-cert"]["data"]["signing.crt"]
    if openssl("x509", "-pubkey", "-noout", stdin=cert) != pub_of_key:
        failures.append(f"{where}: the token certificate is not of the signing key")
    if "ED25519" not in openssl("x509", "-noout", "-text", stdin=cert):
        failures.append(f"{where}: the token key is not Ed25519")
    if len(secret_text(secrets[f"{full}-download-key"], "download-key")) < 32:
        failures.append(f"{where}: the download key is short")
    if len(secret_text(secrets[f"{full}-operator-keys"], "operator-keys").strip()) < 16:
        failures.append(f"{where}: the operator key is short")
    with tempfile.TemporaryDirectory() as d:
        ca = pathlib.Path(d) / "ca.crt"
        ca.write_text(secret_text(secrets[f"{full}-tls-ca"], "tls.crt"))
        for component in ["controller", "media", "recording"]:
            s = secrets[f"{full}-tls-{component}"]
            crt = pathlib.Path(d) / f"{component}.crt"
            crt.write_text(secret_text(s, "tls.crt"))
            if secret_text(s, "ca.crt") != ca.read_text():
                failures.append(f"{where}: {component}: ca.crt is not the cluster CA")
            try:
                openssl("verify", "-CAfile", str(ca), "-purpose", "sslserver", str(crt))
                openssl("verify", "-CAfile", str(ca), "-purpose", "sslclient", str(crt))
            except RuntimeError as e:
                failures.append(f"{where}: {component}: {e}")
            text = openssl("x509", "-in", str(crt), "-noout", "-ext", "subjectAltName")
            if component == "media":
                for r in values["regions"]:
                    want = [f"DNS:*.{full}-media-{r['name']}.{NS}.svc"]
                    want += [f"DNS:{full}-media-{r['name']}-{i}" for i in range(r["replicas"])]
                    for w in want:
                        if w not in text:
                            failures.append(f"{where}: media certificate lacks {w}")


def check_configs(docs, failures, where):
    """Each binary's TOML parses and names files that its pod mounts."""
    cm = by_kind(docs, "ConfigMap")["t-fjord-config"]["data"]
    pods = {}
    for _, d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            c = d["spec"]["template"]["spec"]["containers"][0]
            mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
            pods.setdefault(c["name"], mounts)
    for name, container in [("controller.toml", "controller"), ("media.toml", "media"),
                            ("recording.toml", "recording")]:
        try:
            cfg = tomllib.loads(cm[name])
        except tomllib.TOMLDecodeError as e:
            failures.append(f"{where}: {name} is not TOML: {e}")
            continue
        if not cfg.get("etcd", {}).get("endpoints"):
            failures.append(f"{where}: {name} has no etcd endpoints")
        files = [v for v in walk(cfg) if isinstance(v, str) and v.startswith("/etc/fjord/")]
        for f in files:
            if not any(f.startswith(m + "/") for m in pods.get(container, [])):
                failures.append(f"{where}: {name} reads {f}, which the {container} pod does not mount")
    media = tomllib.loads(cm["media.toml"])
    if not media.get("token_keys"):
        failures.append(f"{where}: media.toml has no token_keys")


def check_signal_tls(docs, enabled, failures, where):
    """With media.signalTls, every media pod serves wss:// on its port from the Secret,
    advertises a wss:// URL, and the network policy lets browsers in; without, none
    (a region's own signalUrl may still be wss://, through a proxy)."""
    media = tomllib.loads(by_kind(docs, "ConfigMap")["t-fjord-config"]["data"]["media.toml"])
    if ("signal_tls" in media) != enabled:
        failures.append(f"{where}: media.toml signal_tls present: {'signal_tls' in media}")
    for name, d in by_kind(docs, "StatefulSet").items():
        c = d["spec"]["template"]["spec"]["containers"][0]
        if c["name"] != "media":
            continue
        url = next(e["value"] for e in c["env"] if e["name"] == "FJORD_MEDIA_NODE__SIGNAL_URL")
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        secrets = [v["secret"]["secretName"] for v in d["spec"]["template"]["spec"]["volumes"]
                   if "secret" in v]
        if enabled and not (url.startswith("wss://") and ports.get("wss") == 7443
                            and "media-wss" in secrets
                            and media["signal_tls"]["listen"] == "0.0.0.0:7443"):
            failures.append(f"{where}: {name} does not serve wss:// ({url}, {ports}, {secrets})")
        if not enabled and "wss" in ports:
            failures.append(f"{where}: {name} serves wss:// without media.signalTls")
    policy = by_kind(docs, "NetworkPolicy").get("t-fjord-media")
    if policy is not None:
        open_ports = {p["port"] for p in policy["spec"]["ingress"][0]["ports"]}
        if (7443 in open_ports) != enabled:
            failures.append(f"{where}: the media network policy opens 7443: {7443 in open_ports}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_turn(docs, enabled, failures, where):
    """With turn.enabled: a coturn per region whose config (which Debian's turnserver
    starts with) shares its secret with the controllers' [turn], which lists the region's
    TURN URLs; without, no trace of TURN."""
    cm = by_kind(docs, "ConfigMap")["t-fjord-config"]["data"]
    controller = tomllib.loads(cm["controller.toml"])
    turns = {n: d for n, d in by_kind(docs, "Deployment").items() if "-turn-" in n}
    if not enabled:
        if "turn" in controller or turns:
            failures.append(f"{where}: TURN rendered without turn.enabled")
        return
    servers = controller.get("turn", {}).get("servers", {})
    if servers.get("oslo") != ["turn:turn-oslo.example.org:3478?transport=udp",
                               "turn:turn-oslo.example.org:3478?transport=tcp"]:
        failures.append(f"{where}: controller [turn] servers: {servers}")
    if set(turns) != {"t-fjord-turn-oslo"}:
        failures.append(f"{where}: TURN deployments {sorted(turns)}")
    secrets = by_kind(docs, "Secret")
    shared = secret_text(secrets["t-fjord-turn-secret"], "secret")
    conf = secrets["t-fjord-turn-config"]["stringData"]["turnserver.conf"]
    if f"static-auth-secret={shared}\n" not in conf or "use-auth-secret" not in conf:
        failures.append(f"{where}: coturn's config does not carry the controllers' secret")
    for d in turns.values():
        c = d["spec"]["template"]["spec"]["containers"][0]
        if "fjord-coturn" not in c["image"] or shared in json.dumps(d):
            failures.append(f"{where}: the TURN pod's image or command line is wrong: {c}")
    # Debian's turnserver takes the rendered config (on a free loopback port here).
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "turnserver.conf"
        path.write_text(conf.replace("/tmp/", tmp + "/"))
        port = free_port()
        proc = subprocess.Popen(
            ["turnserver", "-c", str(path), "--listening-ip=127.0.0.1",
             f"--listening-port={port}", "--relay-ip=127.0.0.1"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            up = False
            for _ in range(100):
                if proc.poll() is not None:
                    break
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    up = True
                    break
                except OSError:
                    time.sleep(0.1)
            if not up:
                proc.kill()
                out = proc.communicate()[0].decode(errors="replace")[-2000:]
                failures.append(f"{where}: turnserver did not start with the rendered config: {out}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def walk(v):
    if isinstance(v, dict):
        for x in v.values():
            yield from walk(x)
    elif isinstance(v, list):
        for x in v:
            yield from walk(x)
    else:
        yield v


def export(dir_):
    """Writes the keys and certificates the chart makes for its default values into
    dir_, as the pods see them, for the Rust test that uses them for real."""
    docs = docs_of(render({}))
    secrets = by_kind(docs, "Secret")
    out = pathlib.Path(dir_)
    out.mkdir(parents=True, exist_ok=True)
    tok = secrets["t-fjord-token-key"]
    (out / "token-signing-key.pem").write_text(secret_text(tok, "signing-key.pem"))
    (out / "token-signing.crt").write_text(
        by_kind(docs, "ConfigMap")["t-fjord-token-cert"]["data"]["signing.crt"])
    (out / "operator-keys").write_text(secret_text(secrets["t-fjord-operator-keys"], "operator-keys"))
    for c in ["controller", "media", "recording"]:
        s = secrets[f"t-fjord-tls-{c}"]
        (out / "ca.crt").write_text(secret_text(s, "ca.crt"))
        (out / f"{c}.crt").write_text(secret_text(s, "tls.crt"))
        (out / f"{c}.key").write_text(secret_text(s, "tls.key"))
    # Each binary's config file and the environment of its first pod, rendered for the
    # three-region values, with the downward API's fields filled in as Kubernetes would.
    three = yaml.safe_load((pathlib.Path(__file__).parent / "three-regions.yaml").read_text())
    docs = docs_of(render(three))
    config = by_kind(docs, "ConfigMap")["t-fjord-config"]["data"]
    for kind in ("Deployment", "StatefulSet"):
        for name, d in by_kind(docs, kind).items():
            c = d["spec"]["template"]["spec"]["containers"][0]
            if c["name"] not in ("controller", "media", "recording") or (out / f"{c['name']}.env.json").exists():
                continue
            pod = f"{name}-0" if kind == "StatefulSet" else f"{name}-5d9f8c7b6-x2k4q"
            fields = {"metadata.name": pod, "status.podIP": "127.0.0.2", "status.hostIP": "127.0.0.3"}
            env = {}
            for e in c.get("env", []):
                if "valueFrom" in e:
                    env[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
                else:
                    v = e["value"]
                    for k, x in env.items():
                        v = v.replace(f"$({k})", x)
                    env[e["name"]] = v
            (out / f"{c['name']}.env.json").write_text(json.dumps(env, indent=2))
            (out / f"{c['name']}.toml").write_text(config[f"{c['name']}.toml"])
    print(f"exported the chart's secrets and configs to {out}")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--export":
        export(sys.argv[2])
        return
    failures = []
    lint = helm.lint(str(CHART), strict=True, kube_version="v" + K8S)
    errors = [m for m in lint["messages"] if m["severity"] >= 3] + lint["errors"]
    if errors:
        failures.append(f"lint: {errors}")
    base = yaml.safe_load((CHART / "values.yaml").read_text())
    three = yaml.safe_load((pathlib.Path(__file__).parent / "three-regions.yaml").read_text())
    variants = {
        "default": {},
        "three-regions": three,
        "monitoring": {**three, "metrics": {"podMonitor": True, "prometheusRule": True}},
        "cert-manager": {"tls": {"certManager": {"enabled": True, "issuer": {"name": "fjord-ca"}}}},
        "signal-tls": {"media": {"signalTls": {"enabled": True, "secretName": "media-wss"}}},
        "turn": {"turn": {"enabled": True},
                 "regions": [{**base["regions"][0], "turnHost": "turn-oslo.example.org"}]},
        "given-secrets": {"tls": {"existingSecretPrefix": "fjord-certs"},
                          "controller": {"operatorKeysSecret": "fjord-operators"},
                          "etcd": {"bundled": False, "endpoints": ["https://etcd.example.org:2379"]}},
    }
    total = 0
    for name, values in variants.items():
        docs = docs_of(render(values))
        total += len(docs)
        kinds = {d["kind"] for _, d in docs}
        for path, doc in docs:
            where = f"{name}/{path}"
            key = (doc["apiVersion"], doc["kind"])
            if key in CRD_REQUIRED:
                if name in ("default", "three-regions"):
                    failures.append(f"{where}: {doc['kind']} in {name}, where every manifest "
                                    "must validate with kubernetes-validate")
                check_crd(doc, failures, where)
                continue
            try:
                kubernetes_validate.validate(doc, K8S, strict=True)
            except kubernetes_validate.ValidationError as e:
                failures.append(f"{where}: {doc['kind']} {doc['metadata']['name']}: {e.message}")
        check_configs(docs, failures, name)
        merged = copy.deepcopy(base)
        merged.update(values)
        if name in ("default", "three-regions"):
            check_secrets(docs, merged, failures, name)
        expect = {"Deployment", "StatefulSet", "Service", "Secret", "ConfigMap",
                  "PodDisruptionBudget", "NetworkPolicy"}
        if name == "three-regions":
            expect |= {"Ingress", "PersistentVolumeClaim"}
        if name == "monitoring":
            expect |= {"PodMonitor", "PrometheusRule"}
        if name == "cert-manager":
            expect |= {"Certificate"}
        if expect - kinds:
            failures.append(f"{name}: nothing rendered of {sorted(expect - kinds)}")
        check_signal_tls(docs, name == "signal-tls", failures, name)
        check_turn(docs, name == "turn", failures, name)
        dashboards = [d for _, d in docs if d["kind"] == "ConfigMap"
                      and d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
        if len(dashboards) < 4:
            failures.append(f"{name}: {len(dashboards)} dashboard ConfigMaps, expected 4")
    try:
        render({"turn": {"enabled": True}})
        failures.append("turn without a region's turnHost rendered")
    except Exception as e:
        if "turnHost" not in str(e):
            failures.append(f"turn without turnHost failed for another reason: {e}")
    try:
        render({"media": {"signalTls": {"enabled": True}}})
        failures.append("signal-tls without a secretName rendered")
    except Exception as e:
        if "secretName" not in str(e):
            failures.append(f"signal-tls without a secretName failed for another reason: {e}")
    chart = helm.Chart.load(str(CHART))
    for what, bad in [("a region without a name", lambda v: v["regions"][0].pop("name")),
                      ("a negative capacity", lambda v: v["regions"][0].__setitem__("capacity", -1)),
                      ("an unknown key", lambda v: v["media"].__setitem__("hostNetwrok", True))]:
        v = copy.deepcopy(base)
        bad(v)
        try:
            chart.validate_schema(v)
            failures.append(f"the schema accepted {what}")
        except helm.HelmValuesError:
            pass
    try:
        chart.validate_schema(copy.deepcopy(base))
    except helm.HelmValuesError as e:
        failures.append(f"the schema refused the default values: {e}")
    chart.close()
    print(f"{total} manifests rendered in {len(variants)} variants and checked; {len(failures)} failures")
    for f in failures:
        print("  " + f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
