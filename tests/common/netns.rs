//! Two network namespaces joined by a veth pair, for tests that impair a link: the kernel's
//! traffic control (`tc`) acts on the veth, so a test sees what a real narrow link does to
//! real sockets. Each side is a thread of this test process moved into its own namespace
//! (`unshare(CLONE_NEWNET)` acts on the calling thread only), so the rest of the test binary
//! keeps its network. Every thread, runtime worker and socket a side creates lives in that
//! side's namespace; both namespaces and the veth vanish when the two threads end.
//!
//! Needs root (as the browser tests and the bench do) and `ip`/`tc` from iproute2.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::mpsc;

/// Side A's address on the veth.
pub const A_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1));
/// Side B's address on the veth.
pub const B_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2));
const A_DEV: &str = "jk-a";
const B_DEV: &str = "jk-b";

/// Runs a command in the calling thread's namespace; panics with its output when it fails.
pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e} (iproute2 installed?)"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Moves the calling thread into a new network namespace with its loopback up.
fn enter_new_namespace() {
    // SAFETY: unshare takes no pointers; it only changes this thread's namespaces.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "unshare(CLONE_NEWNET) failed ({}): this test needs root",
        std::io::Error::last_os_error()
    );
    sh(&["ip", "link", "set", "lo", "up"]);
}

/// Runs `a` and `b` at once, each on a thread in its own namespace; A has [`A_IP`] and B
/// [`B_IP`] on the two ends of a veth pair. `shape_a` runs in A before either starts, with
/// the name of A's end: a `tc` qdisc there shapes what A sends to B.
pub fn run_linked<RA: Send, RB: Send>(
    shape_a: impl FnOnce(&str) + Send,
    a: impl FnOnce() -> RA + Send,
    b: impl FnOnce() -> RB + Send,
) -> (RA, RB) {
    let (tid_tx, tid_rx) = mpsc::channel::<i32>();
    let (moved_tx, moved_rx) = mpsc::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let side_b = scope.spawn(move || {
            enter_new_namespace();
            // SAFETY: gettid has no arguments and cannot fail.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            moved_rx.recv().expect("side A set up the link");
            sh(&["ip", "addr", "add", &format!("{B_IP}/24"), "dev", B_DEV]);
            sh(&["ip", "link", "set", B_DEV, "up"]);
            ready_tx.send(()).unwrap();
            b()
        });
        let side_a = scope.spawn(move || {
            enter_new_namespace();
            let b_tid = tid_rx.recv().expect("side B started").to_string();
            // A thread id names its namespace as a process id does.
            sh(&[
                "ip", "link", "add", A_DEV, "type", "veth", "peer", "name", B_DEV, "netns", &b_tid,
            ]);
            sh(&["ip", "addr", "add", &format!("{A_IP}/24"), "dev", A_DEV]);
            sh(&["ip", "link", "set", A_DEV, "up"]);
            shape_a(A_DEV);
            moved_tx.send(()).unwrap();
            ready_rx.recv().expect("side B set up its end");
            a()
        });
        let a = side_a
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
        let b = side_b
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
        (a, b)
    })
}
