//! The compiled output, laid out as `meshwork build` writes it.
//!
//! Artifacts are produced as a stream (`emit`), so a large topology is written as it is
//! rendered instead of being held in memory whole, on two threads. Content that is the same
//! for every controller is rendered once: the firewall's sets and chain are spliced into each
//! controller's ruleset, and the clients' ccd files are written once under `ccd/`, with each
//! controller's `openvpn/ccd` a symbolic link to them.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest, Sha256};

use crate::emit;
use crate::network::{ControllerNet, Network};
use crate::vxlan::NodeNet;

pub const CHECKSUM_PATH: &str = "checksum";
/// The fingerprint of the keyset's CA, when the build was given one.
pub const CA_FINGERPRINT_PATH: &str = "ca-fingerprint";

/// What a build takes besides the network.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// Hex SHA-256 of the topology CA's certificate. It goes into the checksum, so controllers
    /// on different keysets show different checksums.
    pub ca_fingerprint: Option<String>,
}
/// Where the shared client-config-dir lives, and what each controller's `openvpn/ccd` points to.
pub const CCD_DIR: &str = "ccd";
pub const CCD_LINK_TARGET: &str = "../../../ccd";

/// One artifact as it is emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Artifact<'a> {
    File(&'a str),
    /// A symbolic link with this (relative) target.
    Link(&'a str),
}

/// Path (relative, '/'-separated) -> content, for tests and small topologies. Symbolic links
/// are kept apart so that `.0` is the files alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Artifacts(pub BTreeMap<String, String>, pub BTreeMap<String, String>);

impl Artifacts {
    pub fn insert(&mut self, path: impl Into<String>, content: impl Into<String>) {
        self.0.insert(path.into(), content.into());
    }
    pub fn get(&self, path: &str) -> Option<&str> {
        self.0.get(path).map(String::as_str)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }
    pub fn links(&self) -> &BTreeMap<String, String> {
        &self.1
    }
    pub fn checksum(&self) -> &str {
        self.get(CHECKSUM_PATH).map_or("", str::trim_end)
    }
}

/// Every artifact, collected in memory.
pub fn build(net: &Network) -> Artifacts {
    build_with(net, &BuildOptions::default())
}

/// Every artifact, collected in memory, with options.
pub fn build_with(net: &Network, options: &BuildOptions) -> Artifacts {
    let collected = Mutex::new(Artifacts::default());
    let result: Result<String, std::convert::Infallible> = emit_all(net, options, &|path, artifact| {
        let mut a = collected.lock().unwrap_or_else(|e| e.into_inner());
        match artifact {
            Artifact::File(content) => a.0.insert(path.to_string(), content.to_string()),
            Artifact::Link(target) => a.1.insert(path.to_string(), target.to_string()),
        };
        Ok(())
    });
    let Ok(_) = result;
    collected.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// The topology checksum alone (renders everything, writes nothing).
pub fn checksum(net: &Network, options: &BuildOptions) -> String {
    let result: Result<String, std::convert::Infallible> = emit_all(net, options, &|_, _| Ok(()));
    let Ok(sum) = result;
    sum
}

/// Work items; two threads take them in turn.
enum Job<'a> {
    /// Clients' ccd files, a slice of them.
    Ccd(std::ops::Range<usize>),
    Controller(&'a ControllerNet),
    Node(&'a NodeNet),
}

/// Emits every artifact to `sink` (from up to two threads at once), the checksum file last, and
/// returns the checksum. The first error from the sink stops the work and is returned.
///
/// The checksum is SHA-256 over the SHA-256 digests of the work items in a fixed order (the ccd
/// slices, then the controllers by id, then the nodes in declaration order), each digest taken over its artifacts' paths and
/// contents, followed by the CA fingerprint when there is one. It is the same on every
/// controller, whatever the file format of the topology, and changes with any artifact and
/// with the keyset.
pub fn emit_all<E: Send>(
    net: &Network,
    options: &BuildOptions,
    sink: &(dyn Fn(&str, Artifact<'_>) -> Result<(), E> + Sync),
) -> Result<String, E> {
    let nft = emit::nftables::Renderer::new(net);
    let vns3 = emit::vns3::Renderer::new(net);
    let ccd = emit::openvpn::ccd_files(net);
    const CCD_SLICES: usize = 2;
    let per_slice = ccd.len().div_ceil(CCD_SLICES).max(1);
    let mut jobs: Vec<Job<'_>> = (0..CCD_SLICES)
        .map(|i| Job::Ccd((i * per_slice).min(ccd.len())..((i + 1) * per_slice).min(ccd.len())))
        .collect();
    jobs.extend(net.controllers.iter().map(Job::Controller));
    jobs.extend(net.vxlan.nodes.iter().map(Job::Node));

    let next = AtomicUsize::new(0);
    let digests: Vec<Mutex<Option<[u8; 32]>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
    let failure: Mutex<Option<E>> = Mutex::new(None);
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(job) = jobs.get(i) else { return };
            let mut h = Sha256::new();
            let mut put = |path: &str, artifact: Artifact<'_>| -> Result<(), E> {
                h.update(path.as_bytes());
                h.update(match artifact {
                    Artifact::File(_) => [0u8],
                    Artifact::Link(_) => [1u8],
                });
                let (Artifact::File(body) | Artifact::Link(body)) = artifact;
                h.update((body.len() as u64).to_le_bytes());
                h.update(body.as_bytes());
                sink(path, artifact)
            };
            let result = match job {
                Job::Ccd(range) => ccd[range.clone()]
                    .iter()
                    .try_for_each(|(name, content)| put(&format!("{CCD_DIR}/{name}"), Artifact::File(content))),
                Job::Controller(c) => controller(net, c, &nft, &vns3, &mut put),
                Job::Node(n) => node(net, n, &mut put),
            };
            match result {
                Ok(()) => *digests[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(h.finalize().into()),
                Err(e) => {
                    failure.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
                    next.store(jobs.len(), Ordering::Relaxed);
                    return;
                }
            }
        }
    };
    std::thread::scope(|s| {
        s.spawn(work);
        work();
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    let mut total = Sha256::new();
    for d in digests {
        total.update(d.into_inner().unwrap_or_else(|e| e.into_inner()).unwrap_or_default());
    }
    if let Some(fingerprint) = &options.ca_fingerprint {
        total.update(b"ca\0");
        total.update(fingerprint.as_bytes());
        sink(CA_FINGERPRINT_PATH, Artifact::File(&format!("{fingerprint}\n")))?;
    }
    let sum: String = total.finalize().iter().map(|b| format!("{b:02x}")).collect();
    sink(CHECKSUM_PATH, Artifact::File(&format!("{sum}\n")))?;
    Ok(sum)
}

/// One node's artifacts, in a fixed order.
fn node<E>(net: &Network, n: &NodeNet, put: &mut dyn FnMut(&str, Artifact<'_>) -> Result<(), E>) -> Result<(), E> {
    let dir = emit::node::dir(&n.name);
    for (path, content) in emit::node::artifacts(net, n) {
        put(&format!("{dir}/{path}"), Artifact::File(&content))?;
    }
    Ok(())
}

/// One controller's artifacts, in a fixed order.
fn controller<E>(
    net: &Network,
    c: &ControllerNet,
    nft: &emit::nftables::Renderer,
    vns3: &emit::vns3::Renderer,
    put: &mut dyn FnMut(&str, Artifact<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let dir = format!("controllers/{}", c.name);
    put(&format!("{dir}/nftables.json"), Artifact::File(&nft.json(net, c)))?;
    put(&format!("{dir}/nftables.nft"), Artifact::File(&nft.text(net, c)))?;
    put(&format!("{dir}/vns3-firewall.txt"), Artifact::File(&vns3.firewall(net, c)))?;
    put(&format!("{dir}/routes.json"), Artifact::File(&emit::routes::to_json(net, c)))?;
    for (path, content) in emit::openvpn::configs(net, c) {
        put(&format!("{dir}/openvpn/{path}"), Artifact::File(&content))?;
    }
    put(&format!("{dir}/openvpn/{CCD_DIR}"), Artifact::Link(CCD_LINK_TARGET))
}
