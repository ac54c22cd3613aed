"""teamhub's kernel launcher: an IPython kernel that imports nothing from its working folder.

Every kernel spec teamhub hands out runs `PYTHON [-P] <this file> -f CONNECTION_FILE ...`
instead of `PYTHON -m ipykernel_launcher`. Kernels start in the notebook's
folder, and `python -m` puts that folder first on sys.path: in a shared project
folder, another member's `ipykernel_launcher.py` (or `ipykernel.py`,
`traitlets.py`, ...) would run as whoever opens a notebook there. Run by path,
Python puts *this* file's folder (inside teamhub's root-owned runtime) first
instead, or nothing at all with -P (Python 3.11+); it is dropped before anything
is imported. IPython's own "add the working folder" step is switched off, and
once the kernel has started the folder is appended at the *end* of sys.path,
so `import mymodule` from the notebook's folder works, but a file there never
shadows the standard library or an installed package.

It runs under each environment's own interpreter (any Python 3 with ipykernel),
not teamhub's, so it imports nothing but the standard library and ipykernel.
"""

import sys

if __name__ == "__main__":
    if not getattr(sys.flags, "safe_path", False):
        del sys.path[0]  # this file's folder, put there by `python FILE`

    from ipykernel.kernelapp import IPKernelApp

    # Command-line config beats every config file: the user's own config cannot
    # turn the working folder back on for start-up. (IPython 8+ also skips it
    # under -P by itself.)
    app = IPKernelApp.instance()
    app.initialize([*sys.argv[1:], "--IPKernelApp.ignore_cwd=True"])
    sys.path.append("")  # "" is the working folder, as it is when it changes (%cd)
    app.start()
