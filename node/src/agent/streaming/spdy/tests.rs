use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn headers(pairs: &[(&str, &str)]) -> Headers {
    let mut h = Headers::default();
    for (n, v) in pairs {
        h.push(n, *v);
    }
    h
}

fn decode_all(decoder: &mut Decoder, bytes: &[u8]) -> Vec<Frame> {
    decoder.read_buffer().extend_from_slice(bytes);
    let mut frames = Vec::new();
    while let Some(f) = decoder.decode().unwrap() {
        frames.push(f);
    }
    frames
}

#[test]
fn the_dictionary_is_the_one_kubectl_announces() {
    // Adler-32, computed here rather than by zlib, against the id in
    // the zlib header of the first header block of every session.
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in DICTIONARY.iter() {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    assert_eq!((b << 16) | a, 0xe3c6_a7c2);
    assert_eq!(DICTIONARY.len(), 1423);
}

/// The SYN_STREAMs kubectl opens for its first forwarded connection
/// (error stream 1, then data stream 3, both for port 8080, request
/// 0), compressed by C zlib 1.2.13 at level 9 with the SPDY/3
/// dictionary and a sync flush per block, as Go's spdystream does. The
/// second block is 12 bytes: it only makes sense with the first one's
/// history.
const KUBECTL_ERROR_STREAM: &str = "800300010000003d0000000100000000000078f9e3c6a7c2\
    02253a48f95b044eea16061606409ab308125f99a074cc68004e892545a989b9d0c2863515141500000000ffff";
const KUBECTL_DATA_STREAM: &str = "800300010000001600000003000000000000225333a8a44a04000000ffff";

#[test]
fn decodes_the_streams_kubectl_opens() {
    let mut decoder = Decoder::default();
    let mut bytes = hex(KUBECTL_ERROR_STREAM);
    bytes.extend(hex(KUBECTL_DATA_STREAM));
    let frames = decode_all(&mut decoder, &bytes);
    let expected = |id: u32, kind: &str| Frame::SynStream {
        stream_id: id,
        fin: false,
        headers: headers(&[("port", "8080"), ("requestid", "0"), ("streamtype", kind)]),
    };
    assert_eq!(frames, vec![expected(1, "error"), expected(3, "data")]);
    let Frame::SynStream { headers, .. } = &frames[0] else {
        unreachable!()
    };
    // kubectl names them `streamType` and `requestID`.
    assert_eq!(headers.get("streamType"), Some("error"));
    assert_eq!(headers.get("requestID"), Some("0"));
}

#[test]
fn frames_arrive_whole_however_the_bytes_are_split() {
    let mut decoder = Decoder::default();
    let mut frames = Vec::new();
    for byte in hex(KUBECTL_ERROR_STREAM) {
        decoder.read_buffer().extend_from_slice(&[byte]);
        if let Some(f) = decoder.decode().unwrap() {
            frames.push(f);
        }
    }
    assert_eq!(frames.len(), 1);
    assert!(matches!(frames[0], Frame::SynStream { stream_id: 1, .. }));
}

#[test]
fn every_frame_survives_a_round_trip() {
    let frames = vec![
        Frame::SynStream {
            stream_id: 1,
            fin: false,
            headers: headers(&[("streamtype", "error"), ("port", "80")]),
        },
        Frame::SynReply {
            stream_id: 1,
            fin: false,
            headers: Headers::default(),
        },
        Frame::Headers {
            stream_id: 3,
            fin: true,
            headers: headers(&[("a", "1"), ("a", "3"), ("b", "2")]),
        },
        Frame::SynReply {
            stream_id: 5,
            fin: true,
            headers: headers(&[("x-many", "one"), ("x-many", "two")]),
        },
        Frame::RstStream {
            stream_id: 3,
            status: rst::CANCEL,
        },
        Frame::Settings {
            clear: true,
            entries: vec![Setting {
                flags: 1,
                id: 7,
                value: 1 << 20,
            }],
        },
        Frame::Ping { id: 1 },
        Frame::GoAway {
            last_good_stream_id: 7,
            status: goaway::PROTOCOL_ERROR,
        },
        Frame::WindowUpdate {
            stream_id: 3,
            delta: 65536,
        },
        Frame::data(3, Bytes::from_static(b"hello"), false),
        Frame::data(3, Bytes::new(), true),
        Frame::Unknown { kind: 10 },
    ];
    let mut encoder = Encoder::new().unwrap();
    let mut bytes = Vec::new();
    for f in &frames {
        encoder.encode(f, &mut bytes).unwrap();
    }
    let decoded = decode_all(&mut Decoder::default(), &bytes);
    assert_eq!(decoded, frames);
}

#[test]
fn an_empty_reply_is_what_spdystream_expects() {
    let mut bytes = Vec::new();
    let reply = Frame::SynReply {
        stream_id: 1,
        fin: false,
        headers: Headers::default(),
    };
    Encoder::new().unwrap().encode(&reply, &mut bytes).unwrap();
    // Control bit, version 3, type 2; no flags.
    assert_eq!(&bytes[..5], &[0x80, 0x03, 0x00, 0x02, 0x00]);
    let len = u32::from_be_bytes([0, bytes[5], bytes[6], bytes[7]]) as usize;
    assert_eq!(len, bytes.len() - 8);
    assert_eq!(&bytes[8..12], &[0, 0, 0, 1]);
    // The zlib header announces the dictionary (FDICT) by its id.
    assert_eq!(bytes[13] & 0x20, 0x20);
    assert_eq!(&bytes[14..18], &[0xe3, 0xc6, 0xa7, 0xc2]);
    // The block ends with a sync flush.
    assert!(bytes.ends_with(&[0x00, 0x00, 0xff, 0xff]));
}

#[test]
fn malformed_frames_are_errors_not_panics() {
    let cases: Vec<Vec<u8>> = vec![
        // RST_STREAM with a 4-byte payload.
        hex("800300030000000400000001"),
        // PING with 2 bytes.
        hex("8003000600000002abcd"),
        // SYN_STREAM too short for its fixed fields.
        hex("80030001000000020000"),
        // Data on stream 0.
        hex("0000000000000001ff"),
        // SETTINGS claiming a billion entries.
        hex("80030004000000043b9aca00"),
        // SYN_STREAM whose header block is not zlib.
        hex("800300010000000f000000010000000000000102030405"),
    ];
    for bytes in cases {
        let mut decoder = Decoder::default();
        decoder.read_buffer().extend_from_slice(&bytes);
        assert!(decoder.decode().is_err(), "{bytes:02x?}");
    }
}

#[test]
fn header_blocks_that_lie_about_their_size_are_errors() {
    assert!(parse_header_block(&hex("ffffffff00000001")).is_err());
    assert!(parse_header_block(&hex("0000000100000010616263")).is_err());
    assert!(parse_header_block(&[]).is_err());
}

#[test]
fn an_incomplete_frame_waits_for_more_bytes() {
    let mut decoder = Decoder::default();
    decoder
        .read_buffer()
        .extend_from_slice(&hex("00000003000000"));
    assert_eq!(decoder.decode().unwrap(), None);
    decoder.read_buffer().extend_from_slice(&hex("0268"));
    assert_eq!(decoder.decode().unwrap(), None);
    decoder.read_buffer().extend_from_slice(b"i");
    assert_eq!(
        decoder.decode().unwrap(),
        Some(Frame::data(3, Bytes::from_static(b"hi"), false))
    );
}
