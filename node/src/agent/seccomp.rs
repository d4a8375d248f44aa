//! Which seccomp filter a container gets: its `seccompProfile` over the
//! pod's. Without one, `RuntimeDefault` (Kubernetes' default is
//! `Unconfined`; Peapod's is the safer one, as kubelet's
//! `--seccomp-default` makes it); `Unconfined` only when asked.
//! `Localhost` names a file beneath the node's seccomp directory
//! (`<data dir>/seccomp`, as kubelet's `<root dir>/seccomp`), opened by the
//! kernel beneath it so that no name or link leads out.

use std::io::Read;
use std::path::{Component, Path};

use k8s_openapi::api::core::v1::{Container, Pod, SeccompProfile};
use peapod_runtimes::oci::Seccomp;
use peapod_runtimes::oci::seccomp::{Profile, parse_profile};
use rustix::fs::{Mode, OFlags, ResolveFlags};

/// A profile larger than this is refused rather than read.
const MAX_PROFILE_BYTES: u64 = 1 << 20;

/// The profile that applies to `c` in `pod`.
fn profile<'a>(pod: &'a Pod, c: &'a Container) -> Option<&'a SeccompProfile> {
    c.security_context
        .as_ref()
        .and_then(|s| s.seccomp_profile.as_ref())
        .or(pod
            .spec
            .as_ref()
            .and_then(|p| p.security_context.as_ref())
            .and_then(|p| p.seccomp_profile.as_ref()))
}

/// The filter for `c`, loading a `Localhost` profile from `dir`; the error
/// says what is wrong with the profile, for the container's status.
pub fn resolve(dir: &Path, pod: &Pod, c: &Container) -> Result<Seccomp, String> {
    let Some(p) = profile(pod, c) else {
        return Ok(Seccomp::RuntimeDefault);
    };
    match p.type_.as_str() {
        "Unconfined" => Ok(Seccomp::Unconfined),
        "RuntimeDefault" => Ok(Seccomp::RuntimeDefault),
        "Localhost" => {
            let name = p.localhost_profile.as_deref().unwrap_or_default();
            load(dir, name).map(|p| Seccomp::Profile(Box::new(p)))
        }
        other => Err(format!("unknown seccomp profile type {other:?}")),
    }
}

fn load(dir: &Path, name: &str) -> Result<Profile, String> {
    let shown = dir.join(name);
    let fail = |why: String| format!("cannot load seccomp profile {shown:?}: {why}");
    let relative = Path::new(name);
    if name.is_empty()
        || relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(fail("it must be a relative path without '..'".into()));
    }
    let root = rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail(std::io::Error::from(e).to_string()))?;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    let fd = rustix::fs::openat2(
        &root,
        relative,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        resolve,
    )
    .map_err(|e| match e {
        rustix::io::Errno::XDEV | rustix::io::Errno::LOOP => {
            fail("it leads out of the seccomp directory".into())
        }
        e => fail(std::io::Error::from(e).to_string()),
    })?;
    let mut json = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_PROFILE_BYTES + 1)
        .read_to_end(&mut json)
        .map_err(|e| fail(e.to_string()))?;
    if json.len() as u64 > MAX_PROFILE_BYTES {
        return Err(fail(format!("larger than {MAX_PROFILE_BYTES} bytes")));
    }
    parse_profile(&json).map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(profile: Option<SeccompProfile>, container: Option<SeccompProfile>) -> (Pod, Container) {
        let pod = Pod {
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                security_context: profile.map(|p| k8s_openapi::api::core::v1::PodSecurityContext {
                    seccomp_profile: Some(p),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = Container {
            security_context: container.map(|p| k8s_openapi::api::core::v1::SecurityContext {
                seccomp_profile: Some(p),
                ..Default::default()
            }),
            ..Default::default()
        };
        (pod, c)
    }

    fn of(type_: &str, file: Option<&str>) -> Option<SeccompProfile> {
        Some(SeccompProfile {
            type_: type_.into(),
            localhost_profile: file.map(String::from),
        })
    }

    #[test]
    fn the_container_profile_wins_and_runtime_default_is_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let (p, c) = pod(None, None);
        assert!(matches!(
            resolve(dir.path(), &p, &c),
            Ok(Seccomp::RuntimeDefault)
        ));
        let (p, c) = pod(of("Unconfined", None), None);
        assert!(matches!(
            resolve(dir.path(), &p, &c),
            Ok(Seccomp::Unconfined)
        ));
        let (p, c) = pod(of("Unconfined", None), of("RuntimeDefault", None));
        assert!(matches!(
            resolve(dir.path(), &p, &c),
            Ok(Seccomp::RuntimeDefault)
        ));
    }

    #[test]
    fn localhost_profiles_load_only_from_beneath_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let seccomp = dir.path().join("seccomp");
        std::fs::create_dir_all(seccomp.join("profiles")).unwrap();
        let json = r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#;
        std::fs::write(seccomp.join("profiles/ok.json"), json).unwrap();
        std::fs::write(dir.path().join("outside.json"), json).unwrap();
        std::os::unix::fs::symlink("../outside.json", seccomp.join("link.json")).unwrap();
        std::fs::write(seccomp.join("bad.json"), "{").unwrap();

        let load = |name: &str| {
            let (p, c) = pod(None, of("Localhost", Some(name)));
            resolve(&seccomp, &p, &c)
        };
        assert!(matches!(load("profiles/ok.json"), Ok(Seccomp::Profile(_))));
        for (name, why) in [
            ("../outside.json", "relative path"),
            ("/etc/passwd", "relative path"),
            ("link.json", "leads out"),
            ("missing.json", "No such file"),
            ("bad.json", "EOF"),
            ("", "relative path"),
        ] {
            let err = load(name).err().unwrap_or_default();
            assert!(err.contains(why), "{name}: {err}");
        }
    }
}
