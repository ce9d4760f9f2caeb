//! The `fairseg` command line: parse, then call the library.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    fairseg::telemetry::init(cli.global.log_format);
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the outermost context and its causes, joined.
            let chain: Vec<String> = e
                .chain()
                .map(|c| c.to_string().replace('\n', "; "))
                .collect();
            eprintln!("fairseg: error: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}
