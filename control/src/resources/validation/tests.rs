use serde_json::json;

use super::Errors;
use super::pod::pod_spec;

/// The `field: detail` of each error for `spec`.
fn errors(spec: serde_json::Value) -> Vec<String> {
    let mut errs = Errors::default();
    pod_spec(&spec, "spec", &[], &mut errs);
    errs.0
        .into_iter()
        .map(|e| format!("{}: {}", e.field, e.detail))
        .collect()
}

fn with_profile(pod: serde_json::Value, container: serde_json::Value) -> serde_json::Value {
    json!({
        "securityContext": {"seccompProfile": pod},
        "containers": [{"name": "c", "image": "busybox", "securityContext": {"seccompProfile": container}}],
    })
}

#[test]
fn seccomp_profiles_are_a_known_type_and_a_file_beneath_the_seccomp_directory() {
    let ok = with_profile(
        json!({"type": "RuntimeDefault"}),
        json!({"type": "Localhost", "localhostProfile": "profiles/audit.json"}),
    );
    assert_eq!(errors(ok), Vec::<String>::new());

    let bad = with_profile(
        json!({"type": "Lax"}),
        json!({"type": "Localhost", "localhostProfile": "../../etc/profile.json"}),
    );
    let errs = errors(bad);
    assert!(
        errs.iter()
            .any(|e| e.starts_with("spec.securityContext.seccompProfile.type: supported values")),
        "{errs:?}"
    );
    assert!(
        errs.contains(&"spec.containers[0].securityContext.seccompProfile.localhostProfile: must not contain '..'".to_string()),
        "{errs:?}"
    );

    let errs = errors(with_profile(
        json!({"type": "Unconfined", "localhostProfile": "x.json"}),
        json!({"type": "Localhost"}),
    ));
    assert!(
        errs.iter()
            .any(|e| e.ends_with("can only be set when seccomp type is Localhost")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.ends_with("must be set when seccomp type is Localhost")),
        "{errs:?}"
    );
    let errs = errors(with_profile(
        json!({"type": "Localhost", "localhostProfile": "/abs.json"}),
        json!(null),
    ));
    assert!(
        errs.iter().any(|e| e.ends_with("must be a relative path")),
        "{errs:?}"
    );
}
