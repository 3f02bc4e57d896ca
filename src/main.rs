//! argv[0] / subcommand dispatch only.

use supd::cli::{self, Command};

fn main() {
    let cli = cli::parse();
    supd::log::init(
        supd::log::Level::from_verbosity(cli.log.verbose, cli.log.quiet),
        cli.log.log_format,
    );
    let code = match cli.command {
        None => supd::init::run(cli.init, cli.socket, cli.cmd),
        Some(Command::Ctl(args)) => supd::control::client::run(args),
        Some(Command::Scheduler(args)) => supd::schedule::run(args),
    };
    std::process::exit(code);
}
