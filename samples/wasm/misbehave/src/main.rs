//! Misbehaves on purpose, to show that a Wasm container is contained:
//! `MODE=memory` allocates without bound (its memory limit stops it),
//! `MODE=loop` spins forever (its CPU limit bounds it, and the node's other
//! pods keep being served).

use std::hint::black_box;

fn main() {
    let mode = std::env::var("MODE").unwrap_or_else(|_| "loop".into());
    println!("misbehaving: {mode}");
    match mode.as_str() {
        "memory" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                black_box(&hoard);
            }
        }
        _ => {
            let mut n: u64 = 0;
            loop {
                n = black_box(n.wrapping_add(1));
            }
        }
    }
}
