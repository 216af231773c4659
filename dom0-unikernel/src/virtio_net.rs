//! Frames the NIC check sends and recognises: an ARP request for an IPv4
//! address and the reply to it, parsed in two steps (length-checked, then
//! field by field) so a hostile frame cannot make it panic; and the MAC
//! address Dom0's own interface takes beside the NIC's.

/// A MAC address.
pub type Mac = [u8; 6];
/// An IPv4 address.
pub type Ipv4 = [u8; 4];

/// Length of an Ethernet frame carrying ARP for IPv4 (no padding).
pub const ARP_FRAME_LEN: usize = 42;
const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];
/// hardware Ethernet, protocol IPv4, lengths 6 and 4.
const ARP_IPV4_ETHERNET: [u8; 6] = [0x00, 0x01, 0x08, 0x00, 6, 4];
const OPERATION_REQUEST: [u8; 2] = [0, 1];
const OPERATION_REPLY: [u8; 2] = [0, 2];

/// Dom0's own MAC address on the bridge: the NIC's, unicast, with the
/// locally-administered bit set, and another first octet if that is the
/// NIC's already (QEMU's `52:54:00:...` is), so the two never match.
pub fn dom0_mac_for(nic: Mac) -> Mac {
    let mut mac = nic;
    mac[0] = (nic[0] | 0x02) & !0x01;
    if mac == nic {
        mac[0] ^= 0x04;
    }
    mac
}

/// A broadcast ARP request: who has `target`? tell `sender` at `mac`.
pub fn arp_request(mac: Mac, sender: Ipv4, target: Ipv4) -> [u8; ARP_FRAME_LEN] {
    let mut frame = [0u8; ARP_FRAME_LEN];
    frame[..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&ETHERTYPE_ARP);
    frame[14..20].copy_from_slice(&ARP_IPV4_ETHERNET);
    frame[20..22].copy_from_slice(&OPERATION_REQUEST);
    frame[22..28].copy_from_slice(&mac);
    frame[28..32].copy_from_slice(&sender);
    // Target hardware address stays zero: that is what is asked.
    frame[38..42].copy_from_slice(&target);
    frame
}

/// An ARP reply addressed to `mac`: who answered, from which address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpReply {
    pub sender_mac: Mac,
    pub sender_ip: Ipv4,
}

/// Reads `frame` as an ARP reply for IPv4 sent to `mac`, or `None`.
pub fn parse_arp_reply(frame: &[u8], mac: Mac) -> Option<ArpReply> {
    let frame = frame.get(..ARP_FRAME_LEN)?;
    let field = |range: core::ops::Range<usize>| frame.get(range);
    if field(0..6)? != mac
        || field(12..14)? != ETHERTYPE_ARP
        || field(14..20)? != ARP_IPV4_ETHERNET
        || field(20..22)? != OPERATION_REPLY
        || field(32..38)? != mac
    {
        return None;
    }
    Some(ArpReply {
        sender_mac: field(22..28)?.try_into().ok()?,
        sender_ip: field(28..32)?.try_into().ok()?,
    })
}

/// `aa:bb:cc:dd:ee:ff`.
pub struct MacDisplay(pub Mac);

impl core::fmt::Display for MacDisplay {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// `a.b.c.d`.
pub struct Ipv4Display(pub Ipv4);

impl core::fmt::Display for Ipv4Display {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [a, b, c, d] = self.0;
        write!(f, "{a}.{b}.{c}.{d}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dom0_mac_is_local_unicast_and_never_the_nics() {
        for nic in [
            [0x52, 0x54, 0x00, 0x12, 0x34, 0x56],
            [0x00, 0x16, 0x3e, 0x00, 0x00, 0x01],
            [0x02, 0, 0, 0, 0, 1],
            [0xff; 6],
            [0x01, 0, 0, 0, 0, 0],
        ] {
            let mac = dom0_mac_for(nic);
            assert_ne!(mac, nic, "{nic:02x?}");
            assert_eq!(mac[0] & 0x03, 0x02, "{mac:02x?}: local, unicast");
            assert_eq!(mac[1..], nic[1..]);
        }
        assert_eq!(
            dom0_mac_for([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
            [0x56, 0x54, 0x00, 0x12, 0x34, 0x56]
        );
    }

    const MAC: Mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const GATEWAY_MAC: Mac = [0x52, 0x55, 10, 0, 2, 2];

    fn reply() -> [u8; 60] {
        // As QEMU's user network answers: padded to 60 bytes.
        let mut frame = [0u8; 60];
        frame[..6].copy_from_slice(&MAC);
        frame[6..12].copy_from_slice(&GATEWAY_MAC);
        frame[12..14].copy_from_slice(&ETHERTYPE_ARP);
        frame[14..20].copy_from_slice(&ARP_IPV4_ETHERNET);
        frame[20..22].copy_from_slice(&OPERATION_REPLY);
        frame[22..28].copy_from_slice(&GATEWAY_MAC);
        frame[28..32].copy_from_slice(&[10, 0, 2, 2]);
        frame[32..38].copy_from_slice(&MAC);
        frame[38..42].copy_from_slice(&[10, 0, 2, 15]);
        frame
    }

    #[test]
    fn request_layout() {
        let frame = arp_request(MAC, [10, 0, 2, 15], [10, 0, 2, 2]);
        assert_eq!(frame[..6], [0xff; 6]);
        assert_eq!(frame[6..12], MAC);
        assert_eq!(frame[12..14], [8, 6]);
        assert_eq!(frame[20..22], [0, 1]);
        assert_eq!(frame[28..32], [10, 0, 2, 15]);
        assert_eq!(frame[32..38], [0; 6]);
        assert_eq!(frame[38..42], [10, 0, 2, 2]);
        // Our own request is not a reply.
        assert_eq!(parse_arp_reply(&frame, MAC), None);
    }

    #[test]
    fn replies_are_recognised() {
        assert_eq!(
            parse_arp_reply(&reply(), MAC),
            Some(ArpReply {
                sender_mac: GATEWAY_MAC,
                sender_ip: [10, 0, 2, 2]
            })
        );
        assert_eq!(parse_arp_reply(&reply(), GATEWAY_MAC), None);
    }

    #[test]
    fn short_or_foreign_frames_are_not_replies() {
        let frame = reply();
        for length in 0..ARP_FRAME_LEN {
            assert_eq!(parse_arp_reply(&frame[..length], MAC), None);
        }
        let mut ipv4 = frame;
        ipv4[12..14].copy_from_slice(&[8, 0]);
        assert_eq!(parse_arp_reply(&ipv4, MAC), None);
        let mut request = frame;
        request[21] = 1;
        assert_eq!(parse_arp_reply(&request, MAC), None);
    }

    #[test]
    fn addresses_print_as_usual() {
        assert_eq!(MacDisplay(MAC).to_string(), "52:54:00:12:34:56");
        assert_eq!(Ipv4Display([10, 0, 2, 2]).to_string(), "10.0.2.2");
    }
}
