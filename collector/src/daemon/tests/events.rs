//! Link events, resyncs and the link-event subscription.

use super::*;

#[tokio::test(start_paused = true)]
async fn the_next_resync_routes_a_link_whose_event_was_lost() {
    let (owner, mut c, shutdown) = owner();
    let clients = async {
        c.until_ready().await;
        c.create_vxlan(6, "vx6");
        assert!(!c.scrape().await.iter().any(|(n, _)| n == "vx6"));
        assert_eq!(c.ebpf.attaches(), 0);
        // The resync tick (every 60 s) fires while the clients sleep.
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert!(
            c.scrape()
                .await
                .contains(&("vx6".to_owned(), Backend::Ebpf))
        );
        assert_eq!(c.ebpf.attaches(), 1);
        c.stop();
    };
    tokio::join!(owner.run(shutdown), clients);
}

#[tokio::test]
async fn lost_events_trigger_an_immediate_resync_that_routes_what_they_said() {
    let (owner, mut c, shutdown) = owner();
    let clients = async {
        c.until_ready().await;
        let dumps = c.links.dumps();
        // vx8 appeared, but its event was among those the kernel dropped.
        c.create_vxlan(8, "vx8");
        c.send(LinkEvent::Lost);
        // The resync's listing answers while scrapes are served: vx8 shows up as soon as it
        // has been routed.
        let mut scrapes = 0;
        let snapshot = loop {
            let exposition = c.scrapes.collect().await.expect("owner answers");
            scrapes += 1;
            if exposition
                .snapshot()
                .interfaces
                .iter()
                .any(|i| i.name == "vx8")
            {
                break exposition.snapshot().clone();
            }
            assert!(scrapes < 100, "vx8 never routed");
        };
        assert_eq!(
            snapshot.netlink_resyncs,
            vec![("events_lost", 1), ("resubscribed", 0)]
        );
        // One dump for the resync, one for each scrape's kernel counters.
        assert_eq!(c.links.dumps(), dumps + 1 + scrapes);
        c.stop();
    };
    tokio::join!(owner.run(shutdown), clients);
}

#[tokio::test(start_paused = true)]
async fn a_lost_subscription_is_opened_again_unhealthy_meanwhile_and_resynced() {
    let (owner, mut c, shutdown) = owner();
    let clients = async {
        c.until_ready().await;
        c.end_subscription(true);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            !c.healthy.load(Ordering::Acquire),
            "unhealthy while it cannot subscribe"
        );
        c.create_vxlan(8, "vx8");
        c.subscription.state().failing = false;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(c.healthy.load(Ordering::Acquire));
        assert_eq!(c.subscription.state().opened, 2);
        // What changed while no events came is routed by the resync after subscribing.
        let exposition = c.scrapes.collect().await.expect("owner answers");
        let snapshot = exposition.snapshot();
        assert!(snapshot.interfaces.iter().any(|i| i.name == "vx8"));
        assert_eq!(
            snapshot.netlink_resyncs,
            vec![("events_lost", 0), ("resubscribed", 1)]
        );
        // And the new subscription delivers events.
        let link = c.create_vxlan(9, "vx9");
        c.send(LinkEvent::New(link));
        assert!(c.scrape().await.iter().any(|(n, _)| n == "vx9"));
        c.stop();
    };
    tokio::join!(owner.run(shutdown), clients);
}

#[tokio::test(start_paused = true)]
async fn resubscribing_is_not_held_off_by_steady_scraping() {
    let (owner, mut c, shutdown) = owner();
    let clients = async {
        c.until_ready().await;
        c.end_subscription(true);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        c.subscription.state().failing = false;
        // A scrape every 100 ms, for 3 s: the 1 s resubscription timer still fires.
        for _ in 0..30 {
            c.scrape().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(c.healthy.load(Ordering::Acquire));
        assert_eq!(c.subscription.state().opened, 2);
        c.stop();
    };
    tokio::join!(owner.run(shutdown), clients);
}

/// Link events are lost while a resync's listing is in flight, and that listing's dump was made
/// before the changes whose events were lost: another resync follows it at once, not at the
/// next periodic one.
#[tokio::test(start_paused = true)]
async fn events_lost_while_a_listing_runs_are_repaired_by_a_resync_after_the_loss() {
    let (owner, mut c, shutdown) = owner();
    let clients = async {
        c.until_ready().await;
        let dumps = c.links.dumps();
        // The periodic resync's link reads are slow to answer: its dump is made (without vx8)
        // and held.
        let _ = c.upkeep_gate.send(true);
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(
            c.links.dumps(),
            dumps + 1,
            "the periodic listing's dump was made"
        );
        // vx8 appears after that dump; its event is among those the kernel dropped.
        c.create_vxlan(8, "vx8");
        c.send(LinkEvent::Lost);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let _ = c.upkeep_gate.send(false);
        // Well before the next periodic resync (at 120 s).
        tokio::time::sleep(Duration::from_secs(10)).await;
        let shown = c.scrape().await;
        assert!(
            shown.iter().any(|(n, _)| n == "vx8"),
            "vx8, whose event was lost, is still not routed 10 s after the loss: {shown:?} \
             (dumps made: {})",
            c.links.dumps() - dumps
        );
        c.stop();
    };
    tokio::join!(owner.run(shutdown), clients);
}

/// The same with a lost subscription, opened again while a listing whose dump predates the gap
/// is in flight.
#[tokio::test(start_paused = true)]
async fn a_resubscription_while_a_listing_runs_is_followed_by_a_resync() {
    let (owner, mut c, shutdown) = owner();
    let clients = async {
        c.until_ready().await;
        let _ = c.upkeep_gate.send(true);
        tokio::time::sleep(Duration::from_secs(61)).await;
        // The subscription is lost; vx8 appears meanwhile; the subscription is opened again.
        c.end_subscription(false);
        c.create_vxlan(8, "vx8");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(c.subscription.state().opened, 2, "subscribed again");
        let _ = c.upkeep_gate.send(false);
        tokio::time::sleep(Duration::from_secs(10)).await;
        let shown = c.scrape().await;
        assert!(
            shown.iter().any(|(n, _)| n == "vx8"),
            "vx8, created while no events came, is not routed after resubscribing: {shown:?}"
        );
        c.stop();
    };
    tokio::join!(owner.run(shutdown), clients);
}
