//! The L2 switch between the VMs' network devices (`[[network]]`): one
//! per network, its ports the network devices of the VMs on it. It learns
//! where source MACs live and floods what it does not know, but a frame
//! never leaves its network, and a port cannot take another's address:
//! each port's own MAC (the composer's) is pinned to it, so a VM that
//! sends with a neighbour's source MAC is dropped, not believed, and a VM
//! that sprays random source MACs fills only its own share of the table.

use alloc::vec::Vec;

/// A network device: its VM and its index in that VM's device table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Port {
    pub vm: usize,
    pub device: usize,
}

/// Learned addresses a network keeps, and how many one port may hold.
pub const LEARNED_MAX: usize = 64;
pub const LEARNED_PER_PORT: usize = 8;
/// Ethernet header: destination, source, EtherType.
pub const HEADER: usize = 14;

/// Why a frame went nowhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Shorter than an Ethernet header.
    Runt,
    /// Its source MAC is multicast, or another port's own.
    Spoofed,
    /// From a port the switch does not have.
    NoSuchPort,
}

struct Network {
    /// Ports and their own MACs.
    ports: Vec<(Port, [u8; 6])>,
    /// Learned (MAC, port index), oldest first.
    learned: Vec<([u8; 6], usize)>,
}

/// Every network's switch.
#[derive(Default)]
pub struct Switch {
    networks: Vec<Network>,
    /// Frames dropped so far, for the log.
    pub dropped: u64,
}

fn is_multicast(mac: &[u8]) -> bool {
    mac[0] & 1 != 0
}

impl Switch {
    /// Adds `port`, whose own address is `mac`, to network `network`.
    pub fn add_port(&mut self, network: usize, port: Port, mac: [u8; 6]) {
        while self.networks.len() <= network {
            self.networks.push(Network {
                ports: Vec::new(),
                learned: Vec::new(),
            });
        }
        self.networks[network].ports.push((port, mac));
    }

    /// How many ports there are, on every network.
    pub fn ports(&self) -> usize {
        self.networks.iter().map(|n| n.ports.len()).sum()
    }

    /// The network `port` is on, and its index there.
    pub fn find(&self, port: Port) -> Option<(usize, usize)> {
        self.networks.iter().enumerate().find_map(|(n, net)| {
            let index = net.ports.iter().position(|(p, _)| *p == port)?;
            Some((n, index))
        })
    }

    /// Where `frame`, sent by `from`, goes: each port it is delivered to is
    /// passed to `to` (never `from` itself, never a port of another
    /// network).
    pub fn route(
        &mut self,
        from: Port,
        frame: &[u8],
        mut to: impl FnMut(Port),
    ) -> Result<(), Dropped> {
        let result = self.route_inner(from, frame, &mut to);
        if result.is_err() {
            self.dropped += 1;
        }
        result
    }

    fn route_inner(
        &mut self,
        from: Port,
        frame: &[u8],
        to: &mut impl FnMut(Port),
    ) -> Result<(), Dropped> {
        let (network, sender) = self.find(from).ok_or(Dropped::NoSuchPort)?;
        if frame.len() < HEADER {
            return Err(Dropped::Runt);
        }
        let (dst, src) = (&frame[..6], &frame[6..12]);
        let net = &mut self.networks[network];
        let owner = net.ports.iter().position(|(_, mac)| mac == src);
        if is_multicast(src) || owner.is_some_and(|o| o != sender) {
            return Err(Dropped::Spoofed);
        }
        if owner.is_none() {
            net.learn(src.try_into().expect("6 bytes"), sender);
        }
        let target = if is_multicast(dst) {
            None
        } else {
            net.ports
                .iter()
                .position(|(_, mac)| mac == dst)
                .or_else(|| {
                    net.learned
                        .iter()
                        .find(|(mac, _)| mac == dst)
                        .map(|&(_, p)| p)
                })
        };
        match target {
            Some(port) if port == sender => {}
            Some(port) => to(net.ports[port].0),
            None => net
                .ports
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != sender)
                .for_each(|(_, (port, _))| to(*port)),
        }
        Ok(())
    }
}

impl Network {
    /// `mac` lives behind port `port` now; a port over its share gives up
    /// its oldest entry, a full table its oldest.
    fn learn(&mut self, mac: [u8; 6], port: usize) {
        if let Some(at) = self.learned.iter().position(|(m, _)| *m == mac) {
            self.learned.remove(at);
        } else if self.learned.iter().filter(|(_, p)| *p == port).count() >= LEARNED_PER_PORT {
            let oldest = self.learned.iter().position(|(_, p)| *p == port);
            self.learned.remove(oldest.expect("counted"));
        } else if self.learned.len() >= LEARNED_MAX {
            self.learned.remove(0);
        }
        self.learned.push((mac, port));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const A: Port = Port { vm: 0, device: 1 };
    const B: Port = Port { vm: 1, device: 0 };
    const C: Port = Port { vm: 2, device: 0 };
    const D: Port = Port { vm: 3, device: 0 };

    fn mac(n: u8) -> [u8; 6] {
        [2, 0x54, 0x53, 0, 0, n]
    }

    fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f
    }

    /// A, B, C on network 0; D alone on network 1.
    fn switch() -> Switch {
        let mut s = Switch::default();
        s.add_port(0, A, mac(1));
        s.add_port(0, B, mac(2));
        s.add_port(0, C, mac(3));
        s.add_port(1, D, mac(4));
        s
    }

    fn route(s: &mut Switch, from: Port, f: &[u8]) -> Result<Vec<Port>, Dropped> {
        let mut to = Vec::new();
        s.route(from, f, |p| to.push(p))?;
        Ok(to)
    }

    #[test]
    fn unicast_to_a_known_port_goes_there_only() {
        let mut s = switch();
        assert_eq!(route(&mut s, A, &frame(mac(2), mac(1))), Ok(vec![B]));
        assert_eq!(route(&mut s, B, &frame(mac(3), mac(2))), Ok(vec![C]));
    }

    #[test]
    fn broadcast_and_unknown_flood_the_network_and_nothing_else() {
        let mut s = switch();
        let broadcast = frame([0xff; 6], mac(1));
        assert_eq!(route(&mut s, A, &broadcast), Ok(vec![B, C]));
        assert_eq!(route(&mut s, A, &frame(mac(9), mac(1))), Ok(vec![B, C]));
        // D's address from network 0 is unknown there: never to D.
        assert_eq!(route(&mut s, A, &frame(mac(4), mac(1))), Ok(vec![B, C]));
        assert_eq!(route(&mut s, D, &broadcast_from(mac(4))), Ok(vec![]));
    }

    fn broadcast_from(src: [u8; 6]) -> Vec<u8> {
        frame([0xff; 6], src)
    }

    #[test]
    fn learned_addresses_are_unicast_to() {
        let mut s = switch();
        // B sends as a second address (a bridge in the guest).
        assert_eq!(route(&mut s, B, &frame(mac(1), mac(20))), Ok(vec![A]));
        assert_eq!(route(&mut s, A, &frame(mac(20), mac(1))), Ok(vec![B]));
        // It moves to C.
        route(&mut s, C, &frame(mac(1), mac(20))).unwrap();
        assert_eq!(route(&mut s, A, &frame(mac(20), mac(1))), Ok(vec![C]));
    }

    #[test]
    fn a_port_cannot_take_a_neighbours_address() {
        let mut s = switch();
        assert_eq!(
            route(&mut s, C, &frame(mac(1), mac(2))),
            Err(Dropped::Spoofed)
        );
        assert_eq!(
            route(&mut s, C, &broadcast_from([0x01, 0, 0x5e, 0, 0, 1])),
            Err(Dropped::Spoofed)
        );
        // B's traffic still goes to B.
        assert_eq!(route(&mut s, A, &frame(mac(2), mac(1))), Ok(vec![B]));
        assert_eq!(s.dropped, 2);
    }

    #[test]
    fn a_sprayer_fills_only_its_share() {
        let mut s = switch();
        route(&mut s, B, &frame(mac(1), mac(30))).unwrap();
        for n in 0..10_000u32 {
            let src = [2, 0xaa, (n >> 16) as u8, (n >> 8) as u8, n as u8, 0];
            route(&mut s, C, &frame(mac(1), src)).unwrap();
        }
        let net = &s.networks[0];
        assert!(net.learned.len() <= LEARNED_PER_PORT + 1);
        assert_eq!(route(&mut s, A, &frame(mac(30), mac(1))), Ok(vec![B]));
    }

    #[test]
    fn runts_and_strangers_are_dropped() {
        let mut s = switch();
        assert_eq!(route(&mut s, A, &[0; 13]), Err(Dropped::Runt));
        let stranger = Port { vm: 9, device: 0 };
        assert_eq!(
            route(&mut s, stranger, &frame(mac(1), mac(9))),
            Err(Dropped::NoSuchPort)
        );
        assert_eq!(route(&mut s, A, &frame(mac(1), mac(1))), Ok(vec![]));
    }
}
