//! `linkmeter watch`: route the chosen interfaces to the eBPF counter (discovered over netlink,
//! as the daemon does), and show their traffic live next to the kernel's own link statistics:
//! rates over the last interval and totals since the start, the protocol mix, TCP flags and
//! overlay peers, redrawn in place on a terminal, until Ctrl-C (or `--count` rounds).

mod drops;
mod view;

use std::{io::IsTerminal as _, time::Duration};

use tokio::time::MissedTickBehavior;

use self::view::View;
use crate::{
    Report,
    backend::ebpf::{AttachMode, Counting},
    cli::{Failure, once},
    config::{Config, DEFAULT_MAX_INTERFACES, FileConfig},
    node::Measure,
};

/// Examples shown by `linkmeter watch --help`.
pub(crate) const EXAMPLES: &str = "Examples:
  linkmeter watch -i cilium_vxlan
  linkmeter watch --attach-mode tc --interval 5 --count 3";

/// Options of `linkmeter watch`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct WatchArgs {
    /// Interface to count (repeatable). Default: every interface except `lo`.
    #[arg(short, long = "interface", value_name = "NAME")]
    interfaces: Vec<String>,
    /// How to attach: `auto` (TCX on Linux >= 6.6, legacy tc otherwise), `tcx` or `tc`.
    #[arg(long, value_enum, default_value_t = AttachMode::Auto, env = "LINKMETER_ATTACH_MODE")]
    attach_mode: AttachMode,
    /// Seconds between two printed readings.
    #[arg(long, default_value_t = 1.0, value_parser = crate::cli::seconds_in(0.05..=3600.0))]
    interval: f64,
    /// Stop after this many readings (default: until Ctrl-C).
    #[arg(long)]
    count: Option<u64>,
    /// Capacity of the counter map, in interfaces.
    #[arg(long, default_value_t = DEFAULT_MAX_INTERFACES, env = "LINKMETER_MAX_INTERFACES")]
    max_interfaces: u32,
}

impl WatchArgs {
    /// The routing of `watch`: the named interfaces (or all but the default excludes, i.e.
    /// `lo`), every one to eBPF without probing.
    fn config(&self) -> Result<Config, Failure> {
        let (include, exclude) = if self.interfaces.is_empty() {
            (None, None)
        } else {
            let exact = |name: &String| format!("/^{}$/", regex::escape(name));
            (
                Some(self.interfaces.iter().map(exact).collect()),
                Some(Vec::new()),
            )
        };
        let mut config = Config::build(FileConfig {
            include,
            exclude,
            overrides: Some(vec!["*=ebpf".to_owned()]),
            max_interfaces: Some(self.max_interfaces),
            ..FileConfig::default()
        })
        .map_err(|e| Failure::config(&e))?;
        config.node.attach_mode = self.attach_mode;
        Ok(config)
    }
}

/// Runs `linkmeter watch` until Ctrl-C or `--count` readings, then detaches cleanly.
///
/// # Errors
///
/// Loading the eBPF object fails, or no interface could be attached.
pub(crate) async fn run(args: WatchArgs) -> Result<(), Failure> {
    let config = args.config()?;
    let mut interrupted = std::pin::pin!(once::interruption());
    let _ = futures_util::poll!(interrupted.as_mut());
    let counters = Counting::load(&once::command_options(&config)).map_err(|e| {
        Failure::runtime(format!(
            "cannot load the eBPF counters (run as root, or with CAP_BPF + CAP_NET_ADMIN): {}",
            Report(&e)
        ))
    })?;
    // Loaded before attaching: the first reading, which the view counts from, follows the
    // attach at once.
    let drops = crate::backend::drops::load_or_explain(config.drop_reasons);
    let mut node = once::route(&config, Some(counters))
        .await?
        .with_drops(drops);
    for name in &args.interfaces {
        if !node.interfaces().any(|i| &i.link.name == name) {
            tracing::warn!("not counting {name}: no such interface");
        }
    }
    if !node
        .interfaces()
        .any(|i| matches!(i.measure, Measure::Ebpf(_)))
    {
        once::shut(&mut node).await;
        return Err(Failure::runtime("no interface could be attached"));
    }

    let mut view = View::new(&node.collect().await, std::io::stdout().is_terminal());
    let mut tick = tokio::time::interval(Duration::from_secs_f64(args.interval));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick.tick().await;
    let mut printed = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut interrupted => break,
        }
        print!("{}", view.render(&node.collect().await));
        printed += 1;
        if args.count.is_some_and(|n| printed >= n) {
            break;
        }
    }
    once::shut(&mut node).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::seconds_in;

    #[test]
    fn interval_must_be_a_sane_number_of_seconds() {
        let parse_interval = seconds_in(0.05..=3600.0);
        assert_eq!(parse_interval("1.5"), Ok(1.5));
        for bad in ["0", "-1", "NaN", "inf", "1e9", "abc", ""] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn named_interfaces_are_matched_exactly_and_routed_to_ebpf() {
        let args = WatchArgs {
            interfaces: vec!["eth*".into(), "lo".into()],
            attach_mode: AttachMode::Tc,
            interval: 1.0,
            count: None,
            max_interfaces: 8,
        };
        let config = args.config().expect("valid");
        let p = &config.node.policy;
        assert!(p.include.iter().any(|i| i.matches("eth*", None)));
        assert!(!p.include.iter().any(|i| i.matches("eth0", None)));
        assert!(p.include.iter().any(|i| i.matches("lo", None)) && p.exclude.is_empty());
        assert!(p.overrides[0].0.matches("anything", Some("vxlan")));
        assert_eq!(config.node.attach_mode, AttachMode::Tc);
        assert_eq!(config.ebpf.capacity.interfaces(), 8);
    }
}
