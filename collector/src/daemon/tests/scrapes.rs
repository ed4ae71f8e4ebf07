//! Scrapes: what a scrape may and may not do, and coalescing.

use super::*;

#[tokio::test]
async fn a_scrape_neither_probes_nor_attaches_a_new_link_its_event_does() {
    let (owner, mut c, shutdown) = owner();
    let clients = async {
        c.until_ready().await;
        let (probes, attaches) = (c.ethtool.probes(), c.ebpf.attaches());
        let link = c.create_vxlan(5, "vx5");
        // Link events paused: scrapes show what is routed, and route nothing themselves.
        for _ in 0..3 {
            let shown = c.scrape().await;
            assert!(!shown.iter().any(|(n, _)| n == "vx5"), "{shown:?}");
        }
        assert_eq!((c.ethtool.probes(), c.ebpf.attaches()), (probes, attaches));
        // The link event routes and attaches it.
        c.send(LinkEvent::New(link));
        let shown = c.scrape().await;
        assert!(
            shown.contains(&("vx5".to_owned(), Backend::Ebpf)),
            "{shown:?}"
        );
        assert_eq!(
            (c.ethtool.probes(), c.ebpf.attaches()),
            (probes + 1, attaches + 1)
        );
        c.stop();
    };
    tokio::join!(owner.run(shutdown), clients);
}

#[tokio::test]
async fn concurrent_scrapes_are_answered_by_one_collection() {
    let (owner, mut c, shutdown) = owner();
    let clients = async {
        c.until_ready().await;
        let dumps = c.links.dumps();
        let scrapes: Vec<_> = (0..20).map(|_| c.scrapes.collect()).collect();
        let answers = futures_util::future::join_all(scrapes).await;
        assert_eq!(c.links.dumps() - dumps, 1, "one kernel dump for 20 scrapes");
        let first = answers[0].as_ref().expect("answered");
        for answer in &answers {
            assert!(Arc::ptr_eq(first, answer.as_ref().expect("answered")));
        }
        // The next scrape is a new collection.
        c.scrape().await;
        assert_eq!(c.links.dumps() - dumps, 2);
        c.stop();
    };
    tokio::join!(owner.run(shutdown), clients);
}

#[tokio::test]
async fn scrapes_that_arrive_while_a_collection_runs_are_answered_by_it() {
    let (owner, mut c, shutdown) = owner();
    let clients = async {
        c.until_ready().await;
        {
            let release = c.links.hold_dumps();
            let dumps = c.links.dumps();
            let mut first = std::pin::pin!(c.scrapes.collect());
            // The first scrape starts a collection, whose kernel dump is now in flight.
            while c.links.dumps() == dumps {
                assert!(futures_util::poll!(first.as_mut()).is_pending());
                tokio::task::yield_now().await;
            }
            let later: Vec<_> = (0..5).map(|_| c.scrapes.collect()).collect();
            let later = futures_util::future::join_all(later);
            let _ = release.send(false);
            let (first, later) = tokio::join!(first, later);
            let first = first.expect("answered");
            for answer in later {
                assert!(Arc::ptr_eq(&first, &answer.expect("answered")));
            }
            assert_eq!(c.links.dumps() - dumps, 1);
        }
        c.stop();
    };
    tokio::join!(owner.run(shutdown), clients);
}

#[tokio::test]
async fn a_deleted_link_leaves_the_next_scrape() {
    let (owner, mut c, shutdown) = owner();
    let clients = async {
        c.until_ready().await;
        let link = c.create_vxlan(7, "vx7");
        c.send(LinkEvent::New(link));
        assert!(c.scrape().await.iter().any(|(n, _)| n == "vx7"));
        c.links.remove(7);
        c.send(LinkEvent::Deleted { ifindex: 7 });
        assert!(!c.scrape().await.iter().any(|(n, _)| n == "vx7"));
        assert_eq!(c.ebpf.forgotten(), vec![7]);
        c.stop();
    };
    tokio::join!(owner.run(shutdown), clients);
}
