"""The worker process of ``nnxp bench --processes`` (:mod:`.isolated`): times one contender on request.

Run as ``python -m nnxp.bench.worker``; reads the settings and then commands,
one JSON object per line, on stdin, and answers on stdout (protocol in
:mod:`.isolated`).  Kept out of the package's imports so that ``-m`` runs it fresh.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def main() -> None:
    import gc

    from .contenders import build_contenders
    from .machine import Threads
    from .timing import _calibrate, _sample, _settle

    out = sys.stdout
    sys.stdout = sys.stderr  # anything a library prints must not break the protocol
    settings = json.loads(sys.stdin.readline())
    notes: list[str] = []
    with Threads(settings["threads"]):
        found = build_contenders(settings["sizes"], settings["batch"], [settings["name"]], settings["device"],
                                 notes, settings["blas"])
        if not found:
            out.write(json.dumps({"ready": True, "k": 0, "pid": os.getpid(), "pool": "", "info": {"notes": notes}})
                      + "\n")
            out.flush()
            return
        c = found[0]
        _calibrate(c, settings["warmup_s"], settings["min_sample_s"])
        out.write(json.dumps({"ready": True, "k": c.k, "pid": os.getpid(), "pool": c.pool}) + "\n")
        out.flush()
        gc.collect()
        gc.disable()
        for line in sys.stdin:
            message = json.loads(line)
            if message["cmd"] == "sample":
                t = os.times()
                if message["settle_s"] > 0:
                    _settle(c, message["settle_s"])
                seconds = _sample(c)
                t2 = os.times()
                reply: dict[str, Any] = {"sample_s": seconds,
                                         "cpu_s": (t2.user + t2.system) - (t.user + t.system)}
            elif message["cmd"] == "info":
                reply = {"info": {**c.info(), "notes": notes}}
            else:
                break
            out.write(json.dumps(reply) + "\n")
            out.flush()


if __name__ == "__main__":
    main()
