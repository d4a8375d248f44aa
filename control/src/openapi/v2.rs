//! `/openapi/v2`: an OpenAPI v2 document without definitions.
//!
//! kubectl validates a `kind: List` manifest on the client, against the
//! OpenAPI v2 models (it cannot ask the server to validate a List, which
//! is not a kind the server serves), and fails when `/openapi/v2` is
//! missing. Peapod publishes its schemas as OpenAPI v3 only; in a v2
//! document with no models kubectl finds none for the items and leaves
//! their validation to the server, which validates each item it creates.

/// The document as gnostic's `openapi_v2.Document` protobuf, which is the
/// only encoding client-go reads: `swagger: "2.0"` and an `info`.
pub fn document() -> Vec<u8> {
    fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3) | 2, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }
    let info = [
        field(1, b"Kubernetes"),
        field(2, crate::version::GIT_VERSION.as_bytes()),
    ]
    .concat();
    [field(1, b"2.0"), field(2, &info)].concat()
}

/// Its content type, as kube-apiserver names it (the `@` of the Accept
/// client-go sends is not valid in a media type).
pub const CONTENT_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_is_a_small_protobuf_message() {
        let doc = super::document();
        assert_eq!(&doc[..5], b"\x0a\x032.0");
        assert_eq!(doc[5], 0x12);
        assert_eq!(doc[6] as usize, doc.len() - 7);
    }
}
