//! Kernel link statistics (`IFLA_STATS64`), as a link dump carries them: what the netdev
//! backend exports for every interface, and the cross-check of the other backends.

/// A (rx, tx) pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RxTx {
    /// Received.
    pub(crate) rx: u64,
    /// Transmitted.
    pub(crate) tx: u64,
}

/// The subset of `IFLA_STATS64` linkmeter exports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LinkStats {
    /// Received packets.
    pub(crate) rx_packets: u64,
    /// Transmitted packets.
    pub(crate) tx_packets: u64,
    /// Received bytes (vxlan/geneve: without the inner Ethernet header).
    pub(crate) rx_bytes: u64,
    /// Transmitted bytes.
    pub(crate) tx_bytes: u64,
    /// Receive errors.
    pub(crate) rx_errors: u64,
    /// Transmit errors.
    pub(crate) tx_errors: u64,
    /// Received packets dropped.
    pub(crate) rx_dropped: u64,
    /// Transmitted packets dropped.
    pub(crate) tx_dropped: u64,
}

impl LinkStats {
    /// Packets, received and transmitted.
    pub(crate) const fn packets(&self) -> RxTx {
        RxTx {
            rx: self.rx_packets,
            tx: self.tx_packets,
        }
    }

    /// Bytes, received and transmitted.
    pub(crate) const fn bytes(&self) -> RxTx {
        RxTx {
            rx: self.rx_bytes,
            tx: self.tx_bytes,
        }
    }

    /// Errors, received and transmitted.
    pub(crate) const fn errors(&self) -> RxTx {
        RxTx {
            rx: self.rx_errors,
            tx: self.tx_errors,
        }
    }

    /// Dropped packets, received and transmitted.
    pub(crate) const fn dropped(&self) -> RxTx {
        RxTx {
            rx: self.rx_dropped,
            tx: self.tx_dropped,
        }
    }
}
