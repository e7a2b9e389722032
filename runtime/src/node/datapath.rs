//! Which IPsec data path a node runs (DESIGN §9): `kernel` (XFRM) when the kernel can hold an
//! ESP SA with AES-GCM, `userspace` (strongSwan's libipsec) otherwise. `datapath="auto"` asks
//! the kernel: it adds a throwaway ESP SA in a namespace of its own, which leaves the host
//! untouched and vanishes with the probe.

use std::process::{Command, Stdio};
use std::sync::OnceLock;

use meshwork_compiler::emit::node::{STRONGSWAN_CONF, STRONGSWAN_USERSPACE_CONF};
use meshwork_compiler::model::vxlan::Datapath;

/// The data path that runs, and the strongSwan configuration that selects it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chosen {
    pub datapath: Datapath,
    pub config: &'static str,
}

/// What `datapath` means on this host.
pub fn choose(datapath: Datapath) -> Chosen {
    match datapath {
        Datapath::Auto if kernel_holds_esp() => Chosen { datapath: Datapath::Kernel, config: STRONGSWAN_CONF },
        Datapath::Auto => Chosen { datapath: Datapath::Userspace, config: STRONGSWAN_USERSPACE_CONF },
        // An explicit choice has its own configuration under the usual name.
        d => Chosen { datapath: d, config: STRONGSWAN_CONF },
    }
}

/// Whether the kernel accepts an ESP SA with AES-GCM-128 (asked once per process).
pub fn kernel_holds_esp() -> bool {
    static ANSWER: OnceLock<bool> = OnceLock::new();
    *ANSWER.get_or_init(|| {
        // A zero key in a namespace nothing else sees: it protects nothing and goes with it.
        let key = format!("0x{}", "00".repeat(20));
        Command::new("unshare")
            .args(["--net", "--", "ip", "xfrm", "state", "add", "src", "192.0.2.1", "dst", "192.0.2.2"])
            .args(["proto", "esp", "spi", "0x100", "mode", "tunnel", "aead", "rfc4106(gcm(aes))", &key, "128"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_choices_are_kept_and_auto_follows_the_kernel() {
        assert_eq!(choose(Datapath::Userspace).datapath, Datapath::Userspace);
        assert_eq!(choose(Datapath::Kernel).config, STRONGSWAN_CONF);
        let auto = choose(Datapath::Auto);
        let expected = if kernel_holds_esp() { Datapath::Kernel } else { Datapath::Userspace };
        assert_eq!(auto.datapath, expected);
    }
}
