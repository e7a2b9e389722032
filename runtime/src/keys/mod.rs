//! The topology keyset: a CA, a certificate per identity (controllers, engines, peering
//! identities, clients), a CRL, a tls-crypt key and a pre-shared key per pair of compute nodes
//! in different PDCs, kept in `<state>/keyset/`.
//!
//! * [`Keyset::init`] creates it once per topology (refusing to overwrite), in a staging directory
//!   renamed into place, so a failure leaves nothing behind.
//! * [`Keyset::sync`] issues certificates for identities the topology added, revokes those it
//!   removed or marks revoked (their serials go into the CRL) and never touches the others: a
//!   second sync writes nothing.
//! * [`Keyset::renew`] re-issues certificates that expire within a window and refreshes the CRL.
//! * [`Keyset::expiry`] (and [`expiry_diagnostics`]) say what expires within 30 days.
//! * `init` and `sync` also give every new node pair a pre-shared key and drop the keys of pairs
//!   that are gone; [`Keyset::rotate_psk`] replaces one pair's key or all of them (see [`pairs`]).
//!
//! Every file is 0600 and every directory 0700; [`Keyset::open`] refuses a keyset in which
//! anything is open to group or others. The layout is fixed (see [`store`]); other modules read
//! it directly. Nothing here prints or formats key material.

mod error;
mod expiry;
mod index;
mod pairs;
mod pki;
mod plan;
mod psk;
pub mod store;

use std::fmt;
use std::path::{Path, PathBuf};

use meshwork_compiler::identity::{Identity, identities};
use meshwork_compiler::network::Network;
use serde::Serialize;
use time::{Duration, OffsetDateTime, UtcOffset};

pub use self::error::KeyError;
pub use self::expiry::{ExpiryNotice, Subject, WARNING_DAYS};
use self::index::{CrlState, INDEX_VERSION, Index, RevokedSerial, Validity};
pub use self::index::{PskRecord, Reason, Record};
use self::pki::Job;
pub use self::pki::SubjectName;
pub use self::psk::{PSK_LEN, Psk};
use self::store::{CA_CERT, CA_KEY, CRL, Commit, INDEX, Layout, TLS_CRYPT};
pub use crate::state::keyset_dir;

pub type Result<T, E = KeyError> = std::result::Result<T, E>;

/// Validity periods; [`Policy::default`] is what the CLI uses, tests shorten them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub ca_validity: Duration,
    pub leaf_validity: Duration,
    /// From a CRL's thisUpdate to its nextUpdate.
    pub crl_validity: Duration,
    /// How far notBefore (and the CRL's thisUpdate) lies before `now`, for clock skew.
    pub backdate: Duration,
    /// Threads that generate and sign certificates.
    pub threads: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            ca_validity: Duration::days(3652),
            leaf_validity: Duration::days(825),
            crl_validity: Duration::days(365),
            backdate: Duration::hours(1),
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
        }
    }
}

/// What an operation did, by CN. Holds names and counts only, never key material.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The keyset directory.
    pub dir: PathBuf,
    pub ca_fingerprint: String,
    /// New certificates (new identities, un-revoked ones, names that changed kind).
    pub issued: Vec<String>,
    /// Identities whose certificate went into the CRL (revoked in the file, or removed).
    pub revoked: Vec<String>,
    /// Certificates re-issued because they were due to expire.
    pub renewed: Vec<String>,
    /// Identities no longer in the topology: their records and files are gone.
    pub removed: Vec<String>,
    pub unchanged: usize,
    /// Node pairs (`low and high`) that got their first pre-shared key (or a new one because
    /// the file was gone).
    pub psk_created: Vec<String>,
    /// Node pairs whose key was replaced (`rotate-psk`).
    pub psk_rotated: Vec<String>,
    /// Node pairs no longer in the topology: their keys are gone.
    pub psk_removed: Vec<String>,
    /// Pairs whose key stayed as it was.
    pub psk_unchanged: usize,
    /// A new `crl.pem` was written.
    pub crl_updated: bool,
    /// Things the operator should know (CA expiry, pending changes, files that could not be removed).
    pub warnings: Vec<String>,
}

impl Report {
    pub fn changed(&self) -> bool {
        !(self.issued.is_empty() && self.revoked.is_empty() && self.renewed.is_empty() && self.removed.is_empty())
            || self.crl_updated
            || self.psk_changed()
    }

    /// Whether any pre-shared key was created, rotated or removed.
    pub fn psk_changed(&self) -> bool {
        !(self.psk_created.is_empty() && self.psk_rotated.is_empty() && self.psk_removed.is_empty())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "issued {}, revoked {}, renewed {}, removed {}, unchanged {}",
            self.issued.len(),
            self.revoked.len(),
            self.renewed.len(),
            self.removed.len(),
            self.unchanged
        )?;
        if self.crl_updated {
            f.write_str("; CRL updated")?;
        }
        if self.psk_changed() {
            write!(
                f,
                "; pre-shared keys: created {}, rotated {}, removed {}, unchanged {}",
                self.psk_created.len(),
                self.psk_rotated.len(),
                self.psk_removed.len(),
                self.psk_unchanged
            )?;
        }
        Ok(())
    }
}

/// An open keyset. Reads go to the files on demand; changes take an exclusive lock on the
/// keyset directory and re-read the index under it.
#[derive(Debug)]
pub struct Keyset {
    layout: Layout,
    index: Index,
    ca_pem: String,
    policy: Policy,
}

/// UTC, whole seconds: what certificates and the index can hold.
fn normalize(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(UtcOffset::UTC);
    t.replace_nanosecond(0).unwrap_or(t)
}

impl Keyset {
    /// Opens the keyset in `state`, refusing it if any file or directory in it is open to group
    /// or others, if a file is missing, or if `ca.crt` is not the CA the index records.
    pub fn open(state: &Path) -> Result<Keyset> {
        let layout = Layout::new(keyset_dir(state));
        store::check_tree(&layout)?;
        let (index, ca_pem) = Self::load(&layout)?;
        Ok(Keyset { layout, index, ca_pem, policy: Policy::default() })
    }

    fn load(layout: &Layout) -> Result<(Index, String)> {
        let index_path = layout.file(INDEX);
        let index = Index::parse(&index_path, &store::read_text(&index_path)?)?;
        let ca_path = layout.file(CA_CERT);
        let ca_pem = store::read_text(&ca_path)?;
        let found = pki::fingerprint(&ca_path, &ca_pem)?;
        if found != index.ca_fingerprint {
            return Err(KeyError::CaMismatch { path: ca_path, expected: index.ca_fingerprint, found });
        }
        Ok((index, ca_pem))
    }

    /// Uses `policy` for later changes (validity periods, threads).
    pub fn with_policy(mut self, policy: Policy) -> Keyset {
        self.policy = policy;
        self
    }

    /// Creates the keyset of `net` in `state` with the default policy.
    pub fn init(state: &Path, net: &Network, now: OffsetDateTime) -> Result<Report> {
        Self::init_with(state, net, now, &Policy::default())
    }

    /// Creates the keyset of `net` in `state`: refuses if `<state>/keyset` exists at all.
    pub fn init_with(state: &Path, net: &Network, now: OffsetDateTime, policy: &Policy) -> Result<Report> {
        let now = normalize(now);
        let target = keyset_dir(state);
        if std::fs::symlink_metadata(&target).is_ok() {
            return Err(KeyError::AlreadyExists { dir: target });
        }
        let ids = identities(net);
        plan::check_identities(&ids)?;
        let node_pairs = &net.vxlan.ipsec.pairs;
        plan::check_pairs(node_pairs)?;
        store::create_dir_all(state)?;
        let staging = store::Staging::create(state)?;
        let layout = Layout::new(staging.path());
        store::create_dir(&layout.issued_dir())?;
        store::create_dir(&layout.private_dir())?;

        let not_before = now - policy.backdate;
        let ca_not_after = now + policy.ca_validity;
        let (ca, ca_pem, ca_key) = pki::new_ca(&net.name, 1, not_before, ca_not_after)?;
        store::write_new(&layout.file(CA_CERT), ca_pem.as_bytes())?;
        store::write_new(&layout.file(CA_KEY), ca_key.as_bytes())?;
        drop(ca_key);
        store::write_new(&layout.file(TLS_CRYPT), pki::tls_crypt_key()?.as_bytes())?;

        let mut index = Index {
            version: INDEX_VERSION,
            topology: net.name.clone(),
            ca_fingerprint: pki::fingerprint(&layout.file(CA_CERT), &ca_pem)?,
            ca: Validity { serial: 1, not_before, not_after: ca_not_after },
            next_serial: 2,
            crl: CrlState { number: 1, this_update: not_before, next_update: now + policy.crl_validity },
            identities: Default::default(),
            revoked: vec![],
            psks: vec![],
        };
        pairs::write_new_psks(&layout, &mut index, node_pairs, now)?;
        let wanted: Vec<&Identity> = ids.iter().filter(|id| !id.revoked).collect();
        let jobs = new_jobs(&mut index, wanted.iter().map(|id| (id.cn.clone(), id.kind)), now, policy);
        pki::issue_all(&ca, &net.name, &jobs, policy.threads, |job, cert, key| {
            store::write_new(&layout.cert(&job.cn), cert.as_bytes())?;
            store::write_new(&layout.key(&job.cn), key.as_bytes())
        })?;
        record_jobs(&mut index, &jobs);
        let crl = pki::crl(&ca, index.crl.number, index.crl.this_update, index.crl.next_update, &index.revoked)?;
        store::write_new(&layout.file(CRL), crl.as_bytes())?;
        store::write_new(&layout.file(INDEX), &index.to_json())?;
        staging.finish(&target)?;

        Ok(Report {
            dir: target,
            ca_fingerprint: index.ca_fingerprint,
            issued: jobs.into_iter().map(|j| j.cn).collect(),
            unchanged: ids.len() - wanted.len(),
            crl_updated: true,
            psk_created: node_pairs.iter().map(ToString::to_string).collect(),
            ..Report::default()
        })
    }

    /// Brings the keyset in line with `net`: issues for new identities, revokes removed and
    /// revoked ones (CRL), re-issues un-revoked ones with a new serial. Writes nothing when
    /// nothing changed.
    pub fn sync(&mut self, net: &Network, now: OffsetDateTime) -> Result<Report> {
        let now = normalize(now);
        let _lock = store::lock_dir(self.layout.root())?;
        self.reload(net)?;
        let ids = identities(net);
        let plan = plan::sync(&self.index, &ids)?;
        let psk_plan = pairs::plan(&self.layout, &self.index, net)?;
        let mut report = self.report();
        report.unchanged = plan.unchanged;
        report.psk_unchanged = psk_plan.unchanged;
        if plan.is_empty() && psk_plan.is_empty() {
            pairs::remove_strays(&self.layout, &self.index, &mut report);
            return Ok(report);
        }
        store::remove_stale_tmp(&self.layout)?;
        let mut index = self.index.clone();
        let mut commit = Commit::default();
        let mut jobs = Vec::new();
        // The CA key is read only when certificates change: a sync that only adds node pairs
        // leaves it alone.
        if !plan.is_empty() {
            let issuer = self.issuer()?;
            jobs = new_jobs(&mut index, plan.issue.iter().cloned(), now, &self.policy);
            commit = self.issue_staged(&issuer, &jobs)?;
            record_jobs(&mut index, &jobs);
            for (cn, serial, reason) in &plan.revoke {
                index.revoke_serial(RevokedSerial {
                    serial: *serial,
                    cn: cn.clone(),
                    revoked_at: now,
                    reason: *reason,
                });
            }
            for cn in &plan.mark_revoked {
                if let Some(r) = index.identities.get_mut(cn) {
                    r.revoked = true;
                    r.revoked_at = Some(now);
                }
            }
            for cn in &plan.drop {
                index.identities.remove(cn);
            }
            if !plan.revoke.is_empty() {
                self.stage_crl(&mut commit, &issuer, &mut index, now)?;
                report.crl_updated = true;
            }
        }
        pairs::stage_psks(&self.layout, &mut commit, &mut index, &psk_plan.create, now)?;
        for p in &psk_plan.remove {
            index.drop_psk(p);
        }
        commit.stage(self.layout.file(INDEX), &index.to_json())?;
        commit.commit(self.layout.root())?;
        self.index = index;

        for cn in &plan.drop {
            for path in [self.layout.cert(cn), self.layout.key(cn)] {
                remove_or_warn(&path, &mut report);
            }
        }
        for p in &psk_plan.remove {
            remove_or_warn(&self.layout.psk(p), &mut report);
        }
        pairs::remove_strays(&self.layout, &self.index, &mut report);
        for p in &psk_plan.recreate {
            report.warnings.push(format!(
                "the pre-shared key file of {p} was missing; it has a new key now, which both nodes need"
            ));
        }
        report.issued = jobs.into_iter().map(|j| j.cn).collect();
        let mut revoked: Vec<String> = plan.revoke.into_iter().map(|(cn, _, _)| cn).collect();
        revoked.dedup();
        report.revoked = revoked;
        report.removed = plan.drop;
        report.psk_created = psk_plan.create.iter().map(ToString::to_string).collect();
        report.psk_removed = psk_plan.remove.iter().map(ToString::to_string).collect();
        Ok(report)
    }

    /// Re-issues (new key, new serial) every current certificate of `net` that expires within
    /// `within` of `now`, and refreshes the CRL if its next update falls in that window.
    /// Superseded certificates are not revoked: they stay valid until they expire, so clients
    /// keep working while their new clientpacks roll out.
    pub fn renew(&mut self, net: &Network, now: OffsetDateTime, within: Duration) -> Result<Report> {
        let now = normalize(now);
        let _lock = store::lock_dir(self.layout.root())?;
        self.reload(net)?;
        let ids = identities(net);
        let deadline = now + within;
        let due = plan::renew(&self.index, &ids, deadline);
        let pending = plan::sync(&self.index, &ids)?;
        let psk_pending = pairs::plan(&self.layout, &self.index, net)?;
        let mut report = self.report();
        report.unchanged = self.index.identities.values().filter(|r| !r.revoked).count().saturating_sub(due.len());
        if !pending.is_empty() {
            report.warnings.push(format!(
                "the topology has changes the keyset does not have yet ({} to issue, {} to revoke, {} to remove); \
                 run `meshwork keys sync`",
                pending.issue.len(),
                pending.revoke.len(),
                pending.drop.len()
            ));
        }
        if !psk_pending.is_empty() {
            report.warnings.push(format!(
                "the topology's node pairs changed ({} pre-shared keys to create, {} to remove); run `meshwork keys sync`",
                psk_pending.create.len(),
                psk_pending.remove.len()
            ));
        }
        if self.index.ca.not_after <= deadline {
            let n = expiry::notices(&self.index, now).into_iter().find(|n| n.subject == Subject::Ca);
            report.warnings.extend(n.map(|n| n.to_string()));
        }
        let crl_due = self.index.crl.next_update <= deadline;
        if due.is_empty() && !crl_due {
            return Ok(report);
        }
        store::remove_stale_tmp(&self.layout)?;
        let issuer = self.issuer()?;
        let mut index = self.index.clone();
        let jobs = new_jobs(&mut index, due.into_iter(), now, &self.policy);
        let mut commit = self.issue_staged(&issuer, &jobs)?;
        record_jobs(&mut index, &jobs);
        if crl_due {
            self.stage_crl(&mut commit, &issuer, &mut index, now)?;
            report.crl_updated = true;
        }
        commit.stage(self.layout.file(INDEX), &index.to_json())?;
        commit.commit(self.layout.root())?;
        self.index = index;
        report.renewed = jobs.into_iter().map(|j| j.cn).collect();
        Ok(report)
    }

    /// What expires within [`WARNING_DAYS`] days of `now` (warnings) or has expired (errors):
    /// the CA, the CRL and every certificate that is not revoked.
    pub fn expiry(&self, now: OffsetDateTime) -> Vec<ExpiryNotice> {
        expiry::notices(&self.index, normalize(now))
    }

    /// Hex SHA-256 of the CA certificate's DER.
    pub fn ca_fingerprint(&self) -> String {
        self.index.ca_fingerprint.clone()
    }

    /// The topology this keyset belongs to.
    pub fn topology(&self) -> &str {
        &self.index.topology
    }

    /// The keyset directory.
    pub fn dir(&self) -> &Path {
        self.layout.root()
    }

    /// The current certificate's record of `cn` (kind, serial, validity, revoked).
    pub fn identity(&self, cn: &str) -> Option<&Record> {
        self.index.identities.get(cn)
    }

    /// Every identity with a certificate, by CN.
    pub fn identities(&self) -> impl Iterator<Item = (&str, &Record)> {
        self.index.identities.iter().map(|(cn, r)| (cn.as_str(), r))
    }

    pub fn ca_pem(&self) -> Result<String> {
        Ok(self.ca_pem.clone())
    }

    pub fn cert_pem(&self, cn: &str) -> Result<String> {
        self.known(cn)?;
        store::read_text(&self.layout.cert(cn))
    }

    /// The private key of `cn` (PKCS#8 PEM), once it is known to belong to `cn`'s certificate
    /// (a key file replaced by another identity's, the CA's say, is refused). A secret: never
    /// print it.
    pub fn key_pem(&self, cn: &str) -> Result<String> {
        self.known(cn)?;
        let (cert, key) = (self.layout.cert(cn), self.layout.key(cn));
        let key_pem = store::read_text(&key)?;
        if !pki::key_matches(&cert, &store::read_text(&cert)?, &key, &key_pem)? {
            return Err(KeyError::KeyMismatch { key, cert });
        }
        Ok(key_pem)
    }

    /// A fresh API server certificate and key for `controller`'s agent, valid for `names`
    /// (see [`pki::issue_api_server`]) from an hour ago until the controller's own certificate
    /// expires, signed by this keyset's CA. Nothing is written. The key is a secret.
    pub fn api_server_identity(
        &self,
        controller: &str,
        names: &[SubjectName],
        now: OffsetDateTime,
    ) -> Result<(String, String)> {
        let record =
            self.identity(controller).ok_or_else(|| KeyError::UnknownIdentity { cn: controller.to_string() })?;
        let not_before = normalize(now) - self.policy.backdate;
        let not_after = record.not_after.min(self.index.ca.not_after);
        pki::issue_api_server(
            &self.issuer()?,
            &self.index.topology,
            &format!("{controller} API"),
            names,
            not_before,
            not_after,
        )
    }

    /// The same for a compute node's agent, which has no certificate of its own in the keyset:
    /// valid until the CA expires.
    pub fn node_api_server_identity(
        &self,
        node: &str,
        names: &[SubjectName],
        now: OffsetDateTime,
    ) -> Result<(String, String)> {
        store::check_name(node)?;
        let not_before = normalize(now) - self.policy.backdate;
        pki::issue_api_server(
            &self.issuer()?,
            &self.index.topology,
            &format!("node {node} API"),
            names,
            not_before,
            self.index.ca.not_after,
        )
    }

    /// The tls-crypt static key. A secret: never print it.
    pub fn tls_crypt(&self) -> Result<String> {
        store::read_text(&self.layout.file(TLS_CRYPT))
    }

    pub fn crl_pem(&self) -> Result<String> {
        store::read_text(&self.layout.file(CRL))
    }

    fn known(&self, cn: &str) -> Result<()> {
        store::check_name(cn)?;
        if self.index.identities.contains_key(cn) {
            Ok(())
        } else {
            Err(KeyError::UnknownIdentity { cn: cn.to_string() })
        }
    }

    /// Re-reads the index under the lock and checks that it belongs to `net`.
    fn reload(&mut self, net: &Network) -> Result<()> {
        store::check_tree(&self.layout)?;
        let (index, ca_pem) = Self::load(&self.layout)?;
        self.index = index;
        self.ca_pem = ca_pem;
        if self.index.topology != net.name {
            return Err(KeyError::TopologyMismatch {
                dir: self.layout.root().to_path_buf(),
                keyset: self.index.topology.clone(),
                file: net.name.clone(),
            });
        }
        Ok(())
    }

    fn report(&self) -> Report {
        Report {
            dir: self.layout.root().to_path_buf(),
            ca_fingerprint: self.index.ca_fingerprint.clone(),
            ..Report::default()
        }
    }

    fn issuer(&self) -> Result<rcgen::Issuer<'static, rcgen::KeyPair>> {
        let key = store::read_text(&self.layout.file(CA_KEY))?;
        pki::load_issuer(&self.ca_pem, &key)
    }

    /// Issues `jobs` into temporaries and returns the commit that renames them into place.
    fn issue_staged(&self, issuer: &rcgen::Issuer<'static, rcgen::KeyPair>, jobs: &[Job]) -> Result<Commit> {
        let mut commit = Commit::default();
        for job in jobs {
            commit.staged(self.layout.cert(&job.cn));
            commit.staged(self.layout.key(&job.cn));
        }
        let layout = &self.layout;
        pki::issue_all(issuer, &self.index.topology, jobs, self.policy.threads, |job, cert, key| {
            store::write_tmp(&layout.cert(&job.cn))(cert.as_bytes())?;
            store::write_tmp(&layout.key(&job.cn))(key.as_bytes())
        })?;
        Ok(commit)
    }

    /// A new CRL (next number) from `index.revoked`, staged.
    fn stage_crl(
        &self,
        commit: &mut Commit,
        issuer: &rcgen::Issuer<'static, rcgen::KeyPair>,
        index: &mut Index,
        now: OffsetDateTime,
    ) -> Result<()> {
        index.crl = CrlState {
            number: index.crl.number + 1,
            this_update: now - self.policy.backdate,
            next_update: now + self.policy.crl_validity,
        };
        let pem = pki::crl(issuer, index.crl.number, index.crl.this_update, index.crl.next_update, &index.revoked)?;
        commit.stage(self.layout.file(CRL), pem.as_bytes())
    }
}

/// Removes a file that is no longer part of the keyset; a failure is a warning, since the
/// index (already committed) no longer refers to it.
fn remove_or_warn(path: &Path, report: &mut Report) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => report.warnings.push(format!("could not remove {}: {e}", path.display())),
    }
}

/// Jobs for `wanted`, with serials taken from the index in order. A leaf never outlives the CA.
fn new_jobs(
    index: &mut Index,
    wanted: impl Iterator<Item = (String, meshwork_compiler::identity::Kind)>,
    now: OffsetDateTime,
    policy: &Policy,
) -> Vec<Job> {
    let not_before = now - policy.backdate;
    let not_after = (now + policy.leaf_validity).min(index.ca.not_after);
    wanted.map(|(cn, kind)| Job { cn, kind, serial: index.take_serial(), not_before, not_after }).collect()
}

fn record_jobs(index: &mut Index, jobs: &[Job]) {
    for j in jobs {
        index.identities.insert(
            j.cn.clone(),
            Record {
                kind: j.kind,
                serial: j.serial,
                not_before: j.not_before,
                not_after: j.not_after,
                revoked: false,
                revoked_at: None,
            },
        );
    }
}

/// Expiry notices of the keyset in `state` at `now` (for `meshwork check --state-dir`): a
/// notice with `expired` is an error, the others are warnings. Fails like [`Keyset::open`]
/// (no keyset: [`KeyError::NotFound`]).
pub fn expiry_diagnostics(state: &Path, now: OffsetDateTime) -> Result<Vec<ExpiryNotice>> {
    Ok(Keyset::open(state)?.expiry(now))
}
