//! The host's own nft table, `inet meshwork`, loaded whole in one transaction: a controller's
//! (engine spreading, the overlay firewall) or a node's (plaintext VXLAN dropped, IKE from peer
//! nodes, the node firewall).

use meshwork_compiler::emit::{nftables, node};

use super::super::desired::{Desired, DesiredError, NFT_TABLE, digest};
use super::super::identity::HostKind;
use super::super::observe::Observed;
use super::super::part::{Observing, Part, Pending, Topology};
use super::super::resource::{Kind, Resource, Spec};
use crate::nft;

pub struct Firewall;

impl Part for Firewall {
    fn desire(&self, t: &Topology<'_>, out: &mut Desired) -> Result<(), DesiredError> {
        let (json, text) = match t.host.kind {
            HostKind::Controller => {
                let c = t.controller()?;
                let renderer = nftables::Renderer::new(t.net);
                (renderer.json(t.net, c), renderer.text(t.net, c))
            }
            HostKind::Node => node::ruleset(t.net, t.node()?),
        };
        out.resources
            .push(Resource::new(Kind::Nftables, NFT_TABLE, Spec::Nftables).attr("ruleset", digest(json.as_bytes())));
        out.nft_json = json;
        out.nft_text = text;
        Ok(())
    }

    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Nftables]
    }

    /// The table's listing stands for the ruleset the last apply loaded as long as it is what
    /// that apply left; anything else was changed outside meshwork.
    fn observe<'a>(&'a self, cx: &'a Observing<'a>, out: &'a mut Observed) -> Pending<'a> {
        Box::pin(async move {
            let listing = nft::list_table().map_err(std::io::Error::other)?;
            if let Some(listing) = &listing {
                let ruleset = match cx.applied.and_then(|a| a.nft.as_ref()) {
                    Some(a) if a.listing == *listing => a.ruleset.clone(),
                    _ => format!("changed outside meshwork ({})", digest(listing.as_bytes())),
                };
                out.add(Resource::new(Kind::Nftables, NFT_TABLE, Spec::Nftables).attr("ruleset", ruleset));
            }
            out.nft_listing = listing;
            Ok(())
        })
    }
}
