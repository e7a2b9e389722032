//! MTU arithmetic for VXLAN paths, with and without the IPsec tunnel (IPv4 underlay).
//!
//! VXLAN adds 50 bytes (`VXLAN_HEADROOM` in the kernel: outer IPv4 20, UDP 8, VXLAN 8, inner
//! Ethernet 14; RFC 7348), 4 more with an inner 802.1Q tag. Across PDCs the VXLAN packet rides
//! in tunnel-mode ESP, always UDP-encapsulated (RFC 3948): outer IPv4 20, UDP 8, and ESP with
//! AES-GCM (RFC 4303/4106): SPI 4 + sequence 4 + IV 8 + ICV 16 + pad length 1 + next header 1,
//! the payload plus those 2 trailer bytes padded to a multiple of 4. In all 62-65 bytes.
//!
//! The userspace data path adds a ceiling of its own: strongSwan 5.9's libipsec reads its TUN
//! device (`ipsec0`) with a fixed 1400-byte buffer and has no setting to raise it (verified: a
//! larger device MTU set from outside still loses every packet over 1400), so across PDCs the
//! VXLAN packet must fit 1400 too. `datapath="auto"` may pick that path, so it counts it as well.

use crate::model::vxlan::Datapath;

/// Outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14.
pub const VXLAN_HEADERS: u32 = 50;
pub const VLAN_TAG: u32 = 4;
pub const OUTER_IPV4: u32 = 20;
pub const UDP_ENCAPSULATION: u32 = 8;
/// SPI 4 + sequence 4 + IV 8 + ICV 16 + pad length 1 + next header 1 (padding apart).
pub const ESP_FIXED: u32 = 34;
/// The largest packet strongSwan 5.9's libipsec carries through its TUN device.
pub const LIBIPSEC_TUN_MTU: u32 = 1400;

/// What a path between two nodes adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathKind {
    /// The overlay carries an inner 802.1Q tag.
    pub vlan: bool,
    /// The path crosses PDCs, inside the IPsec tunnel.
    pub ipsec: bool,
    /// The largest VXLAN packet the IPsec data path itself carries, when it has such a limit
    /// (the userspace path's TUN device).
    pub tun: Option<u32>,
}

impl PathKind {
    pub fn new(vlan: bool, ipsec: bool, datapath: Datapath) -> Self {
        let tun = (ipsec && datapath != Datapath::Kernel).then_some(LIBIPSEC_TUN_MTU);
        Self { vlan, ipsec, tun }
    }
}

/// The bytes a path adds to a frame of `mtu`, by layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub mtu: u32,
    pub vxlan: u32,
    pub vlan: u32,
    /// Outer IPv4 + UDP + ESP fixed part, or 0 in clear.
    pub ipsec: u32,
    /// ESP padding (0-3), or 0 in clear.
    pub padding: u32,
    pub tun: Option<u32>,
}

impl Budget {
    pub fn of(mtu: u32, path: PathKind) -> Self {
        let vlan = if path.vlan { VLAN_TAG } else { 0 };
        let inner = mtu + VXLAN_HEADERS + vlan;
        let (ipsec, padding) =
            if path.ipsec { (OUTER_IPV4 + UDP_ENCAPSULATION + ESP_FIXED, (4 - (inner + 2) % 4) % 4) } else { (0, 0) };
        Self { mtu, vxlan: VXLAN_HEADERS, vlan, ipsec, padding, tun: path.tun }
    }

    /// The packets of this MTU fit an underlay of `underlay` bytes and the data path.
    pub fn fits(&self, underlay: u32) -> bool {
        self.total() <= underlay && self.tun.is_none_or(|t| self.inner_packet() <= t)
    }

    /// Why the packets do not fit (the arithmetic of the first limit they exceed), or None.
    pub fn excess(&self, underlay: u32) -> Option<String> {
        if self.total() > underlay {
            return Some(format!("{} > {underlay} (the underlay)", self.arithmetic()));
        }
        let tun = self.tun.filter(|t| self.inner_packet() > *t)?;
        let vlan = if self.vlan > 0 { format!(" + {} (VLAN tag)", self.vlan) } else { String::new() };
        Some(format!(
            "{} + {} (VXLAN){vlan} = {} > {tun} (the userspace IPsec data path's TUN device)",
            self.mtu,
            self.vxlan,
            self.inner_packet()
        ))
    }

    /// The VXLAN packet (outer IPv4 header and all) before IPsec: what the libipsec TUN device
    /// must carry.
    pub fn inner_packet(&self) -> u32 {
        self.mtu + self.vxlan + self.vlan
    }

    /// The packet on the underlay.
    pub fn total(&self) -> u32 {
        self.inner_packet() + self.ipsec + self.padding
    }

    /// "1400 + 50 (VXLAN) + 4 (VLAN) + 62 (IPsec: outer IPv4 20, UDP 8, ESP 34) + 0 (ESP padding) = 1516"
    pub fn arithmetic(&self) -> String {
        let mut s = format!("{} + {} (VXLAN)", self.mtu, self.vxlan);
        if self.vlan > 0 {
            s += &format!(" + {} (VLAN tag)", self.vlan);
        }
        if self.ipsec > 0 {
            s += &format!(
                " + {} (IPsec: outer IPv4 {OUTER_IPV4}, UDP {UDP_ENCAPSULATION}, ESP {ESP_FIXED}) + {} (ESP padding)",
                self.ipsec, self.padding
            );
        }
        format!("{s} = {}", self.total())
    }
}

/// The largest MTU whose frames fit `underlay` on `path` (0 when none does).
pub fn largest_fitting(underlay: u32, path: PathKind) -> u32 {
    let fixed = Budget::of(0, path);
    let mut mtu = underlay.saturating_sub(fixed.vxlan + fixed.vlan + fixed.ipsec);
    if let Some(tun) = path.tun {
        mtu = mtu.min(tun.saturating_sub(fixed.vxlan + fixed.vlan));
    }
    while mtu > 0 && !Budget::of(mtu, path).fits(underlay) {
        mtu -= 1;
    }
    mtu
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: PathKind = PathKind { vlan: false, ipsec: false, tun: None };
    const PLAIN_VLAN: PathKind = PathKind { vlan: true, ipsec: false, tun: None };
    const IPSEC: PathKind = PathKind { vlan: false, ipsec: true, tun: None };
    const IPSEC_VLAN: PathKind = PathKind { vlan: true, ipsec: true, tun: None };

    #[test]
    fn the_userspace_path_is_bound_by_its_tun_device() {
        for datapath in [Datapath::Userspace, Datapath::Auto] {
            assert_eq!(largest_fitting(1500, PathKind::new(false, true, datapath)), 1350);
            assert_eq!(largest_fitting(1500, PathKind::new(true, true, datapath)), 1346);
            // In clear the data path does not matter.
            assert_eq!(largest_fitting(1500, PathKind::new(false, false, datapath)), 1450);
        }
        assert_eq!(largest_fitting(1500, PathKind::new(false, true, Datapath::Kernel)), 1388);
        let over = Budget::of(1351, PathKind::new(false, true, Datapath::Userspace));
        assert_eq!(
            over.excess(1500).as_deref(),
            Some("1351 + 50 (VXLAN) = 1401 > 1400 (the userspace IPsec data path's TUN device)")
        );
        assert_eq!(Budget::of(1350, PathKind::new(false, true, Datapath::Userspace)).excess(1500), None);
    }

    #[test]
    fn design_worked_figures_for_a_1500_underlay() {
        assert_eq!(largest_fitting(1500, PLAIN), 1450);
        assert_eq!(largest_fitting(1500, PLAIN_VLAN), 1446);
        assert_eq!(largest_fitting(1500, IPSEC), 1388);
        assert_eq!(largest_fitting(1500, IPSEC_VLAN), 1384);
    }

    #[test]
    fn esp_padding_makes_the_tunnel_cost_62_to_65() {
        let costs: Vec<u32> = (1380..1384).map(|m| Budget::of(m, IPSEC).total() - m - VXLAN_HEADERS).collect();
        assert_eq!(costs.iter().min(), Some(&62));
        assert_eq!(costs.iter().max(), Some(&65));
        // One byte over the largest fitting MTU does not fit.
        assert!(Budget::of(1389, IPSEC).total() > 1500);
        assert_eq!(Budget::of(1388, IPSEC).total(), 1500);
    }

    #[test]
    fn arithmetic_is_spelled_out() {
        assert_eq!(
            Budget::of(1400, IPSEC_VLAN).arithmetic(),
            "1400 + 50 (VXLAN) + 4 (VLAN tag) + 62 (IPsec: outer IPv4 20, UDP 8, ESP 34) + 0 (ESP padding) = 1516"
        );
        assert_eq!(Budget::of(1450, PLAIN).arithmetic(), "1450 + 50 (VXLAN) = 1500");
    }
}
