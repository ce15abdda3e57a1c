//! How the control plane and the other shards reach a shard: a channel, plus an eventfd that
//! wakes the shard while it sleeps in `poll(2)` on its socket. Without the wake, a packet handed
//! over by another shard (or a join) would wait up to the shard's longest sleep.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::sync::mpsc::{self, Receiver, Sender};

use crate::Command;

/// A shard's end: its messages and its wake-up.
pub(crate) struct Inbox {
    pub messages: Receiver<Command>,
    pub wake: Arc<Wake>,
}

/// Another party's way to a shard. Sending writes the eventfd only when the shard sleeps.
#[derive(Clone)]
pub(crate) struct Mailbox {
    tx: Sender<Command>,
    wake: Arc<Wake>,
}

/// A mailbox and the inbox it delivers to.
pub(crate) fn channel() -> io::Result<(Mailbox, Inbox)> {
    let (tx, messages) = mpsc::channel();
    let wake = Arc::new(Wake::new()?);
    Ok((
        Mailbox {
            tx,
            wake: wake.clone(),
        },
        Inbox { messages, wake },
    ))
}

impl Mailbox {
    /// Delivers `command`; fails only when the shard has stopped.
    pub fn send(&self, command: Command) -> Result<(), ()> {
        self.tx.send(command).map_err(|_| ())?;
        // Pairs with the fence in `Wake::sleep`: either the shard sees the message before it
        // sleeps, or we see it asleep and wake it.
        fence(Ordering::SeqCst);
        if self.wake.asleep.swap(false, Ordering::SeqCst) {
            self.wake.notify();
        }
        Ok(())
    }
}

/// An eventfd and whether its shard is (about to be) asleep.
pub(crate) struct Wake {
    fd: OwnedFd,
    asleep: AtomicBool,
}

impl Wake {
    fn new() -> io::Result<Wake> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new fd we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Wake {
            // SAFETY: fd was just created and is owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            asleep: AtomicBool::new(false),
        })
    }

    /// The shard is about to sleep: from now on, senders wake it. It must look at its channel
    /// once more after this and before sleeping.
    pub fn sleep(&self) {
        self.asleep.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// The shard is awake again: resets the eventfd.
    pub fn awake(&self) {
        self.asleep.store(false, Ordering::SeqCst);
        let mut value = 0u64;
        // SAFETY: reads 8 bytes into a u64 from our own non-blocking eventfd.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
    }

    fn notify(&self) {
        let one = 1u64;
        // SAFETY: writes 8 bytes from a u64 to our own eventfd.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

impl AsRawFd for Wake {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
