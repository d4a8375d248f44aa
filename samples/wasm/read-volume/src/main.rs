//! A command component: counts the lines of a file on a volume (the first
//! argument, `/data/input.txt` by default), prints them, and exits with
//! `EXIT_CODE` if set (0 when the file was read, 2 when it was not).

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/data/input.txt".into());
    let code = match std::fs::read_to_string(&path) {
        Ok(text) => {
            println!("{path}: {} lines", text.lines().count());
            for line in text.lines().take(3) {
                println!("> {line}");
            }
            0
        }
        Err(e) => {
            eprintln!("{path}: {e}");
            2
        }
    };
    let code: u8 = std::env::var("EXIT_CODE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(code);
    // std::process::exit(n) reaches the host as 1; this reports n itself.
    wasip2::cli::exit::exit_with_code(code);
}
