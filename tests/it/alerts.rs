//! The shipped alert rules (docs/alerts/keyviz-rules.yml) are valid for the real
//! `promtool check rules` and pass their unit tests (`promtool test rules`
//! docs/alerts/keyviz-rules.test.yml). scripts/install-test-deps.sh installs Debian's
//! `prometheus` package, which ships promtool, when it is missing.

use std::path::PathBuf;
use std::process::Command;

fn alerts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/alerts")
}

fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(alerts_dir())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}): scripts/install-test-deps.sh installs it")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn shipped_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let (ok, text) = promtool(&["check", "rules", "keyviz-rules.yml"]);
    assert!(ok, "promtool check rules failed:\n{text}");
    assert!(text.contains("SUCCESS: 7 rules found"), "{text}");
    let (ok, text) = promtool(&["test", "rules", "keyviz-rules.test.yml"]);
    assert!(ok, "promtool test rules failed:\n{text}");
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn every_alert_has_a_summary_a_description_and_a_runbook() {
    let text = std::fs::read_to_string(alerts_dir().join("keyviz-rules.yml")).expect("rules");
    let alerts = text.matches("- alert: ").count();
    assert_eq!(alerts, 7);
    for field in ["summary:", "description:", "runbook:", "severity:"] {
        assert_eq!(
            text.matches(field).count(),
            alerts,
            "{field} on every alert"
        );
    }
}
