//! `fairseg customer export|erase`: data-subject requests.

use std::path::PathBuf;

use anyhow::{Context, bail};

use fairseg::config::Settings;
use fairseg::startup;
use fairseg::trail::Actor;

use super::prepared;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print everything held about a customer as JSON (a data-subject access request).
    Export {
        /// The customer's id.
        id: String,
        /// Write the JSON to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Erase a customer everywhere; only a pseudonymous tombstone remains.
    Erase {
        /// The customer's id.
        id: String,
        /// Confirm: erasure cannot be undone.
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(settings: &Settings, command: Command) -> anyhow::Result<()> {
    let (policy, db) = prepared(settings)?;
    let pseudonyms = startup::pseudonymizer(&db)?;
    match command {
        Command::Export { id, out } => {
            let export =
                fairseg::app::dsr::export(&db, &pseudonyms, &policy.version, &Actor::cli(), &id)?;
            let text = serde_json::to_string_pretty(&export)?;
            match out {
                Some(path) => {
                    std::fs::write(&path, text + "\n")
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!(
                        "exported customer {} to {}",
                        export.pseudonym,
                        path.display()
                    );
                }
                None => println!("{text}"),
            }
            Ok(())
        }
        Command::Erase { id, yes, json } => {
            if !yes {
                bail!("erasure cannot be undone: pass --yes to confirm");
            }
            let erasure =
                fairseg::app::dsr::erase(&db, &pseudonyms, &policy.version, &Actor::cli(), &id)?;
            if json {
                println!("{}", serde_json::to_string(&erasure)?);
            } else {
                let r = erasure.removed;
                println!(
                    "erased customer {}: {} transactions, {} consent events, {} protected attribute record(s)",
                    erasure.pseudonym, r.transactions, r.consent_events, r.protected_attributes
                );
            }
            Ok(())
        }
    }
}
