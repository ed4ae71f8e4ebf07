//! Sending crafted traffic: whole frames out of an interface (`AF_PACKET`), and IPv4 packets
//! with a header of our own through the routing table (`IPPROTO_RAW`), from inside a test
//! namespace.

use std::{
    io,
    net::Ipv4Addr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use nix::libc;

use crate::{kernel::ifindex, netns::NetNs};

fn socket(domain: libc::c_int, kind: libc::c_int, protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn sent(rc: isize, len: usize) -> io::Result<()> {
    match usize::try_from(rc) {
        Ok(n) if n == len => Ok(()),
        Ok(n) => Err(io::Error::other(format!("sent {n} of {len} bytes"))),
        Err(_) => Err(io::Error::last_os_error()),
    }
}

/// Sends each of `frames` (complete Ethernet frames) out of `interface` of `ns`, as a packet
/// socket does: the frames pass the interface's TC egress hook exactly as given.
///
/// # Panics
///
/// When the socket cannot be opened or a frame is not sent whole.
pub fn send_frames(ns: &NetNs, interface: &str, frames: &[Vec<u8>]) {
    let index = i32::try_from(ifindex(ns, interface)).expect("ifindex");
    let fd = ns
        .within(|| socket(libc::AF_PACKET, libc::SOCK_RAW, 0))
        .expect("packet socket");
    for frame in frames {
        // SAFETY: an all-zero `sockaddr_ll` is valid; the fields we need are set below.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_ifindex = index;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: `frame` and `to` are live for the call and their sizes are passed with them.
        let rc = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                std::ptr::from_ref(&to).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        sent(rc, frame.len()).expect("send frame");
    }
}

/// Sends each of `packets` (complete IPv4 packets, header included) from `ns` to their
/// destination through the routing table; the kernel fills in nothing but the checksum and
/// the total length, which the packets carry already.
///
/// # Panics
///
/// When the socket cannot be opened or a packet is not sent whole.
pub fn send_ipv4(ns: &NetNs, packets: &[Vec<u8>]) {
    let fd = ns
        .within(|| socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW))
        .expect("raw socket");
    for packet in packets {
        let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
        // SAFETY: an all-zero `sockaddr_in` is valid; the fields we need are set below.
        let mut to: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        to.sin_family = libc::AF_INET as u16;
        to.sin_addr.s_addr = u32::from_ne_bytes(dst.octets());
        // SAFETY: `packet` and `to` are live for the call and their sizes are passed with them.
        let rc = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                std::ptr::from_ref(&to).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        sent(rc, packet.len()).expect("send packet");
    }
}

/// Creates the layer-3 tun device `name` in `ns` (no Ethernet header, `ARPHRD_NONE`), up,
/// with `address` and IPv6 disabled, and returns its queue: IP packets written to it arrive on the device (its
/// TC ingress hook), packets the namespace routes out of the device can be read from it.
///
/// # Panics
///
/// When the device cannot be created or opened.
pub fn tun(ns: &NetNs, name: &str, address: &str) -> std::fs::File {
    ns.ip(&["tuntap", "add", "dev", name, "mode", "tun"]);
    // No IPv6 on it: nothing but the test's packets (no router solicitations, no MLD).
    ns.exec(&[
        "sh",
        "-c",
        &format!("echo 1 > /proc/sys/net/ipv6/conf/{name}/disable_ipv6"),
    ]);
    ns.ip(&["addr", "add", address, "dev", name]);
    ns.ip(&["link", "set", name, "up"]);
    // The queue binds to the device of that name in the namespace it is opened in.
    let file = ns
        .within(|| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/net/tun")
        })
        .expect("open /dev/net/tun");
    // SAFETY: an all-zero `ifreq` is valid; the name and the flags are set below.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *slot = byte as libc::c_char;
    }
    request.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes the `ifreq` passed, which lives across the call.
    let rc = ns.within(|| unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            libc::TUNSETIFF,
            std::ptr::from_mut(&mut request),
        )
    });
    assert_eq!(rc, 0, "TUNSETIFF {name}: {}", io::Error::last_os_error());
    file
}
