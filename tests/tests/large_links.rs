//! A link whose `RTM_NEWLINK` is over 64 KiB (496 altnames of 127 bytes, as many as the kernel allows) is read whole, in the
//! dump and in its events (issue 21, defect 6): before the fix every dump was "truncated to
//! 65536", the event socket resubscribed at every change, and the link's series vanished from
//! `/metrics` with `collect_errors_total` at 0 (it failed on `main`).

use std::time::Duration;

use integration_tests::{
    daemon::{Daemon, scrape},
    eventually, kernel_tests_enabled,
    netns::NetNs,
};

fn altname(i: usize) -> String {
    format!("alt{i:0>124}")
}

#[test]
fn a_link_message_over_64_kib_is_read_in_dumps_and_events() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = NetNs::new("biglink");
    ns.ip(&[
        "link", "add", "bigv", "type", "veth", "peer", "name", "bigp",
    ]);
    let batch: String = (0..496)
        .map(|i| format!("link property add dev bigv altname {}\n", altname(i)))
        .collect();
    let file = std::env::temp_dir().join(format!("lmt-altnames-{}", std::process::id()));
    std::fs::write(&file, batch).expect("batch file");
    ns.ip(&["-batch", file.to_str().expect("utf-8")]);
    let _ = std::fs::remove_file(&file);
    for dev in ["bigv", "bigp"] {
        ns.ip(&["link", "set", dev, "up"]);
    }
    let daemon = Daemon::start(&ns, &[]);
    let shown = |what: &str| {
        eventually(what, Duration::from_secs(10), || {
            let m = scrape(&ns);
            match m.value(
                "linkmeter_interface_packets_total",
                &[("interface", "bigv")],
            ) {
                Some(_) => Ok(m),
                None => Err(m.0),
            }
        })
    };
    let m = shown("bigv measured after the first dump");
    assert_eq!(
        m.value("linkmeter_collect_errors_total", &[("backend", "netdev")]),
        Some(0.0)
    );
    // Events of over 64 KiB: an altname taken away and given back, a new MTU.
    for verb in ["del", "add"] {
        ns.ip(&[
            "link",
            "property",
            verb,
            "dev",
            "bigv",
            "altname",
            &altname(7),
        ]);
    }
    ns.ip(&["link", "set", "bigv", "mtu", "1400"]);
    std::thread::sleep(Duration::from_millis(500));
    let m = shown("bigv still measured after its events");
    assert_eq!(
        m.value(
            "linkmeter_netlink_resyncs_total",
            &[("reason", "resubscribed")]
        ),
        Some(0.0),
        "{}",
        daemon.log_text()
    );
    assert_eq!(
        m.value("linkmeter_collect_errors_total", &[("backend", "netdev")]),
        Some(0.0)
    );
    assert!(
        !daemon.log_text().contains("truncated"),
        "{}",
        daemon.log_text()
    );
    assert!(daemon.stop().success());
}
