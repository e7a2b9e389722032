//! ICMP echo messages, as raw sockets send them: the lab's probes (echo requests) and the
//! agent's heartbeats to clients (echo replies, which nobody answers).

/// ICMP types this crate sends.
pub const ECHO_REPLY: u8 = 0;
pub const ECHO_REQUEST: u8 = 8;

/// An ICMP echo message of `kind` (request or reply), checksummed: the ICMP header and payload,
/// without the IPv4 header the kernel adds.
pub fn echo(kind: u8, ident: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![kind, 0, 0, 0];
    packet.extend_from_slice(&ident.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(payload);
    let sum = checksum(&packet);
    packet[2..4].copy_from_slice(&sum.to_be_bytes());
    packet
}

/// The Internet checksum (RFC 1071).
pub fn checksum(data: &[u8]) -> u16 {
    // u64: no overflow for any slice a machine can hold.
    let mut sum: u64 =
        data.chunks(2).map(|pair| u64::from(u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_messages_verify_and_say_what_they_are() {
        for kind in [ECHO_REQUEST, ECHO_REPLY] {
            let packet = echo(kind, 0x1234, 2, b"odd");
            assert_eq!(checksum(&packet), 0, "a checksummed message sums to zero");
            assert_eq!(packet[0], kind);
            assert_eq!(&packet[4..8], &[0x12, 0x34, 0, 2]);
            assert_eq!(&packet[8..], b"odd");
        }
    }
}
