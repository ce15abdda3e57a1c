#!/usr/bin/env python3
"""Where a server's time went, from `perf record -g` of it (bench.sh's PERF_SECONDS):

    loadtests/perf-breakdown.py $OUT/jinke-500-1.perf [$OUT/janus-500-1.perf ...]

The kernel's share split by what the server asked of it: UDP sends (and, inside them, the
receivers' delivery: on loopback the kernel hands each datagram to the student's socket on the
sender's core, work a real network's receivers would do on their own machines), UDP receives,
waiting for work, the rest. The server's own share (user space) by Rust crate, or by library
for code outside the binary. Shares of the profile's samples, in percent.
"""

import re
import subprocess
import sys
from collections import defaultdict

# System calls by what they do. Each call by the kernel functions that may stand for it on a
# stack (some stacks lose the `__x64_sys_` wrapper, some inlined the next): the largest
# inclusive share among them is the call's, all the kernel work done on its behalf.
SENDS = ("sendmmsg", "sendmsg", "sendto")
RECEIVES = ("recvmmsg", "recvmsg", "recvfrom")
WAITS = ("poll", "ppoll", "epoll_wait", "epoll_pwait", "futex", "nanosleep", "clock_nanosleep")
# The softirq that delivers datagrams to their sockets: on the sender's core over loopback or a
# veth, nearly all of it inside the sends (1,208 of its 1,247 samples in a profile of Jinke at
# N=500: `perf script -i F | awk 'BEGIN{RS=""} /net_rx_action/ {n++; if (/sendmmsg/) s++}
# END{print n, s}'`); the rest runs where an interrupt happened to end.
DELIVERY = "net_rx_action"


def report(path, *args):
    """`perf report`'s rows (tab-separated fields, header lines dropped)."""
    run = subprocess.run(
        ["perf", "report", "-i", path, "--stdio", "-g", "none", "-t", "\t", *args],
        capture_output=True, text=True,
    )
    if run.returncode != 0:
        why = (run.stderr.strip().splitlines() or ["no message"])[-1]
        sys.exit(f"{path}: perf report failed ({run.returncode}): {why}")
    out = run.stdout
    return [line.split("\t") for line in out.splitlines() if line.strip() and not line.startswith("#")]


def percent(field):
    return float(field.strip().rstrip("%"))


def symbol(field):
    """'[k] name' or '[.] name' -> ('k' or '.', name)."""
    kind, _, name = field.strip().partition(" ")
    return kind.strip("[]"), name.strip()


def crate(name, dso, binary):
    """A Rust symbol's crate (`<str0m::x as y>::f` -> str0m); otherwise the library, or C code
    linked into the binary."""
    if dso != binary:
        return re.sub(r"\.so.*$", "", dso)
    m = re.match(r"<*([A-Za-z_][A-Za-z0-9_]*)::", name)
    if not m:
        return f"C in {binary}"
    return {"core": "std", "alloc": "std", "std": "std"}.get(m.group(1), m.group(1))


def breakdown(path):
    inclusive = {}
    for fields in report(path, "--children", "-F", "overhead_children,overhead,dso,sym"):
        if len(fields) == 4 and symbol(fields[3])[0] == "k":
            inclusive[symbol(fields[3])[1]] = percent(fields[0])
    kernel = 0.0
    user = defaultdict(float)
    rows = report(path, "--no-children", "-F", "overhead,sample,dso,sym")
    samples = sum(int(r[1]) for r in rows if len(r) == 4)
    rows = [(r[0], r[2].strip(), r[3]) for r in rows if len(r) == 4]
    if not rows:
        sys.exit(f"{path}: no samples (was the server running while perf recorded?)")
    # The binary is the executable (no `.so`, not `[vdso]`) with the most samples.
    shares = defaultdict(float)
    for share, dso, sym in rows:
        if symbol(sym)[0] != "k" and ".so" not in dso and not dso.startswith("["):
            shares[dso] += percent(share)
    binary = max(shares, key=shares.get, default="")
    for share, dso, sym in rows:
        kind, name = symbol(sym)
        if kind == "k":
            kernel += percent(share)
        else:
            user[crate(name, dso, binary)] += percent(share)

    def total(calls):
        return sum(
            max(inclusive.get(f, 0.0) for f in (f"__x64_sys_{c}", f"__sys_{c}", f"do_sys_{c}", f"do_{c}"))
            for c in calls
        )

    sends, receives, waits = total(SENDS), total(RECEIVES), total(WAITS)
    print(f"{path}: {samples} samples")
    print(f"  kernel                                   {kernel:6.1f}%")
    print(f"    sends (sendmmsg, sendmsg, sendto)      {sends:6.1f}%")
    print(f"      of which delivery to the receivers   {inclusive.get(DELIVERY, 0.0):6.1f}%")
    print(f"    receives (recvmmsg, recvmsg, recvfrom) {receives:6.1f}%")
    print(f"    waiting for work                       {waits:6.1f}%")
    print(f"    the rest                               {kernel - sends - receives - waits:6.1f}%")
    print(f"  user space                               {sum(user.values()):6.1f}%")
    for name, share in sorted(user.items(), key=lambda kv: -kv[1]):
        if share >= 0.5:
            print(f"    {name:<38} {share:6.1f}%")
    rest = sum(s for s in user.values() if s < 0.5)
    print(f"    {'(each under 0.5%)':<38} {rest:6.1f}%")


def main():
    if len(sys.argv) < 2:
        sys.exit(f"usage: {sys.argv[0]} PERF_DATA...")
    for path in sys.argv[1:]:
        breakdown(path)


if __name__ == "__main__":
    main()
