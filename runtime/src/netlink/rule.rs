//! IPv4 policy routing rules of the form `priority P [iif DEV] lookup TABLE`.

use std::fmt;
use std::io;

use futures_util::TryStreamExt;
use rtnetlink::IpVersion;
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage};
use serde::{Deserialize, Serialize};

use super::{Netlink, errno};

/// `priority PRIORITY [iif IIF] lookup TABLE`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleInfo {
    pub priority: u32,
    /// Input interface name (the interface need not exist).
    pub iif: Option<String>,
    pub table: u32,
}

impl fmt::Display for RuleInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "priority {}", self.priority)?;
        if let Some(iif) = &self.iif {
            write!(f, " iif {iif}")?;
        }
        write!(f, " lookup {}", self.table)
    }
}

/// The rule as a RuleInfo if it is a "lookup TABLE" rule, and whether RuleInfo describes it
/// completely (no other selectors such as from/to/fwmark/oif/not).
fn parse(msg: &RuleMessage) -> Option<(RuleInfo, bool)> {
    if msg.header.action != RuleAction::ToTable {
        return None;
    }
    let mut info = RuleInfo { priority: 0, iif: None, table: u32::from(msg.header.table) };
    let mut complete = msg.header.src_len == 0
        && msg.header.dst_len == 0
        && msg.header.tos == 0
        && !msg.header.flags.contains(RuleFlags::Invert);
    for attr in &msg.attributes {
        match attr {
            RuleAttribute::Priority(p) => info.priority = *p,
            RuleAttribute::Iifname(name) => info.iif = Some(name.clone()),
            RuleAttribute::Table(t) => info.table = *t,
            // The kernel always reports these; u32::MAX (-1) means "not set".
            RuleAttribute::Protocol(_) => {}
            RuleAttribute::SuppressPrefixLen(u32::MAX) | RuleAttribute::SuppressIfGroup(u32::MAX) => {}
            _ => complete = false,
        }
    }
    Some((info, complete))
}

impl Netlink {
    /// IPv4 "lookup TABLE" rules (rules with other selectors are listed by their priority, iif
    /// and table only).
    pub async fn rules(&self) -> io::Result<Vec<RuleInfo>> {
        Ok(self.rule_messages().await?.iter().filter_map(parse).map(|(info, _)| info).collect())
    }

    async fn rule_messages(&self) -> io::Result<Vec<RuleMessage>> {
        self.handle
            .rule()
            .get(IpVersion::V4)
            .execute()
            .try_collect()
            .await
            .map_err(|e| self.error(e, format_args!("cannot list rules")))
    }

    /// Add the rule. Idempotent: an identical rule is left alone. A rule with the same priority
    /// and table but more selectors (`from`, `fwmark`, ...) does not count as identical; the
    /// request is sent without NLM_F_EXCL because the kernel's own duplicate check would.
    pub async fn add_rule(&self, rule: &RuleInfo) -> io::Result<()> {
        if self.rule_messages().await?.iter().any(|m| is_exactly(m, rule)) {
            return Ok(());
        }
        let mut request =
            self.handle.rule().add().v4().table_id(rule.table).priority(rule.priority).action(RuleAction::ToTable);
        if let Some(iif) = &rule.iif {
            request = request.input_interface(iif.clone());
        }
        // replace(): NLM_F_CREATE|NLM_F_REPLACE instead of NLM_F_EXCL (rules have no replace).
        request.replace().execute().await.map_err(|e| self.error(e, format_args!("cannot add rule {rule}")))
    }

    /// Delete exactly this rule; missing is fine. The kernel deletes the *first* rule matching
    /// the selectors it is given, so when a look-alike with more selectors precedes ours (same
    /// priority and table), this refuses with an error instead of deleting the wrong rule.
    pub async fn delete_rule(&self, rule: &RuleInfo) -> io::Result<()> {
        let msgs = self.rule_messages().await?;
        let Some(pos) = msgs.iter().position(|m| is_exactly(m, rule)) else { return Ok(()) };
        let shadowing = msgs[..pos].iter().filter_map(parse).any(|(info, _)| {
            info.priority == rule.priority && info.table == rule.table && (rule.iif.is_none() || info.iif == rule.iif)
        });
        if shadowing {
            return Err(self.plain_error(
                io::ErrorKind::Other,
                format_args!(
                    "cannot delete rule {rule}: an earlier rule with the same priority and table but more \
                     selectors would be deleted instead"
                ),
            ));
        }
        let Some(msg) = msgs.into_iter().nth(pos) else { return Ok(()) };
        match self.handle.rule().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(self.error(e, format_args!("cannot delete rule {rule}"))),
        }
    }
}

fn is_exactly(msg: &RuleMessage, rule: &RuleInfo) -> bool {
    parse(msg).is_some_and(|(info, complete)| complete && info == *rule)
}
