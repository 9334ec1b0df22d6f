use std::process::ExitCode;

use dbforge_worker::config::{parse_args, Command, USAGE};
use dbforge_worker::{idle, session};

fn main() -> ExitCode {
    match parse_args(std::env::args_os().skip(1)) {
        Err(msg) => {
            eprintln!("dbforge-worker: {msg}\n{USAGE}");
            ExitCode::from(2)
        }
        Ok(Command::Help) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Command::Idle) => match idle::wait_for_stop() {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("dbforge-worker: cannot wait for signals: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(Command::Session(cfg)) => match session::run_stdio(&cfg) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("dbforge-worker: session ended: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
