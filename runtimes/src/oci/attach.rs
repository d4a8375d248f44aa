//! The attach protocol between a container's shim and the agent, on the
//! shim's unix socket: frames of `[channel][length: u32, big endian][data]`
//! on the channels of Kubernetes' remote command protocol (0 stdin, 1
//! stdout, 2 stderr, 4 terminal resize, 255 close a stream).

use std::path::{Path, PathBuf};

/// A socket of container `id` (`kind`: "attach", "console") in `dir`,
/// named by a hash of the id: a unix socket's path must stay short (108
/// bytes), and ids carry container names of up to 63 characters.
pub fn socket_path(dir: &Path, id: &str, kind: &str) -> PathBuf {
    // FNV-1a: stable across builds, so that an upgraded agent still finds
    // the sockets of shims an older one started.
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    dir.join(format!("{hash:016x}.{kind}"))
}

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const RESIZE: u8 = 4;
pub const CLOSE: u8 = 255;

/// Frames larger than this are refused (the stream is broken).
const MAX_FRAME: usize = 1 << 20;

/// One frame.
pub fn frame(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 5);
    out.push(channel);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// Takes the complete frames off the front of `buf`; `None` if the stream
/// is broken (a frame too large to be one of these).
pub fn take_frames(buf: &mut Vec<u8>) -> Option<Vec<(u8, Vec<u8>)>> {
    let mut frames = Vec::new();
    let mut at = 0;
    while buf.len() - at >= 5 {
        let len = u32::from_be_bytes(buf[at + 1..at + 5].try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME {
            return None;
        }
        if buf.len() - at - 5 < len {
            break;
        }
        frames.push((buf[at], buf[at + 5..at + 5 + len].to_vec()));
        at += 5 + len;
    }
    buf.drain(..at);
    Some(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths_are_short_and_stable() {
        let long = format!("0123456789ab-{}-0", "c".repeat(63));
        let p = socket_path(Path::new("/run/peapod/oci/sock"), &long, "attach");
        assert_eq!(
            p,
            socket_path(Path::new("/run/peapod/oci/sock"), &long, "attach")
        );
        assert_ne!(
            p,
            socket_path(Path::new("/run/peapod/oci/sock"), "other", "attach")
        );
        assert!(p.as_os_str().len() < 60, "{}", p.display());
    }

    #[test]
    fn frames_are_taken_whole_whatever_the_reads() {
        let mut wire = frame(STDOUT, b"hello");
        wire.extend(frame(RESIZE, br#"{"Width":80,"Height":24}"#));
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for chunk in wire.chunks(3) {
            buf.extend_from_slice(chunk);
            got.extend(take_frames(&mut buf).unwrap());
        }
        assert!(buf.is_empty());
        assert_eq!(got[0], (STDOUT, b"hello".to_vec()));
        assert_eq!(got[1].0, RESIZE);
        let mut broken = vec![STDIN, 0xff, 0xff, 0xff, 0xff];
        assert!(take_frames(&mut broken).is_none());
    }
}
