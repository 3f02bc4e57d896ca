//! argv[0] / subcommand dispatch only: parse, build the face's Config, run it.

mod cli;

use cli::Face;

fn main() {
    // The common PID-1 command lines skip clap (its start costs more than the rest of
    // supd's); help, errors and everything else are clap's.
    let cli = cli::fast::parse().unwrap_or_else(cli::parse);
    let (level, format, face) = match cli.into_face() {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::exit(supd::exit::USAGE);
        }
    };
    supd::log::init(level, format);
    let code = match face {
        Face::Init(config) => supd::init::run(config),
        Face::Ctl(config) => supd::ctl::run(config),
        Face::Scheduler(config) => supd::schedule::run(config),
    };
    // A stalled log reader may still take the last lines; never wait long for it.
    supd::log::flush(std::time::Duration::from_millis(500));
    std::process::exit(code);
}
