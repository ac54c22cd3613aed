# A jupyter_server config file that bench/server_memory.py --probe gives each server: it
# runs while the server reads its configuration (after the fork and `become`, before
# extensions load and the web app is made), starts tracemalloc and a profile hook there,
# and on SIGUSR2 writes its private memory then and now, what Python allocated since, the
# code objects run since (per package), the modules imported, the threads and the block
# count to ~/.memprobe.json. For measuring only: tracing and profiling make every
# allocation bigger and touch more pages.
import gc
import json
import os
import signal
import sys
import threading
import tracemalloc


def _memprobe_private_kib():
    with open("/proc/self/smaps_rollup") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line and "-" not in line[:20])
    return sum(int(fields[k].split()[0]) for k in ("Private_Clean", "Private_Dirty"))


_private_at_config = _memprobe_private_kib()
_blocks_at_config = sys.getallocatedblocks()
_modules_at_config = set(sys.modules)
tracemalloc.start(1)
# Every code object run from here on (functions and methods of Python code).
_memprobe_code = {}


def _memprobe_profile(frame, event, _arg):
    if event == "call":
        code = frame.f_code
        _memprobe_code[id(code)] = code


sys.setprofile(_memprobe_profile)
threading.setprofile(_memprobe_profile)


def _memprobe_dump(*_args):
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)])

    def top(key_type, n):
        return [[str(s.traceback), s.size // 1024, s.count]
                for s in snapshot.statistics(key_type)[:n]]

    by_package = {}
    for code in list(_memprobe_code.values()):
        path = code.co_filename
        if "site-packages/" in path:
            package = path.split("site-packages/", 1)[1].split("/")[0]
        elif path.startswith("/usr/lib/python3"):
            package = "stdlib " + path.split("/")[4].split(".")[0]
        else:
            package = path
        count, size = by_package.get(package, (0, 0))
        by_package[package] = (count + 1, size + sys.getsizeof(code))
    out = {
        "code_run": sorted(([k, *v] for k, v in by_package.items()), key=lambda r: -r[1]),
        "private_kib_at_config": _private_at_config,
        "private_kib_idle": _memprobe_private_kib(),
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
