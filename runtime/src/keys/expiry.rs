//! Expiry: which certificates (and the CRL) expire soon or have expired, from the index alone.

use std::fmt;

use meshwork_compiler::identity::Kind;
use serde::Serialize;
use time::{Duration, OffsetDateTime};

use super::index::Index;

/// Warn this many days before something expires.
pub const WARNING_DAYS: i64 = 30;

/// What expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "type", content = "kind")]
pub enum Subject {
    /// The CA certificate: everything hangs on it and `keys renew` cannot replace it.
    Ca,
    /// The CRL's next update: OpenSSL refuses every peer once it has passed.
    Crl,
    /// An identity's certificate.
    Certificate(Kind),
}

/// Something that expires within [`WARNING_DAYS`] days or has expired: a warning, or an error
/// when `expired`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExpiryNotice {
    /// The certificate's CN; `ca` for the CA and `crl` for the CRL.
    pub cn: String,
    pub subject: Subject,
    #[serde(serialize_with = "super::index::rfc3339::serialize")]
    pub not_after: OffsetDateTime,
    /// Whole days left (negative once expired).
    pub days_left: i64,
    pub expired: bool,
}

impl ExpiryNotice {
    fn new(cn: &str, subject: Subject, not_after: OffsetDateTime, now: OffsetDateTime) -> Option<ExpiryNotice> {
        let left = not_after - now;
        (left <= Duration::days(WARNING_DAYS)).then(|| ExpiryNotice {
            cn: cn.to_string(),
            subject,
            not_after,
            days_left: left.whole_days(),
            expired: left <= Duration::ZERO,
        })
    }

    /// `error` when expired, else `warning`.
    pub fn severity(&self) -> &'static str {
        if self.expired { "error" } else { "warning" }
    }
}

impl fmt::Display for ExpiryNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let date = self.not_after.date();
        let when = if self.expired {
            format!("expired on {date}")
        } else {
            match self.days_left {
                0 => format!("expires today ({date})"),
                1 => format!("expires in 1 day ({date})"),
                n => format!("expires in {n} days ({date})"),
            }
        };
        match self.subject {
            Subject::Ca => write!(
                f,
                "the topology CA certificate {when}; it cannot be renewed in place: plan a new keyset \
                 (`meshwork keys init` in a new state directory) and redistribute every clientpack"
            ),
            Subject::Crl => {
                write!(f, "the CRL {when} (OpenVPN refuses every peer after that); run `meshwork keys renew`")
            }
            Subject::Certificate(kind) => {
                let kind = match kind {
                    Kind::Controller => "controller",
                    Kind::Engine => "engine",
                    Kind::Peer => "peering",
                    Kind::Client => "client",
                };
                write!(f, "{kind} certificate `{}` {when}; run `meshwork keys renew`", self.cn)
            }
        }
    }
}

/// Every notice at `now`: expired ones first, then by date and name.
pub fn notices(index: &Index, now: OffsetDateTime) -> Vec<ExpiryNotice> {
    let mut out = Vec::new();
    out.extend(ExpiryNotice::new("ca", Subject::Ca, index.ca.not_after, now));
    out.extend(ExpiryNotice::new("crl", Subject::Crl, index.crl.next_update, now));
    for (cn, r) in &index.identities {
        if !r.revoked {
            out.extend(ExpiryNotice::new(cn, Subject::Certificate(r.kind), r.not_after, now));
        }
    }
    out.sort_by(|a, b| b.expired.cmp(&a.expired).then(a.not_after.cmp(&b.not_after)).then(a.cn.cmp(&b.cn)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn warns_within_thirty_days_and_fails_when_expired() {
        let now = datetime!(2027-01-01 12:00 UTC);
        let at = |d: i64| now + Duration::days(d);
        assert!(ExpiryNotice::new("a", Subject::Crl, at(31), now).is_none());
        let n = ExpiryNotice::new("a", Subject::Crl, at(30), now).unwrap();
        assert_eq!((n.days_left, n.expired, n.severity()), (30, false, "warning"));
        let n = ExpiryNotice::new("a", Subject::Certificate(Kind::Client), now, now).unwrap();
        assert!(n.expired);
        assert_eq!(n.severity(), "error");
        let n = ExpiryNotice::new("web-1", Subject::Certificate(Kind::Client), at(-2), now).unwrap();
        assert_eq!(n.days_left, -2);
        assert_eq!(n.to_string(), "client certificate `web-1` expired on 2026-12-30; run `meshwork keys renew`");
        let n = ExpiryNotice::new("east", Subject::Certificate(Kind::Controller), at(12), now).unwrap();
        assert_eq!(
            n.to_string(),
            "controller certificate `east` expires in 12 days (2027-01-13); run `meshwork keys renew`"
        );
    }
}
