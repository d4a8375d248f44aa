//! The attach protocol between a container's shim and the agent, on the
//! shim's unix socket: frames of `[channel][length: u32, big endian][data]`
//! on the channels of Kubernetes' remote command protocol (0 stdin, 1
//! stdout, 2 stderr, 4 terminal resize, 255 close a stream).

/// The socket's name in the container's state directory.
pub const SOCKET: &str = "attach.sock";

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
