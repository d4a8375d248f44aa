//! SPDY/3.1 framing, as `kubectl port-forward` speaks it through
//! moby/spdystream: control frames (SYN_STREAM, SYN_REPLY, RST_STREAM,
//! SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE) and data frames.
//!
//! Header blocks are compressed with zlib primed with the SPDY/3
//! dictionary, as one zlib stream per direction that lives as long as the
//! session: every block is a sync-flushed continuation of the one before.
//! A session therefore owns one [`Decoder`] and one [`Encoder`], and the
//! decoder must inflate every header block in order, even those of frames
//! the session then ignores.

mod dictionary;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use self::dictionary::DICTIONARY;

/// The protocol version control frames carry.
const VERSION: u16 = 3;
/// Every frame starts with 8 bytes: a control bit with a version and type,
/// or a stream id; then 8 bits of flags and a 24-bit payload length.
const HEADER_LEN: usize = 8;
const CONTROL_BIT: u32 = 0x8000_0000;
const STREAM_ID_MASK: u32 = 0x7FFF_FFFF;
/// Payload lengths are 24 bits.
const MAX_LENGTH: usize = 0x00FF_FFFF;
/// kubectl's header blocks inflate to about 60 bytes; the bound stops a
/// hostile block from inflating without limit.
const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// How much room the decoder makes for each read from the connection.
const READ_RESERVE: usize = 16 * 1024;

const FLAG_FIN: u8 = 0x01;
const FLAG_CLEAR_SETTINGS: u8 = 0x01;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status codes the node sends.
pub mod rst {
    /// A stream id out of order or of the wrong parity.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// What spdystream's `Stream.Reset` sends, and so what kubelet answers
    /// a stream it rejects with.
    pub const CANCEL: u32 = 5;
}

/// GOAWAY status codes the node sends.
pub mod goaway {
    pub const PROTOCOL_ERROR: u32 = 1;
}

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("{0} frame is truncated")]
    Truncated(&'static str),
    #[error("{frame} frame has a payload of {len} bytes, expected {expected}")]
    BadLength {
        frame: &'static str,
        len: usize,
        expected: usize,
    },
    #[error("{0} frame names stream 0")]
    ZeroStream(&'static str),
    #[error("{frame} frame of {len} bytes is longer than SPDY allows")]
    TooLong { frame: &'static str, len: usize },
    #[error("header block inflates beyond 64 KiB")]
    HeaderBlockTooLarge,
    #[error("header compression: {0}")]
    Compression(String),
}

/// A header block: names are lowercase, as SPDY/3 requires (spdystream
/// rejects a frame with an uppercase name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.0.push((name.to_ascii_lowercase(), value.into()));
    }

    /// The first value of a header, by case-insensitive name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

/// One SETTINGS entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    pub id: u32,
    pub value: u32,
}

/// A frame. Fields a port-forward session has no use for (priorities,
/// associated streams, credential slots, the unidirectional flag) are
/// read past on decoding and sent as zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        clear: bool,
        entries: Vec<Setting>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    /// A control frame of a type SPDY/3.1 does not define or this codec
    /// does not read (CREDENTIAL); the draft says to ignore it.
    Unknown {
        kind: u16,
    },
}

impl Frame {
    pub fn data(stream_id: u32, data: Bytes, fin: bool) -> Frame {
        Frame::Data {
            stream_id,
            fin,
            data,
        }
    }
}

/// Splits the bytes of one direction of a session into frames.
pub struct Decoder {
    buf: BytesMut,
    inflate: Decompress,
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder {
            buf: BytesMut::new(),
            inflate: Decompress::new(true),
        }
    }
}

impl Decoder {
    /// The buffer to read the connection into, with room made for a read.
    pub fn read_buffer(&mut self) -> &mut BytesMut {
        self.buf.reserve(READ_RESERVE);
        &mut self.buf
    }

    /// The next whole frame in the buffer, if one has arrived. After an
    /// error the session's header stream is lost: end the session.
    pub fn decode(&mut self) -> Result<Option<Frame>, SpdyError> {
        let Some(head) = self.buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let first = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let flags = head[4];
        let len = (usize::from(head[5]) << 16) | (usize::from(head[6]) << 8) | usize::from(head[7]);
        if self.buf.len() < HEADER_LEN + len {
            self.buf.reserve(HEADER_LEN + len - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(HEADER_LEN);
        let payload = self.buf.split_to(len).freeze();
        let fin = flags & FLAG_FIN != 0;
        if first & CONTROL_BIT == 0 {
            if first == 0 {
                return Err(SpdyError::ZeroStream("DATA"));
            }
            return Ok(Some(Frame::Data {
                stream_id: first,
                fin,
                data: payload,
            }));
        }
        // The version is not checked: spdystream, the only peer, does not
        // check it either.
        let kind = (first & 0xFFFF) as u16;
        self.control(kind, flags, &payload).map(Some)
    }

    fn control(&mut self, kind: u16, flags: u8, payload: &[u8]) -> Result<Frame, SpdyError> {
        let fin = flags & FLAG_FIN != 0;
        let frame = match kind {
            SYN_STREAM => {
                let mut r = Reader::new(payload, "SYN_STREAM");
                let stream_id = nonzero(r.u32()? & STREAM_ID_MASK, "SYN_STREAM")?;
                // Associated stream, priority, credential slot.
                r.take(6)?;
                Frame::SynStream {
                    stream_id,
                    fin,
                    headers: self.headers(r.rest())?,
                }
            }
            SYN_REPLY => {
                let mut r = Reader::new(payload, "SYN_REPLY");
                let stream_id = nonzero(r.u32()? & STREAM_ID_MASK, "SYN_REPLY")?;
                Frame::SynReply {
                    stream_id,
                    fin,
                    headers: self.headers(r.rest())?,
                }
            }
            HEADERS => {
                let mut r = Reader::new(payload, "HEADERS");
                let stream_id = nonzero(r.u32()? & STREAM_ID_MASK, "HEADERS")?;
                Frame::Headers {
                    stream_id,
                    fin,
                    headers: self.headers(r.rest())?,
                }
            }
            RST_STREAM => {
                let mut r = Reader::exact(payload, "RST_STREAM", 8)?;
                Frame::RstStream {
                    stream_id: nonzero(r.u32()? & STREAM_ID_MASK, "RST_STREAM")?,
                    status: r.u32()?,
                }
            }
            SETTINGS => {
                let mut r = Reader::new(payload, "SETTINGS");
                let count = r.u32()? as usize;
                // Entries are 8 bytes: the count is checked before allocating.
                if count > r.rest().len() / 8 {
                    return Err(SpdyError::Truncated("SETTINGS"));
                }
                let mut entries = Vec::with_capacity(count);
                for _ in 0..count {
                    let flags_and_id = r.u32()?;
                    entries.push(Setting {
                        flags: (flags_and_id >> 24) as u8,
                        id: flags_and_id & 0x00FF_FFFF,
                        value: r.u32()?,
                    });
                }
                Frame::Settings {
                    clear: flags & FLAG_CLEAR_SETTINGS != 0,
                    entries,
                }
            }
            PING => Frame::Ping {
                id: Reader::exact(payload, "PING", 4)?.u32()?,
            },
            GOAWAY => {
                let mut r = Reader::exact(payload, "GOAWAY", 8)?;
                Frame::GoAway {
                    last_good_stream_id: r.u32()? & STREAM_ID_MASK,
                    status: r.u32()?,
                }
            }
            WINDOW_UPDATE => {
                let mut r = Reader::exact(payload, "WINDOW_UPDATE", 8)?;
                Frame::WindowUpdate {
                    stream_id: r.u32()? & STREAM_ID_MASK,
                    delta: r.u32()? & STREAM_ID_MASK,
                }
            }
            kind => Frame::Unknown { kind },
        };
        Ok(frame)
    }

    fn headers(&mut self, compressed: &[u8]) -> Result<Headers, SpdyError> {
        if compressed.is_empty() {
            return Ok(Headers::default());
        }
        let block = self.inflate(compressed)?;
        parse_header_block(&block)
    }

    /// Inflates one header block: the input ends with a sync flush, so
    /// everything it holds comes out without ending the zlib stream.
    fn inflate(&mut self, compressed: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity((compressed.len() * 4).clamp(256, MAX_HEADER_BLOCK));
        let mut rest = compressed;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(SpdyError::HeaderBlockTooLarge);
                }
                out.reserve(out.len());
            }
            let (before_in, before_out) = (self.inflate.total_in(), out.len());
            let status = self
                .inflate
                .decompress_vec(rest, &mut out, FlushDecompress::Sync);
            let used = (self.inflate.total_in() - before_in) as usize;
            rest = &rest[used.min(rest.len())..];
            match status {
                Ok(Status::StreamEnd) if rest.is_empty() => return Ok(out),
                Ok(Status::StreamEnd) => {
                    return Err(SpdyError::Compression(
                        "data after the end of the header stream".into(),
                    ));
                }
                // Output space left over means inflate has given all it has.
                Ok(_) if rest.is_empty() && out.len() < out.capacity() => return Ok(out),
                Ok(_) if used == 0 && out.len() == before_out && out.len() < out.capacity() => {
                    return Err(SpdyError::Compression("the header block is corrupt".into()));
                }
                Ok(_) => {}
                // The first block's zlib header names the dictionary; zlib
                // asks for it once it has read that far.
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| SpdyError::Compression(format!("dictionary: {e}")))?;
                }
                Err(e) => return Err(SpdyError::Compression(e.to_string())),
            }
        }
    }
}

/// Turns frames into the bytes of one direction of a session.
pub struct Encoder {
    deflate: Compress,
}

impl Encoder {
    pub fn new() -> Result<Encoder, SpdyError> {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(DICTIONARY)
            .map_err(|e| SpdyError::Compression(format!("dictionary: {e}")))?;
        Ok(Encoder { deflate })
    }

    /// Appends a frame to `dst`. After an error the session's header
    /// stream may be lost: end the session.
    pub fn encode(&mut self, frame: &Frame, dst: &mut Vec<u8>) -> Result<(), SpdyError> {
        let start = dst.len();
        dst.extend_from_slice(&[0; HEADER_LEN]);
        let written = self.payload(frame, dst);
        let len = dst.len() - start - HEADER_LEN;
        let (first, flags, name) = match written {
            Ok(head) => head,
            Err(e) => {
                dst.truncate(start);
                return Err(e);
            }
        };
        if len > MAX_LENGTH {
            dst.truncate(start);
            return Err(SpdyError::TooLong { frame: name, len });
        }
        let second = (u32::from(flags) << 24) | len as u32;
        dst[start..start + 4].copy_from_slice(&first.to_be_bytes());
        dst[start + 4..start + HEADER_LEN].copy_from_slice(&second.to_be_bytes());
        Ok(())
    }

    /// Writes the payload and returns the header's first word and flags.
    fn payload(
        &mut self,
        frame: &Frame,
        dst: &mut Vec<u8>,
    ) -> Result<(u32, u8, &'static str), SpdyError> {
        let head = match frame {
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                let id = nonzero(*stream_id & STREAM_ID_MASK, "DATA")?;
                dst.extend_from_slice(data);
                return Ok((id, fin_flag(*fin), "DATA"));
            }
            Frame::SynStream {
                stream_id,
                fin,
                headers,
            } => {
                dst.put_u32(nonzero(*stream_id & STREAM_ID_MASK, "SYN_STREAM")?);
                // No associated stream, priority 0, no credential slot.
                dst.extend_from_slice(&[0; 6]);
                self.deflate_headers(headers, dst)?;
                (SYN_STREAM, fin_flag(*fin), "SYN_STREAM")
            }
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            } => {
                dst.put_u32(nonzero(*stream_id & STREAM_ID_MASK, "SYN_REPLY")?);
                self.deflate_headers(headers, dst)?;
                (SYN_REPLY, fin_flag(*fin), "SYN_REPLY")
            }
            Frame::Headers {
                stream_id,
                fin,
                headers,
            } => {
                dst.put_u32(nonzero(*stream_id & STREAM_ID_MASK, "HEADERS")?);
                self.deflate_headers(headers, dst)?;
                (HEADERS, fin_flag(*fin), "HEADERS")
            }
            Frame::RstStream { stream_id, status } => {
                dst.put_u32(nonzero(*stream_id & STREAM_ID_MASK, "RST_STREAM")?);
                dst.put_u32(*status);
                (RST_STREAM, 0, "RST_STREAM")
            }
            Frame::Settings { clear, entries } => {
                dst.put_u32(entries.len() as u32);
                for entry in entries {
                    dst.put_u32((u32::from(entry.flags) << 24) | (entry.id & 0x00FF_FFFF));
                    dst.put_u32(entry.value);
                }
                let flags = if *clear { FLAG_CLEAR_SETTINGS } else { 0 };
                (SETTINGS, flags, "SETTINGS")
            }
            Frame::Ping { id } => {
                dst.put_u32(*id);
                (PING, 0, "PING")
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                dst.put_u32(*last_good_stream_id & STREAM_ID_MASK);
                dst.put_u32(*status);
                (GOAWAY, 0, "GOAWAY")
            }
            Frame::WindowUpdate { stream_id, delta } => {
                dst.put_u32(*stream_id & STREAM_ID_MASK);
                dst.put_u32(*delta & STREAM_ID_MASK);
                (WINDOW_UPDATE, 0, "WINDOW_UPDATE")
            }
            Frame::Unknown { kind } => (*kind, 0, "unknown"),
        };
        let (kind, flags, name) = head;
        let first = CONTROL_BIT | (u32::from(VERSION) << 16) | u32::from(kind);
        Ok((first, flags, name))
    }

    /// Compresses a header block onto `dst`, ending with a sync flush so
    /// the peer can inflate all of it from this frame alone.
    fn deflate_headers(&mut self, headers: &Headers, dst: &mut Vec<u8>) -> Result<(), SpdyError> {
        let raw = header_block(headers);
        let mut rest = raw.as_slice();
        loop {
            // Room for the input, the sync flush marker and, the first
            // time, the zlib header.
            dst.reserve(rest.len() + 64);
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(rest, dst, FlushCompress::Sync)
                .map_err(|e| SpdyError::Compression(e.to_string()))?;
            let used = (self.deflate.total_in() - before) as usize;
            rest = &rest[used.min(rest.len())..];
            // Output space left over means the flush is complete.
            if rest.is_empty() && dst.len() < dst.capacity() {
                return Ok(());
            }
        }
    }
}

fn fin_flag(fin: bool) -> u8 {
    if fin { FLAG_FIN } else { 0 }
}

fn nonzero(stream_id: u32, frame: &'static str) -> Result<u32, SpdyError> {
    if stream_id == 0 {
        Err(SpdyError::ZeroStream(frame))
    } else {
        Ok(stream_id)
    }
}

/// An uncompressed header block: a count, then each name and value with a
/// 32-bit length. A name appears once; its values are joined by NULs.
fn header_block(headers: &Headers) -> Vec<u8> {
    let mut names: Vec<(&str, Vec<&str>)> = Vec::new();
    for (name, value) in headers.iter() {
        match names.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value),
            None => names.push((name, vec![value])),
        }
    }
    let mut raw = Vec::new();
    raw.put_u32(names.len() as u32);
    for (name, values) in names {
        let value = values.join("\0");
        raw.put_u32(name.len() as u32);
        raw.extend_from_slice(name.as_bytes());
        raw.put_u32(value.len() as u32);
        raw.extend_from_slice(value.as_bytes());
    }
    raw
}

fn parse_header_block(block: &[u8]) -> Result<Headers, SpdyError> {
    let mut r = Reader::new(block, "header block of a");
    let count = r.u32()? as usize;
    // Each entry takes at least 8 bytes: the count is checked before
    // trusting it.
    if count > r.rest().len() / 8 {
        return Err(SpdyError::Truncated("header block of a"));
    }
    let mut headers = Headers::default();
    for _ in 0..count {
        let len = r.u32()? as usize;
        let name = String::from_utf8_lossy(r.take(len)?).into_owned();
        let len = r.u32()? as usize;
        let value = r.take(len)?;
        for v in value.split(|&b| b == 0) {
            headers.push(&name, String::from_utf8_lossy(v));
        }
    }
    Ok(headers)
}

/// Reads big-endian fields off a payload, failing instead of panicking
/// when it runs short.
struct Reader<'a> {
    buf: &'a [u8],
    frame: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], frame: &'static str) -> Reader<'a> {
        Reader { buf, frame }
    }

    /// For frames whose payload has a fixed length.
    fn exact(buf: &'a [u8], frame: &'static str, expected: usize) -> Result<Reader<'a>, SpdyError> {
        if buf.len() == expected {
            Ok(Reader { buf, frame })
        } else {
            Err(SpdyError::BadLength {
                frame,
                len: buf.len(),
                expected,
            })
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], SpdyError> {
        if n > self.buf.len() {
            return Err(SpdyError::Truncated(self.frame));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, SpdyError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn rest(&self) -> &'a [u8] {
        self.buf
    }
}

#[cfg(test)]
mod tests;
