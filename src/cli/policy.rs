//! `fairseg policy check`: validate the policy.

use std::path::Path;

use serde_json::json;

use fairseg::policy::Policy;

use super::Reported;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Validate the policy; each problem names file, key and what is wrong.
    Check {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(policies_dir: &Path, command: &Command) -> anyhow::Result<()> {
    let Command::Check { json } = *command;
    match Policy::load(policies_dir) {
        Ok(policy) => {
            if json {
                println!(
                    "{}",
                    json!({"valid": true, "version": policy.version, "file": policy.path})
                );
            } else {
                println!(
                    "{}: valid, version {}",
                    policy.path.display(),
                    policy.version
                );
            }
            Ok(())
        }
        Err(e) => {
            let issues = e.issues();
            if json {
                println!("{}", json!({"valid": false, "issues": issues}));
            } else {
                for issue in &issues {
                    println!("{issue}");
                }
            }
            Err(Reported(format!("the policy has {} problem(s)", issues.len())).into())
        }
    }
}
