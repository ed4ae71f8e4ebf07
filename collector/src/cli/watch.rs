//! `linkmeter watch`: attach the eBPF counters to interfaces and print their counts next to the
//! kernel's own link statistics, once per interval, until Ctrl-C (or `--count` rounds).

use std::{fs, path::Path, time::Duration};

use anyhow::Context as _;
use tokio::time::MissedTickBehavior;

use crate::ebpf::{AttachMode, EbpfCounters, InterfaceAttachment, LoadOptions};

/// Examples shown by `linkmeter watch --help`.
pub const EXAMPLES: &str = "Examples:
  linkmeter watch -i cilium_vxlan
  linkmeter watch --attach-mode tc --interval 5 --count 3";

/// Options of `linkmeter watch`.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    /// Interface to count (repeatable). Default: every interface except `lo`.
    #[arg(short, long = "interface", value_name = "NAME")]
    pub interfaces: Vec<String>,
    /// How to attach: `auto` (TCX on Linux >= 6.6, legacy tc otherwise), `tcx` or `tc`.
    #[arg(long, value_enum, default_value_t = AttachMode::Auto, env = "LINKMETER_ATTACH_MODE")]
    pub attach_mode: AttachMode,
    /// Seconds between two printed readings.
    #[arg(long, default_value_t = 1.0, value_parser = crate::cli::seconds_in(0.05..=3600.0))]
    pub interval: f64,
    /// Stop after this many readings (default: until Ctrl-C).
    #[arg(long)]
    pub count: Option<u64>,
    /// Capacity of the counter map, in interfaces.
    #[arg(long, default_value_t = 1024, env = "LINKMETER_MAX_INTERFACES")]
    pub max_interfaces: u32,
}

/// Runs `linkmeter watch` until Ctrl-C or `--count` readings, then detaches cleanly.
///
/// # Errors
///
/// Loading the eBPF object fails, or no interface could be attached.
pub async fn run(args: WatchArgs) -> anyhow::Result<()> {
    let mut counters = EbpfCounters::load(&LoadOptions {
        max_interfaces: args.max_interfaces,
    })
    .context("cannot load the eBPF counters (run as root, or with CAP_BPF + CAP_NET_ADMIN)")?;

    let names = if args.interfaces.is_empty() {
        host_interfaces().context("listing /sys/class/net")?
    } else {
        args.interfaces.clone()
    };
    let mut attached: Vec<InterfaceAttachment> = Vec::new();
    for name in &names {
        match counters.attach(name, args.attach_mode) {
            Ok(a) => attached.push(a),
            Err(err) => tracing::warn!(error = %err, "not counting {name}"),
        }
    }
    anyhow::ensure!(!attached.is_empty(), "no interface could be attached");

    let mut tick = tokio::time::interval(Duration::from_secs_f64(args.interval));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick.tick().await;
    let mut printed = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        counters.flush_logs();
        print_table(&counters, &attached);
        printed += 1;
        if args.count.is_some_and(|n| printed >= n) {
            break;
        }
    }
    for a in attached {
        let name = a.interface().to_owned();
        if let Err(err) = a.detach() {
            tracing::warn!(error = %err, "detaching from {name}");
        }
    }
    Ok(())
}

fn print_table(counters: &EbpfCounters, attached: &[InterfaceAttachment]) {
    println!(
        "{:<16} {:>4} {:>12} {:>14} {:>12} {:>14} {:>12} {:>12}",
        "INTERFACE",
        "MODE",
        "RX_PKTS",
        "RX_BYTES",
        "TX_PKTS",
        "TX_BYTES",
        "KERN_RX_PKTS",
        "KERN_TX_PKTS"
    );
    for a in attached {
        let stat =
            |name: &str| kernel_stat(a.interface(), name).map_or("-".into(), |v| v.to_string());
        match counters.read(a.ifindex()) {
            Ok(c) => println!(
                "{:<16} {:>4} {:>12} {:>14} {:>12} {:>14} {:>12} {:>12}",
                a.interface(),
                a.mode().to_string(),
                c.rx.packets,
                c.rx.bytes,
                c.tx.packets,
                c.tx.bytes,
                stat("rx_packets"),
                stat("tx_packets"),
            ),
            Err(err) => println!("{:<16} error: {err}", a.interface()),
        }
    }
    if let Ok(o) = counters.overflow()
        && o.packets > 0
    {
        println!(
            "overflow: {} packets not counted per interface (raise --max-interfaces)",
            o.packets
        );
    }
    println!();
}

fn host_interfaces() -> std::io::Result<Vec<String>> {
    let mut names: Vec<String> = fs::read_dir("/sys/class/net")?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != "lo")
        .collect();
    names.sort();
    Ok(names)
}

fn kernel_stat(interface: &str, stat: &str) -> Option<u64> {
    let path = Path::new("/sys/class/net")
        .join(interface)
        .join("statistics")
        .join(stat);
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use crate::cli::seconds_in;

    #[test]
    fn interval_must_be_a_sane_number_of_seconds() {
        let parse_interval = seconds_in(0.05..=3600.0);
        assert_eq!(parse_interval("1.5"), Ok(1.5));
        for bad in ["0", "-1", "NaN", "inf", "1e9", "abc", ""] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }
}
