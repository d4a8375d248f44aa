//! Images: pulled from OCI distribution registries with `oci-client`,
//! layers kept once in a content-addressed store shared by every pod
//! (`<root>/layers/<digest>/` unpacked, ready for overlayfs), and per
//! reference the manifest digest and image config, in a record named by
//! the SHA-256 of the reference (names that differ never share a record).

mod overlay;
mod push;
mod unpack;

pub use overlay::{mount_rootfs, unmount};
pub use push::push_wasm;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

/// Layer media types that hold a Wasm module or component rather than a
/// filesystem.
pub const WASM_LAYER_TYPES: &[&str] = &[
    "application/wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
];
/// The config media type of Wasm OCI artifacts.
pub const WASM_CONFIG_TYPE: &str = "application/vnd.wasm.config.v0+json";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {0:?}: {1}")]
    Reference(String, String),
    #[error("pulling {image}: {message}")]
    Pull { image: String, message: String },
    #[error("image {0:?} is not present on this node and imagePullPolicy is Never")]
    NeverPull(String),
    #[error("storing image {image}: {source}")]
    Io {
        image: String,
        source: std::io::Error,
    },
}

/// What a pull is allowed to do (`imagePullPolicy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn parse(s: Option<&str>) -> PullPolicy {
        match s {
            Some("Always") => PullPolicy::Always,
            Some("Never") => PullPolicy::Never,
            _ => PullPolicy::IfNotPresent,
        }
    }
}

/// Credentials for a registry host (from `imagePullSecrets`).
#[derive(Clone, Debug)]
pub struct Credentials {
    pub registry: String,
    pub username: String,
    pub password: String,
}

/// The parts of an image config a container starts from.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ImageConfig {
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    #[serde(rename = "User", default)]
    pub user: Option<String>,
}

/// A pulled image, ready to run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Image {
    pub reference: String,
    /// `sha256:...` of the manifest: the `imageID` pods report.
    pub digest: String,
    pub config: ImageConfig,
    /// Unpacked filesystem layers, bottom first.
    pub layers: Vec<PathBuf>,
    /// The module or component, for a Wasm artifact.
    pub wasm: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    config: ImageConfig,
}

pub struct ImageStore {
    root: PathBuf,
    client: Client,
    /// One pull per layer digest at a time.
    layer_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

/// A content digest (`algorithm:hex`, as the manifest names it) as a file
/// name, or `None` when it is not one: the manifest comes from the
/// registry, and a digest such as `..` must not name a path.
pub fn digest_file_name(digest: &str) -> Option<String> {
    let (algorithm, hex) = digest.split_once(':')?;
    let algorithm_ok = !algorithm.is_empty()
        && algorithm
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
    let hex_ok = hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    (algorithm_ok && hex_ok && !algorithm.starts_with('.')).then(|| format!("{algorithm}_{hex}"))
}

impl ImageStore {
    /// A store under `root` that talks plain HTTP to `insecure` registries
    /// (`host:port`) only.
    pub fn new(root: &Path, insecure: Vec<String>) -> ImageStore {
        // oci-client is built without a bundled crypto provider: use ring,
        // as the rest of Peapod does (a no-op when one is installed).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(insecure),
            // A registry that stops sending fails the pull instead of
            // holding the pod in ContainerCreating for ever. A pull makes
            // two requests before the first byte of a layer, so a silent
            // registry fails it in a minute (kubelet's image pull progress
            // deadline).
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(30)),
            ..Default::default()
        });
        ImageStore {
            root: root.to_path_buf(),
            client,
            layer_locks: Mutex::new(HashMap::new()),
        }
    }

    fn record_path(&self, reference: &str) -> PathBuf {
        use sha2::Digest;
        let hash = sha2::Sha256::digest(reference.as_bytes());
        let name: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        self.root.join("images").join(format!("{name}.json"))
    }

    fn layer_dir(&self, digest: &str) -> Option<PathBuf> {
        Some(self.root.join("layers").join(digest_file_name(digest)?))
    }

    /// The locally stored image, if any.
    pub fn local(&self, reference: &str) -> Option<Image> {
        let data = std::fs::read(self.record_path(reference)).ok()?;
        let image: Image = serde_json::from_slice(&data).ok()?;
        let complete = image
            .layers
            .iter()
            .all(|l| l.with_extension("done").exists())
            && image.wasm.as_ref().is_none_or(|w| w.exists());
        complete.then_some(image)
    }

    /// Makes `reference` available locally as `policy` allows.
    pub async fn pull(
        &self,
        reference: &str,
        policy: PullPolicy,
        credentials: &[Credentials],
    ) -> Result<Image, ImageError> {
        let local = self.local(reference);
        match (policy, local) {
            (PullPolicy::Never, None) => return Err(ImageError::NeverPull(reference.into())),
            (PullPolicy::Never | PullPolicy::IfNotPresent, Some(image)) => return Ok(image),
            _ => {}
        }
        let parsed: Reference = reference.parse().map_err(|e: oci_client::ParseError| {
            ImageError::Reference(reference.into(), e.to_string())
        })?;
        let auth = credentials
            .iter()
            .find(|c| c.registry == parsed.resolve_registry() || c.registry == parsed.registry())
            .map_or(RegistryAuth::Anonymous, |c| {
                RegistryAuth::Basic(c.username.clone(), c.password.clone())
            });
        let pull_error = |e: oci_client::errors::OciDistributionError| ImageError::Pull {
            image: reference.into(),
            message: e.to_string(),
        };
        let (manifest, digest, config) = self
            .client
            .pull_manifest_and_config(&parsed, &auth)
            .await
            .map_err(pull_error)?;
        let io = |source| ImageError::Io {
            image: reference.into(),
            source,
        };
        let mut layers = Vec::new();
        let mut wasm = None;
        for layer in &manifest.layers {
            let dir = self
                .layer_dir(&layer.digest)
                .ok_or_else(|| ImageError::Pull {
                    image: reference.into(),
                    message: format!(
                        "the manifest names a layer by an invalid digest {:?}",
                        layer.digest
                    ),
                })?;
            if WASM_LAYER_TYPES.contains(&layer.media_type.as_str()) {
                let file = dir.join("module.wasm");
                if !file.exists() {
                    tokio::fs::create_dir_all(&dir).await.map_err(io)?;
                    let tmp = dir.join("module.wasm.tmp");
                    let mut out = tokio::fs::File::create(&tmp).await.map_err(io)?;
                    self.client
                        .pull_blob(&parsed, layer, &mut out)
                        .await
                        .map_err(pull_error)?;
                    out.flush().await.map_err(io)?;
                    tokio::fs::rename(&tmp, &file).await.map_err(io)?;
                }
                wasm = Some(file);
                continue;
            }
            self.fetch_layer(&parsed, layer, &dir)
                .await
                .map_err(|e| match e {
                    LayerError::Pull(e) => pull_error(e),
                    LayerError::Io(e) => io(e),
                })?;
            layers.push(dir);
        }
        let config: ImageConfig = if manifest.config.media_type == WASM_CONFIG_TYPE {
            ImageConfig::default()
        } else {
            serde_json::from_str::<ConfigFile>(&config)
                .map(|c| c.config)
                .unwrap_or_default()
        };
        let image = Image {
            reference: reference.to_string(),
            digest,
            config,
            layers,
            wasm,
        };
        let record = self.record_path(reference);
        tokio::fs::create_dir_all(record.parent().expect("has parent"))
            .await
            .map_err(io)?;
        tokio::fs::write(&record, serde_json::to_vec(&image).expect("serializes"))
            .await
            .map_err(io)?;
        Ok(image)
    }

    /// Downloads and unpacks a filesystem layer unless it already is.
    async fn fetch_layer(
        &self,
        image: &Reference,
        layer: &oci_client::manifest::OciDescriptor,
        dir: &Path,
    ) -> Result<(), LayerError> {
        let lock = self
            .layer_locks
            .lock()
            .await
            .entry(layer.digest.clone())
            .or_default()
            .clone();
        let _held = lock.lock().await;
        // The marker sits beside the layer, not in it (it would show in rootfs).
        let done = dir.with_extension("done");
        if done.exists() {
            return Ok(());
        }
        let blob = dir.with_extension("blob");
        tokio::fs::create_dir_all(dir.parent().expect("has parent"))
            .await
            .map_err(LayerError::Io)?;
        {
            let mut out = tokio::fs::File::create(&blob)
                .await
                .map_err(LayerError::Io)?;
            self.client
                .pull_blob(image, layer, &mut out)
                .await
                .map_err(LayerError::Pull)?;
            out.flush().await.map_err(LayerError::Io)?;
        }
        let gzip = layer.media_type.ends_with("gzip");
        let (blob_path, dir_path) = (blob.clone(), dir.to_path_buf());
        tokio::task::spawn_blocking(move || {
            let _ = std::fs::remove_dir_all(&dir_path);
            let file = std::fs::File::open(&blob_path)?;
            let unpacked = unpack::unpack(std::io::BufReader::new(file), gzip, &dir_path);
            if unpacked.is_err() {
                // A refused layer leaves nothing half-made behind.
                let _ = std::fs::remove_dir_all(&dir_path);
            }
            unpacked
        })
        .await
        .map_err(|e| LayerError::Io(std::io::Error::other(e)))?
        .map_err(LayerError::Io)?;
        let _ = tokio::fs::remove_file(&blob).await;
        tokio::fs::write(&done, b"").await.map_err(LayerError::Io)?;
        Ok(())
    }
}

enum LayerError {
    Pull(oci_client::errors::OciDistributionError),
    Io(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_digests_name_layer_directories() {
        let hex = "a".repeat(64);
        assert_eq!(
            digest_file_name(&format!("sha256:{hex}")),
            Some(format!("sha256_{hex}"))
        );
        for bad in [
            "..",
            "sha256:..",
            "sha256:../../etc",
            &format!("../sha256:{hex}"),
            &format!("sha256:{hex}/x"),
            &format!(".:{hex}"),
            "sha256:abc",
            "",
        ] {
            assert_eq!(digest_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn references_that_once_shared_a_record_have_their_own() {
        let store = ImageStore::new(Path::new("/nonexistent"), Vec::new());
        let a = store.record_path("registry:5000/a_b/c:1");
        let b = store.record_path("registry:5000/a/b_c:1");
        assert_ne!(a, b);
        assert_eq!(a, store.record_path("registry:5000/a_b/c:1"));
    }
}
