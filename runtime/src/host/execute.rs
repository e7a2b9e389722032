//! Carries out a plan: deletions first, last-made first (processes stop before their files go,
//! links before their namespaces), then creations and updates in dependency order. The first
//! failure stops the run and says which object and why; what was done stays done and shows in
//! the next plan, so a rerun finishes the job.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::applied::{Applied, AppliedNft};
use super::desired::{Desired, digest};
use super::layout::Layout;
use super::observe::Observed;
use super::parts::ipsec;
use super::plan::{Action, Change, Plan};
use super::resource::{Kind, ResourceId, Spec};
use crate::daemon::{self, Program, Unit};
use crate::netlink::{Fdb, Neighbour, Netlink, VxlanParams};
use crate::node::strongswan;
use crate::{netns, nft};

#[derive(Debug, thiserror::Error)]
#[error("{action} {id} failed: {message}")]
pub struct ExecError {
    pub action: &'static str,
    pub id: ResourceId,
    pub message: String,
    /// How many actions completed before this one.
    pub done: usize,
}

/// Order within a kind where it matters: the bridge before the veths enslaved to it, a veth
/// pair before its engine end.
fn stage(change: &Change) -> (Kind, u8) {
    let spec = change.after.as_ref().or(change.before.as_ref()).map(|r| &r.spec);
    let rank = match spec {
        Some(Spec::Bridge { .. }) => 0,
        Some(Spec::Veth { .. } | Spec::Vxlan { .. } | Spec::OverlayInterface { .. }) => 1,
        Some(Spec::PeerLink { .. }) => 2,
        _ => 0,
    };
    (change.id.kind, rank)
}

/// Netlink connections, one per namespace (None: the controller's own).
#[derive(Default)]
struct Links {
    by_netns: HashMap<Option<String>, Netlink>,
}

impl Links {
    async fn get(&mut self, ns: Option<&str>) -> io::Result<&Netlink> {
        let key = ns.map(str::to_string);
        if !self.by_netns.contains_key(&key) {
            let nl = match ns {
                None => Netlink::connect().await?,
                Some(n) => Netlink::connect_in(n).await?,
            };
            self.by_netns.insert(key.clone(), nl);
        }
        Ok(&self.by_netns[&key])
    }
    fn forget(&mut self, ns: &str) {
        self.by_netns.remove(&Some(ns.to_string()));
    }
}

pub struct Executor<'a> {
    pub layout: &'a Layout,
    pub desired: Option<&'a Desired>,
    /// Whether this run loaded the desired ruleset.
    pub nft_loaded: bool,
    links: Links,
}

impl<'a> Executor<'a> {
    pub fn new(layout: &'a Layout, desired: Option<&'a Desired>) -> Executor<'a> {
        Executor { layout, desired, nft_loaded: false, links: Links::default() }
    }

    /// Runs every action of `plan`; `report` hears of each one as it completes.
    pub async fn run(&mut self, plan: &Plan, report: &mut dyn FnMut(&Change)) -> Result<usize, ExecError> {
        let mut deletions: Vec<&Change> =
            plan.changes.iter().filter(|c| matches!(c.action, Action::Delete | Action::Replace)).collect();
        deletions.sort_by_key(|c| std::cmp::Reverse(stage(c)));
        let mut creations: Vec<&Change> = plan.changes.iter().filter(|c| c.action != Action::Delete).collect();
        creations.sort_by_key(|c| stage(c));
        let mut done = 0;
        // OpenVPN takes seconds to exit (it tells its peers first): stop them all at once.
        let stopping: Vec<std::path::PathBuf> = deletions
            .iter()
            .filter_map(|c| match &c.before.as_ref()?.spec {
                Spec::Process { unit, .. } => Some(self.layout.pidfile(unit)),
                _ => None,
            })
            .collect();
        std::thread::scope(|s| {
            for pidfile in &stopping {
                s.spawn(move || {
                    let _ = daemon::stop(pidfile);
                });
            }
        });
        for c in deletions {
            let spec = &c.before.as_ref().expect("a deletion has a before").spec;
            self.delete(spec).await.map_err(|e| ExecError {
                action: "delete",
                id: c.id.clone(),
                message: e.to_string(),
                done,
            })?;
            if c.action == Action::Delete {
                done += 1;
                report(c);
            }
        }
        for c in creations {
            let spec = &c.after.as_ref().expect("a creation has an after").spec;
            let update = c.action == Action::Update;
            let verb = if update { "update" } else { "create" };
            self.create(spec, update, c).await.map_err(|e| ExecError {
                action: verb,
                id: c.id.clone(),
                message: e.to_string(),
                done,
            })?;
            done += 1;
            report(c);
        }
        Ok(done)
    }

    async fn create(&mut self, spec: &Spec, update: bool, change: &Change) -> io::Result<()> {
        match spec {
            Spec::Netns { name } => netns::create(name),
            Spec::Bridge { name, mtu } => {
                let nl = self.links.get(None).await?;
                if !update {
                    nl.add_bridge(name).await?;
                }
                if let Some(mtu) = mtu {
                    nl.set_mtu(name, *mtu).await?;
                }
                nl.set_up(name).await
            }
            Spec::Vxlan { name, vni, port, local, mtu, master } => {
                let nl = self.links.get(None).await?;
                if !update {
                    nl.add_vxlan(name, VxlanParams::node(*vni, *port, *local)).await?;
                }
                nl.set_mtu(name, *mtu).await?;
                nl.set_master(name, master).await?;
                nl.set_up(name).await
            }
            Spec::OverlayInterface { name, port, bridge, mac, mtu } => {
                let nl = self.links.get(None).await?;
                if !update {
                    nl.add_veth(name, port, None).await?;
                }
                nl.set_mac(name, *mac).await?;
                for link in [name, port] {
                    nl.set_mtu(link, *mtu).await?;
                }
                nl.set_master(port, bridge).await?;
                nl.set_up(port).await?;
                nl.set_up(name).await
            }
            Spec::Fdb { device, entries } => {
                let nl = self.links.get(None).await?;
                let wanted: Vec<Fdb> = entries.iter().map(|(mac, dst)| Fdb { mac: *mac, dst: *dst }).collect();
                let stale: Vec<Fdb> =
                    nl.fdb_entries(device).await?.into_iter().filter(|e| !wanted.contains(e)).collect();
                nl.delete_fdb(device, &stale).await?;
                nl.replace_fdb(device, &wanted).await
            }
            Spec::Neighbours { device, entries } => {
                let nl = self.links.get(None).await?;
                let wanted: Vec<Neighbour> = entries.iter().map(|(ip, mac)| Neighbour { ip: *ip, mac: *mac }).collect();
                let stale: Vec<Neighbour> =
                    nl.neighbours(device).await?.into_iter().filter(|e| !wanted.contains(e)).collect();
                nl.delete_neighbours(device, &stale).await?;
                nl.replace_neighbours(device, &wanted).await
            }
            Spec::Swanctl => {
                let after = change.after.as_ref().map(|r| &r.attrs).ok_or_else(|| io::Error::other("no attributes"))?;
                let work = self.layout.work();
                strongswan::load(&work, None)?;
                for connection in ipsec::rekeyed(change.before.as_ref().map(|r| &r.attrs), after) {
                    // An SA that is down has nothing to re-authenticate; it comes up with the
                    // new key.
                    let _ = strongswan::reauthenticate(&work, None, &connection);
                }
                ipsec::record_loaded(self.layout, after)
            }
            Spec::Veth { name, master, peer, peer_netns } => {
                let nl = self.links.get(None).await?;
                if !update {
                    nl.add_veth(name, peer, Some(peer_netns)).await?;
                }
                nl.set_master(name, master).await?;
                nl.set_up(name).await
            }
            Spec::PeerLink { netns: ns, name } => self.links.get(Some(ns)).await?.set_up(name).await,
            Spec::Link { name } => Err(io::Error::other(format!("meshwork never creates a bare link ({name})"))),
            Spec::Address { netns: ns, link, net } => {
                self.links.get(ns.as_deref()).await?.add_address(link, *net).await
            }
            Spec::Route { netns: ns, route } => self.links.get(ns.as_deref()).await?.replace_route(route).await,
            Spec::Rule { netns: ns, rule } => {
                let nl = self.links.get(ns.as_deref()).await?;
                if update {
                    let _ = nl.delete_rule(rule).await;
                }
                nl.add_rule(rule).await
            }
            Spec::Sysctl { netns: ns, key, value } => netns::sysctl_write(ns.as_deref(), key, value),
            Spec::File { path, mode, .. } => {
                let f = self.desired.and_then(|d| d.files.get(path)).ok_or_else(|| io::Error::other("no content"))?;
                write_file(&self.layout.work(), path, &f.content, *mode)
            }
            Spec::Nftables => {
                let d = self.desired.ok_or_else(|| io::Error::other("no ruleset"))?;
                nft::apply(&d.nft_json).map_err(io::Error::other)?;
                self.nft_loaded = true;
                Ok(())
            }
            Spec::Process { unit, config, netns: ns, program } => {
                let d = self.desired.ok_or_else(|| io::Error::other("no configuration"))?;
                let sha = d
                    .resources
                    .iter()
                    .find(|r| r.id.kind == Kind::Process && r.id.name == *unit)
                    .and_then(|r| r.attrs.get("config").cloned())
                    .unwrap_or_default();
                let unit = self.unit(*program, unit, config, ns.clone())?;
                if update {
                    daemon::stop(&unit.pidfile)?;
                }
                daemon::start(&unit, &sha)?;
                if *program == Program::Charon {
                    // A charon without its connections is no use: load them now, so a restart
                    // (a changed strongswan.conf, or a dead charon) never leaves it empty.
                    let loading = d.resources.iter().find(|r| r.id.kind == Kind::Ike).map(|r| r.attrs.clone());
                    let work = self.layout.work();
                    strongswan::load(&work, ns.as_deref())?;
                    if let Some(attrs) = loading {
                        ipsec::record_loaded(self.layout, &attrs)?;
                    }
                }
                Ok(())
            }
        }
    }

    async fn delete(&mut self, spec: &Spec) -> io::Result<()> {
        match spec {
            Spec::Netns { name } => {
                self.links.forget(name);
                match netns::delete(name) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                    r => r,
                }
            }
            Spec::Bridge { name, .. }
            | Spec::Veth { name, .. }
            | Spec::Link { name }
            | Spec::Vxlan { name, .. }
            | Spec::OverlayInterface { name, .. } => self.links.get(None).await?.delete_link(name).await,
            // With its device, if that goes too.
            Spec::Fdb { device, entries } => {
                let nl = self.links.get(None).await?;
                if nl.link(device).await?.is_none() {
                    return Ok(());
                }
                let entries: Vec<Fdb> = entries.iter().map(|(mac, dst)| Fdb { mac: *mac, dst: *dst }).collect();
                nl.delete_fdb(device, &entries).await
            }
            Spec::Neighbours { device, entries } => {
                let nl = self.links.get(None).await?;
                if nl.link(device).await?.is_none() {
                    return Ok(());
                }
                let entries: Vec<Neighbour> =
                    entries.iter().map(|(ip, mac)| Neighbour { ip: *ip, mac: *mac }).collect();
                nl.delete_neighbours(device, &entries).await
            }
            // Goes with charon.
            Spec::Swanctl => Ok(()),
            // Goes with its pair, or with its namespace.
            Spec::PeerLink { .. } => Ok(()),
            Spec::Address { netns: ns, link, net } => {
                self.links.get(ns.as_deref()).await?.delete_address(link, *net).await
            }
            Spec::Route { netns: ns, route } => self.links.get(ns.as_deref()).await?.delete_route(route).await,
            Spec::Rule { netns: ns, rule } => self.links.get(ns.as_deref()).await?.delete_rule(rule).await,
            // Host settings meshwork needs but does not own: left as they are.
            Spec::Sysctl { .. } => Ok(()),
            Spec::File { path, .. } => {
                let full = self.layout.work().join(path);
                match std::fs::remove_file(&full) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                    r => r,
                }
            }
            Spec::Nftables => nft::delete_table().map(|_| ()).map_err(io::Error::other),
            Spec::Process { unit, .. } => daemon::stop(&self.layout.pidfile(unit)).map(|_| ()),
        }
    }

    fn unit(&self, program: Program, name: &str, config: &str, netns: Option<String>) -> io::Result<Unit> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(self.layout.run())?;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(self.layout.logs())?;
        if program == Program::Openvpn {
            // OpenVPN refuses a missing --client-config-dir, and a controller without clients
            // has no ccd file to make it.
            let ccd = self.layout.work().join(meshwork_compiler::emit::openvpn::CCD_DIR);
            std::fs::DirBuilder::new().recursive(true).mode(0o755).create(ccd)?;
        }
        Ok(Unit {
            program,
            name: name.to_string(),
            dir: self.layout.work(),
            config: config.to_string(),
            netns,
            pidfile: self.layout.pidfile(name),
            log: self.layout.log(name),
        })
    }
}

/// Writes a managed file whole (temporary file, then rename) with its mode; directories that
/// hold keys are 0700.
fn write_file(root: &Path, rel: &str, content: &[u8], mode: u32) -> io::Result<()> {
    let path = root.join(rel);
    let parent = path.parent().unwrap_or(root);
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent)?;
    let tmp =
        parent.join(format!(".{}.meshwork-tmp", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(content)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)
}

/// The record of an apply: the host as observed right after it. The nft table's listing is
/// what this apply loaded, so it stands for the desired ruleset from now on.
/// `nft_loaded`: whether this apply loaded the desired ruleset (or found it in place); if not
/// (a run that failed before it), the previous record of the table is kept.
pub fn record(
    desired: Option<&Desired>,
    mut observed: Observed,
    previous: Option<&Applied>,
    nft_loaded: bool,
) -> Applied {
    let nft = match (desired, &observed.nft_listing) {
        _ if !nft_loaded => previous.and_then(|p| p.nft.clone()),
        (Some(d), Some(listing)) => {
            let ruleset = digest(d.nft_json.as_bytes());
            if let Some(r) = observed.resources.values_mut().find(|r| r.id.kind == Kind::Nftables) {
                r.attrs.insert("ruleset".into(), ruleset.clone());
            }
            Some(AppliedNft { ruleset, listing: listing.clone(), text: d.nft_text.clone() })
        }
        _ => None,
    };
    Applied {
        topology: desired.map(|d| d.topology.clone()).unwrap_or_default(),
        host: desired.map(|d| d.host.clone()),
        checksum: desired.map(|d| d.checksum.clone()).unwrap_or_default(),
        resources: observed.resources.into_values().collect(),
        nft,
    }
}
