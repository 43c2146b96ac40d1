//! The Helm chart, checked with real tools: the Helm v4 SDK (helm-python-sdk) lints it
//! strictly and renders it for the default values and a three-region values file, every
//! rendered manifest validates against Kubernetes' schemas (kubernetes-validate), and
//! values.schema.json refuses a region without a name and a negative capacity.
//! scripts/test.sh installs the tools into target/py-tools.
use std::path::PathBuf;
use std::process::Command;

#[test]
fn the_chart_lints_renders_and_validates_and_its_schema_refuses_bad_values() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var_os("FJORD_PY_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/py-tools"))
        .join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test.sh (ensure_python_tools makes it)",
        python.display()
    );
    let out = Command::new(&python)
        .arg(root.join("tests/helm/test_chart.py"))
        .output()
        .expect("running the chart checks");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "chart checks failed:\n{text}");
    assert!(text.contains("0 failures"), "{text}");
}
