//! `meshwork keys init|sync|renew`: the topology's keyset. Output names identities and counts,
//! never key material.

use std::path::Path;
use std::process::ExitCode;

use meshwork::keys::{ExpiryNotice, KeyError, Keyset, Report};
use time::{Duration, OffsetDateTime};

use crate::input::{self, CliError};

/// Names are listed one per line up to this many; beyond it, only counts.
const LIST_LIMIT: usize = 20;

fn key_error(e: KeyError) -> CliError {
    CliError::Message(e.to_string())
}

pub fn init(file: &Path, state: &Path) -> Result<ExitCode, CliError> {
    let (_, net) = input::network(file)?;
    let report = Keyset::init(state, &net, OffsetDateTime::now_utc()).map_err(key_error)?;
    println!(
        "Issued {} certificates (CA fingerprint {}…) into {}.",
        report.issued.len(),
        short(&report.ca_fingerprint),
        report.dir.display()
    );
    println!("CA fingerprint (SHA-256): {}", report.ca_fingerprint);
    if report.unchanged > 0 {
        println!("{} identities are marked revoked in the file and got no certificate.", report.unchanged);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn sync(file: &Path, state: &Path) -> Result<ExitCode, CliError> {
    let (_, net) = input::network(file)?;
    let now = OffsetDateTime::now_utc();
    let mut keyset = Keyset::open(state).map_err(key_error)?;
    let report = keyset.sync(&net, now).map_err(key_error)?;
    if report.changed() {
        print_changes(&report);
        println!("Keyset {} synced: {report}.", report.dir.display());
    } else {
        println!(
            "Keyset {} is in sync with {}: {} identities unchanged.",
            report.dir.display(),
            file.display(),
            report.unchanged
        );
    }
    print_warnings(&report);
    print_expiry(&keyset.expiry(now));
    Ok(ExitCode::SUCCESS)
}

pub fn renew(file: &Path, state: &Path, within_days: u32) -> Result<ExitCode, CliError> {
    let (_, net) = input::network(file)?;
    let now = OffsetDateTime::now_utc();
    let mut keyset = Keyset::open(state).map_err(key_error)?;
    let report = keyset.renew(&net, now, Duration::days(i64::from(within_days))).map_err(key_error)?;
    print_changes(&report);
    if report.renewed.is_empty() {
        println!("No certificate expires within {within_days} days; {} unchanged.", report.unchanged);
    } else {
        println!(
            "Renewed {} certificates expiring within {within_days} days; {} unchanged. \
             Redistribute the renewed clients' clientpacks.",
            report.renewed.len(),
            report.unchanged
        );
    }
    if report.crl_updated {
        println!("Refreshed the CRL.");
    }
    print_warnings(&report);
    Ok(ExitCode::SUCCESS)
}

fn short(fingerprint: &str) -> &str {
    fingerprint.get(..16).unwrap_or(fingerprint)
}

fn print_changes(report: &Report) {
    for (sign, verb, names) in [
        ("+", "issued", &report.issued),
        ("-", "revoked", &report.revoked),
        ("~", "renewed", &report.renewed),
        ("-", "removed", &report.removed),
    ] {
        if names.len() <= LIST_LIMIT {
            for n in names {
                println!("  {sign} {n} ({verb})");
            }
        } else {
            println!("  {sign} {} certificates {verb}", names.len());
        }
    }
}

fn print_warnings(report: &Report) {
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
}

/// Expiry notices after a sync: every expired one, the soonest few others, then a count.
fn print_expiry(notices: &[ExpiryNotice]) {
    for n in notices.iter().take(LIST_LIMIT) {
        eprintln!("{}: {n}", n.severity());
    }
    if notices.len() > LIST_LIMIT {
        eprintln!("... and {} more; run `meshwork keys renew`", notices.len() - LIST_LIMIT);
    }
}
