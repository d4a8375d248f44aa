//! Pushing a Wasm component to an OCI registry as an artifact: one layer
//! of media type `application/wasm` and a `application/vnd.wasm.config.v0+json`
//! config, the shape the image store recognises as a Wasm image.

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::{ImageError, WASM_CONFIG_TYPE};

/// Pushes `wasm` (a component's bytes) as `reference`; plain HTTP is used
/// for registries in `insecure`. Returns the manifest URL.
pub async fn push_wasm(
    wasm: Vec<u8>,
    reference: &str,
    insecure: Vec<String>,
    auth: Option<(String, String)>,
) -> Result<String, ImageError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    if !wasm.starts_with(b"\0asm") {
        return Err(ImageError::Pull {
            image: reference.into(),
            message: "the file is not a WebAssembly binary".into(),
        });
    }
    let parsed: Reference = reference.parse().map_err(|e: oci_client::ParseError| {
        ImageError::Reference(reference.into(), e.to_string())
    })?;
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(insecure),
        ..Default::default()
    });
    let auth = auth.map_or(RegistryAuth::Anonymous, |(u, p)| RegistryAuth::Basic(u, p));
    let layer = ImageLayer::new(wasm, "application/wasm".to_string(), None);
    let config = Config::new(b"{}".to_vec(), WASM_CONFIG_TYPE.to_string(), None);
    let pushed = client
        .push(&parsed, &[layer], config, &auth, None)
        .await
        .map_err(|e| ImageError::Pull {
            image: reference.into(),
            message: format!("push failed: {e}"),
        })?;
    Ok(pushed.manifest_url)
}
