"""A separate process that leases devices, for the leasing tests (run as a script).

    python lease_worker.py LOCK_DIR TOPOLOGY_FILE N [--hold-s S | --hold-stdin] [--rounds R]
                           [--timeout-s T] [--exclusive] [--quiet measure|start]

Prints one JSON line per event ({"event": "acquired"|"released"|"timeout", "devices", "t", "pid"}).
With --hold-stdin it holds the lease until its stdin is closed. With --quiet it holds the box's
quiet lock (as a measurement or an engine start-up) instead of devices.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from pytest_mgpu.hardware.leasing import Lease, Leaser, LeaseTimeout, QuietHold
from pytest_mgpu.hardware.snapshot import load_topology_file


def say(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, "pid": os.getpid(), "t": time.time(), **fields}), flush=True)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("lock_dir", type=Path)
    p.add_argument("topology", type=Path)
    p.add_argument("n", type=int)
    p.add_argument("--hold-s", type=float, default=0.0)
    p.add_argument("--hold-stdin", action="store_true")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--timeout-s", type=float, default=30.0)
    p.add_argument("--exclusive", action="store_true")
    p.add_argument("--quiet", choices=("measure", "start"))
    args = p.parse_args()
    leaser = Leaser(args.lock_dir, load_topology_file(args.topology))
    for _ in range(args.rounds):
        lease: Lease | QuietHold
        try:
            if args.quiet:
                lease = leaser.quiet(measuring=args.quiet == "measure", timeout_s=args.timeout_s,
                                     holder=f"lease_worker {os.getpid()}")
            else:
                lease = leaser.acquire(args.n, timeout_s=args.timeout_s, exclusive=args.exclusive,
                                       holder=f"lease_worker {os.getpid()}")
        except LeaseTimeout as exc:
            say("timeout", message=str(exc))
            return 3
        devices = list(lease.devices) if isinstance(lease, Lease) else []
        say("acquired", devices=devices)
        if args.hold_stdin:
            sys.stdin.read()
        else:
            time.sleep(args.hold_s)
        t = time.time()
        lease.release()
        say("released", devices=devices, t=t)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
