//! A tiny load generator for the request socket (used by bench/control.sh).
//!
//!     ping_load SOCKET CLIENTS SECONDS [REQUEST]
//!
//! CLIENTS threads each send REQUEST (default `root ping`) over a fresh connection, read
//! the reply to EOF, and repeat for SECONDS. Prints one line:
//! `requests=N errors=E rps=R p50_us=A p99_us=B max_us=C`.
//! Plain blocking std sockets: the client side should cost as little as possible.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: ping_load SOCKET CLIENTS SECONDS [REQUEST]");
        std::process::exit(2);
    }
    let socket = args[1].clone();
    let clients: usize = args[2].parse().expect("CLIENTS");
    let seconds: f64 = args[3].parse().expect("SECONDS");
    let request = format!("{}\n", args.get(4).map_or("root ping", String::as_str));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let socket = socket.clone();
            let request = request.clone();
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                let mut errors = 0usize;
                let mut reply = Vec::with_capacity(256);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let ok = (|| -> std::io::Result<bool> {
                        let mut stream = UnixStream::connect(&socket)?;
                        stream.write_all(request.as_bytes())?;
                        reply.clear();
                        stream.read_to_end(&mut reply)?;
                        Ok(reply.ends_with(b"}\n") && !reply.starts_with(b"{\"event\":\"error\""))
                    })();
                    match ok {
                        Ok(true) => latencies.push(t.elapsed().as_nanos() as u64),
                        _ => errors += 1,
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in threads {
        let (l, e) = t.join().expect("client thread");
        all.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let i = ((p / 100.0) * all.len() as f64).ceil() as usize;
        all[i.clamp(1, all.len()) - 1] as f64 / 1000.0
    };
    println!(
        "requests={} errors={} rps={:.0} p50_us={:.1} p99_us={:.1} max_us={:.1}",
        all.len(),
        errors,
        all.len() as f64 / elapsed,
        pct(50.0),
        pct(99.0),
        pct(100.0)
    );
}
