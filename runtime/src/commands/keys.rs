//! `meshwork keys init|sync|renew|rotate-psk`: the topology's keyset. Output names identities,
//! node pairs and counts, never key material.

use std::path::Path;
use std::process::ExitCode;

use meshwork::keys::{ExpiryNotice, KeyError, Keyset, Report};
use meshwork_compiler::vxlan::names::PSK_DIR;
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
    if !report.psk_created.is_empty() {
        println!(
            "Created {} pre-shared keys, one per pair of nodes in different PDCs, in {}.",
            report.psk_created.len(),
            report.dir.join(PSK_DIR).display()
        );
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
            "Keyset {} is in sync with {}: {} identities and {} pre-shared keys unchanged.",
            report.dir.display(),
            file.display(),
            report.unchanged,
            report.psk_unchanged
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

/// `pair`: the two nodes of one pair, or `None` for every pair.
pub fn rotate_psk(file: &Path, pair: Option<(&str, &str)>, state: &Path) -> Result<ExitCode, CliError> {
    let (_, net) = input::network(file)?;
    let mut keyset = Keyset::open(state).map_err(key_error)?;
    let report = keyset.rotate_psk(&net, pair, OffsetDateTime::now_utc()).map_err(key_error)?;
    print_changes(&report);
    match (pair, report.psk_rotated.len()) {
        (_, 0) => println!("No node pair of {} has a pre-shared key; nothing rotated.", file.display()),
        (Some(_), _) => println!(
            "Rotated the pre-shared key of {}. Both nodes need the new key before their tunnel re-keys.",
            report.psk_rotated.join(", ")
        ),
        (None, n) => println!("Rotated {n} pre-shared keys. Every node with a cross-PDC peer needs its new keys."),
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
        list(sign, verb, "certificates", names);
    }
    for (sign, verb, pairs) in [
        ("+", "created", &report.psk_created),
        ("~", "rotated", &report.psk_rotated),
        ("-", "removed", &report.psk_removed),
    ] {
        list(
            sign,
            verb,
            "pre-shared keys",
            &pairs.iter().map(|p| format!("pre-shared key of {p}")).collect::<Vec<_>>(),
        );
    }
}

/// Names one per line up to [`LIST_LIMIT`], a count beyond.
fn list(sign: &str, verb: &str, what: &str, names: &[String]) {
    if names.len() <= LIST_LIMIT {
        for n in names {
            println!("  {sign} {n} ({verb})");
        }
    } else {
        println!("  {sign} {} {what} {verb}", names.len());
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
