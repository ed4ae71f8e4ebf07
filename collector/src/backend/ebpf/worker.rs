//! The hook worker: one thread that owns the loaded programs and every attachment, and does
//! everything that may wait on the kernel for them — attaching, detaching, checking that an
//! attachment is still in place, removing stale legacy filters. Legacy tc does all of this over
//! rtnetlink (a request, then its answer); a kernel that is slow to answer, or a lock held for
//! seconds elsewhere, then holds up this thread and never the daemon's owner, which keeps
//! answering scrapes and `/healthz`.
//!
//! Requests are carried out one at a time, in the order they were made: a detach asked for
//! while its attach is still queued finds the attachment made. Each answers through a
//! oneshot channel, awaited by the owner like any other I/O. The thread is spawned from the
//! thread that loads the programs and so lives in its network namespace.

use std::{collections::HashMap, io, sync::mpsc, thread};

use tokio::sync::oneshot;
use tracing::debug;

use super::{
    attach::{Checked, InterfaceAttachment},
    error::AttachError,
    hooks::{AttachMode, AttachedMode, Placement},
    programs::Programs,
};

/// Which attachment: numbered by whoever asks for it, before it is made, so that it can be
/// detached or checked whatever became of its attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct AttachmentId(pub(crate) u64);

/// What a check of attachments found: those someone removed, and where the others stand on
/// each hook (ingress, egress), after any move back to the head.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CheckReport {
    /// Attachments whose program no longer runs on a hook.
    pub(crate) removed: Vec<AttachmentId>,
    /// The others' places.
    pub(crate) placed: Vec<(AttachmentId, [Placement; 2])>,
}

/// A request to the worker, with where to answer it.
enum Request {
    Attach {
        id: AttachmentId,
        ifindex: u32,
        name: String,
        mode: AttachMode,
        reply: oneshot::Sender<Result<AttachedMode, AttachError>>,
    },
    Detach {
        id: AttachmentId,
        reply: oneshot::Sender<Result<(), AttachError>>,
    },
    Check {
        ids: Vec<AttachmentId>,
        reply: oneshot::Sender<CheckReport>,
    },
    RemoveStale {
        ifindexes: Vec<u32>,
        reply: oneshot::Sender<usize>,
    },
    Release {
        reply: oneshot::Sender<()>,
    },
}

/// The handle on the worker thread. Dropping it lets the worker go: it releases every
/// attachment (detached, or left counting when pinned) and ends.
#[derive(Debug)]
pub(crate) struct HookWorker {
    requests: mpsc::Sender<Request>,
}

impl HookWorker {
    /// Starts the worker with `programs`, in the calling thread's network namespace.
    ///
    /// # Errors
    ///
    /// The thread cannot be spawned.
    pub(crate) fn spawn(programs: Programs) -> io::Result<Self> {
        let (requests, inbox) = mpsc::channel();
        thread::Builder::new()
            .name("linkmeter-hooks".into())
            .spawn(move || serve(programs, &inbox))?;
        Ok(Self { requests })
    }

    /// Sends the request `make` builds around its reply channel; the receiver of the answer.
    /// A worker that is gone drops the reply channel, which the receiver reports.
    fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> oneshot::Receiver<T> {
        let (reply, answer) = oneshot::channel();
        let _gone = self.requests.send(make(reply));
        answer
    }

    /// Attaches the programs to both hooks of `ifindex` as `id`; answers the mode used.
    pub(crate) fn attach(
        &self,
        id: AttachmentId,
        ifindex: u32,
        name: &str,
        mode: AttachMode,
    ) -> oneshot::Receiver<Result<AttachedMode, AttachError>> {
        let name = name.to_owned();
        self.ask(|reply| Request::Attach {
            id,
            ifindex,
            name,
            mode,
            reply,
        })
    }

    /// Detaches `id` (pinned or not); an attachment that was never made, or is gone, counts
    /// as detached.
    pub(crate) fn detach(&self, id: AttachmentId) -> oneshot::Receiver<Result<(), AttachError>> {
        self.ask(|reply| Request::Detach { id, reply })
    }

    /// Which of `ids` no longer run our programs (someone removed them), and where the others
    /// stand (moved back to the head where another program was placed before them); unknown
    /// ids are left out.
    pub(crate) fn check(&self, ids: Vec<AttachmentId>) -> oneshot::Receiver<CheckReport> {
        self.ask(|reply| Request::Check { ids, reply })
    }

    /// Removes from `ifindexes` the legacy filters earlier processes of our role left; answers
    /// how many.
    pub(crate) fn remove_stale_filters(&self, ifindexes: Vec<u32>) -> oneshot::Receiver<usize> {
        self.ask(|reply| Request::RemoveStale { ifindexes, reply })
    }

    /// Lets go of every attachment — detached, or left counting in the kernel when pinned —
    /// and stops; answers when done.
    pub(crate) fn release(&self) -> oneshot::Receiver<()> {
        self.ask(|reply| Request::Release { reply })
    }
}

/// The worker's loop: requests in order until released or its handle is dropped.
fn serve(mut programs: Programs, inbox: &mpsc::Receiver<Request>) {
    let mut attachments: HashMap<AttachmentId, InterfaceAttachment> = HashMap::new();
    while let Ok(request) = inbox.recv() {
        match request {
            Request::Attach {
                id,
                ifindex,
                name,
                mode,
                reply,
            } => {
                let answer = programs.attach(ifindex, &name, mode).map(|attachment| {
                    let mode = attachment.mode();
                    attachments.insert(id, attachment);
                    mode
                });
                let _gone = reply.send(answer);
            }
            Request::Detach { id, reply } => {
                let answer = attachments
                    .remove(&id)
                    .map_or(Ok(()), InterfaceAttachment::detach);
                let _gone = reply.send(answer);
            }
            Request::Check { ids, reply } => {
                let mut report = CheckReport::default();
                for id in ids {
                    let Some(attachment) = attachments.get_mut(&id) else {
                        continue;
                    };
                    match programs.check(attachment) {
                        Checked::Removed => report.removed.push(id),
                        Checked::Placed(placed) => report.placed.push((id, placed)),
                    }
                }
                let _gone = reply.send(report);
            }
            Request::RemoveStale { ifindexes, reply } => {
                let mut removed = 0;
                for ifindex in ifindexes {
                    match programs.remove_stale_filters(ifindex) {
                        Ok(n) => removed += n,
                        Err(err) => debug!(ifindex, error = %err,
                            "cannot check the interface for stale tc filters"),
                    }
                }
                let _gone = reply.send(removed);
            }
            Request::Release { reply } => {
                // Dropping an attachment detaches it, unless it is pinned.
                drop(std::mem::take(&mut attachments));
                let _gone = reply.send(());
                return;
            }
        }
    }
}
