//! Settling what earlier daemons left, shutdown, and a kernel that stops answering.

use super::*;

#[tokio::test]
async fn shutdown_detaches_everything_and_later_scrapes_are_refused() {
    let (owner, mut c, shutdown) = owner();
    let clients = async {
        c.until_ready().await;
        let link = c.create_vxlan(9, "vx9");
        c.send(LinkEvent::New(link));
        // The event is applied before the scrape is answered (events come first).
        assert!(c.scrape().await.iter().any(|(n, _)| n == "vx9"));
        assert_eq!(c.ebpf.attaches(), 1);
        c.stop();
    };
    tokio::join!(owner.run(shutdown), clients);
    assert_eq!(c.ebpf.detaches(), 1);
    assert!(!c.ebpf.is_attached(9));
    assert!(c.scrapes.collect().await.is_none());
    // Nothing waits forever on a stopped owner.
    let pending = std::pin::pin!(c.scrapes.collect());
    assert!(matches!(futures_util::poll!(pending), Poll::Ready(None)));
}

#[tokio::test(start_paused = true)]
async fn what_earlier_daemons_left_is_settled_only_after_a_successful_dump() {
    let (owner, mut c, shutdown) = owner();
    c.create_vxlan(5, "vx5");
    // The first dump fails: settling then would free every adopted counter.
    c.links.fail_dumps(true);
    let clients = async {
        c.until_ready().await;
        assert!(c.ebpf.settles().is_empty());
        c.links.fail_dumps(false);
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(
            c.ebpf.settles(),
            vec![vec![5]],
            "once, with what is attached"
        );
        assert_eq!(
            c.ebpf.stale_checks(),
            vec![vec![1, 2, 5]],
            "stale tc filters are looked for on every link"
        );
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(c.ebpf.settles().len(), 1);
        c.stop();
    };
    tokio::join!(owner.run(shutdown), clients);
}

#[tokio::test(start_paused = true)]
async fn a_kernel_that_stops_answering_holds_up_neither_scrapes_nor_health_nor_shutdown() {
    let (owner, mut c, shutdown) = owner();
    let clients = async {
        c.until_ready().await;
        // From now on the kernel answers neither the resync's link reads nor any attach,
        // detach or check: a netlink reply that never comes.
        let _ = c.upkeep_gate.send(true);
        c.ebpf.stall(true);
        c.send(LinkEvent::Lost);
        let link = c.create_vxlan(9, "vx9");
        c.send(LinkEvent::New(link));
        tokio::time::sleep(Duration::from_secs(61)).await;
        for _ in 0..5 {
            let shown = c.scrape().await;
            assert_eq!(
                shown,
                [
                    ("lo".to_owned(), Backend::None),
                    ("eth0".to_owned(), Backend::Ethtool)
                ],
                "answered with what is routed; vx9 waits for its attach"
            );
        }
        assert!(c.healthy.load(Ordering::Acquire));
        c.stop();
    };
    // Shutting down waits for the kernel's detaches only so long.
    tokio::join!(owner.run(shutdown), clients);
    assert!(c.scrapes.collect().await.is_none());
}
