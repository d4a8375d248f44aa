//! A long-running server on wasi:sockets through Rust's std: listens on
//! `PORT` (8080 by default) and answers each connection with a short HTTP
//! reply counting the connections served so far.

use std::io::{Read, Write};
use std::net::TcpListener;

fn main() -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let listener = TcpListener::bind(format!("0.0.0.0:{port}"))?;
    println!("listening on {}", listener.local_addr()?);
    for (served, stream) in listener.incoming().enumerate() {
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request);
        let body = format!("tcp server in wasm: connection {}\n", served + 1);
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(reply.as_bytes());
    }
    Ok(())
}
