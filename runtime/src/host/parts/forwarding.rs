//! A controller routes overlay traffic: IP forwarding on, meshwork's static routes in its own
//! namespace, and the /32 routes the agent learns for clients on engines (left to the agent,
//! but read here so it knows what it installed). Also reads back every setting a part wants,
//! since meshwork owns only the settings the topology names.

use super::super::desired::{Desired, DesiredError, IP_FORWARD, route_resource};
use super::super::observe::Observed;
use super::super::part::{Observing, Part, Pending, Topology};
use super::super::resource::{Kind, Resource, Spec};
use super::super::{ROUTE_PROTO_AGENT, ROUTE_PROTO_STATIC};
use crate::netns;

pub struct Forwarding;

impl Part for Forwarding {
    fn desire(&self, _t: &Topology<'_>, out: &mut Desired) -> Result<(), DesiredError> {
        out.resources.push(
            Resource::new(
                Kind::Sysctl,
                IP_FORWARD,
                Spec::Sysctl { netns: None, key: IP_FORWARD.into(), value: "1".into() },
            )
            .attr("value", "1"),
        );
        Ok(())
    }

    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Route, Kind::Sysctl]
    }

    fn observe<'a>(&'a self, cx: &'a Observing<'a>, out: &'a mut Observed) -> Pending<'a> {
        Box::pin(async move {
            for route in cx.nl.routes(Some(ROUTE_PROTO_STATIC), None).await? {
                out.add(route_resource(None, route));
            }
            out.client_routes = cx.nl.routes(Some(ROUTE_PROTO_AGENT), None).await?;
            let namespaces = netns::list()?;
            for r in cx.wanted.values() {
                if let Spec::Sysctl { netns: ns, key, .. } = &r.spec {
                    if ns.as_ref().is_some_and(|n| !namespaces.contains(n)) {
                        continue;
                    }
                    if let Ok(value) = netns::sysctl_read(ns.as_deref(), key) {
                        let mut o = r.clone();
                        o.attrs.insert("value".into(), value.trim().to_string());
                        out.add(o);
                    }
                }
            }
            Ok(())
        })
    }
}
