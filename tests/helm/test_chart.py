"""Renders and lints helm/fjord with the real Helm v4 SDK (helm-python-sdk) and checks
every rendered manifest with kubernetes-validate. Run: python tests/helm/test_chart.py"""
import copy
import pathlib
import sys

import helm_python as helm
import kubernetes_validate
import yaml

CHART = pathlib.Path(__file__).resolve().parents[2] / "helm" / "fjord"
K8S = "1.33.0"


def render(values=None):
    chart = helm.Chart.load(str(CHART))
    try:
        return chart.render(values or {}, name="t", namespace="fjord")
    finally:
        chart.close()


def main():
    failures = []
    lint = helm.lint(str(CHART), strict=True, kube_version="v" + K8S)
    errors = [m for m in lint["messages"] if m["severity"] >= 3] + lint["errors"]
    if errors:
        failures.append(f"lint: {errors}")
    docs = 0
    three = yaml.safe_load((pathlib.Path(__file__).parent / "three-regions.yaml").read_text())
    rendered = list(render().items()) + [("three-regions/" + p, t) for p, t in render(three).items()]
    for path, text in rendered:
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            docs += 1
            try:
                kubernetes_validate.validate(doc, K8S, strict=True)
            except kubernetes_validate.ValidationError as e:
                failures.append(f"{path}: {doc['kind']} {doc['metadata']['name']}: {e.message}")
    chart = helm.Chart.load(str(CHART))
    base = yaml.safe_load((CHART / "values.yaml").read_text())
    for what, bad in [("a region without a name", lambda v: v["regions"][0].pop("name")),
                      ("a negative capacity", lambda v: v["regions"][0].__setitem__("capacity", -1))]:
        v = copy.deepcopy(base)
        bad(v)
        try:
            chart.validate_schema(v)
            failures.append(f"the schema accepted {what}")
        except helm.HelmValuesError:
            pass
    print(f"{docs} manifests rendered and validated; {len(failures)} failures")
    for f in failures:
        print("  " + f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
