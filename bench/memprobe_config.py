# A jupyter_server config file that bench/server_memory.py --probe gives each server: it
# runs while the server reads its configuration (after the fork and `become`, before
# extensions load and the web app is made), starts tracemalloc there, and on SIGUSR2
# writes what Python allocated since, the modules imported, the threads and the block
# count to ~/.memprobe.json. For measuring only: tracing makes every allocation bigger.
import gc
import json
import os
import signal
import sys
import threading
import tracemalloc

_blocks_at_config = sys.getallocatedblocks()
_modules_at_config = set(sys.modules)
tracemalloc.start(1)


def _memprobe_dump(*_args):
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)])

    def top(key_type, n):
        return [[str(s.traceback), s.size // 1024, s.count]
                for s in snapshot.statistics(key_type)[:n]]

    out = {
        "blocks_at_config": _blocks_at_config,
        "blocks_idle": sys.getallocatedblocks(),
        "traced_kib": tracemalloc.get_traced_memory()[0] // 1024,
        "modules": sorted(sys.modules),
        "new_modules": sorted(set(sys.modules) - _modules_at_config),
        "threads": [t.name for t in threading.enumerate()],
        "gc": {"counts": gc.get_count(), "frozen": gc.get_freeze_count(),
               "tracked": len(gc.get_objects())},
        "top_files": top("filename", 40),
        "top_lines": top("lineno", 40),
    }
    path = os.path.expanduser("~/.memprobe.json")
    with open(path + ".tmp", "w") as f:
        json.dump(out, f)
    os.replace(path + ".tmp", path)


signal.signal(signal.SIGUSR2, _memprobe_dump)
