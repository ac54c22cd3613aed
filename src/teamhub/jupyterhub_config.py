# JupyterHub config file that `teamhub up` starts JupyterHub with.
# Settings come from teamhub.toml (TEAMHUB_CONFIG) and TEAMHUB_* variables;
# then every jupyterhub_config.d/*.py beside teamhub.toml is loaded, last.
from teamhub import hubguard
from teamhub.hubconfig import from_environment, use_tls_copies

# Browser isolation's request checks (README "Browser isolation"): in the hub process only.
hubguard.install()

c = get_config()  # type: ignore[name-defined]  # noqa: F821  (JupyterHub's config loader)
for _path in from_environment(c):
    load_subconfig(str(_path))  # type: ignore[name-defined]  # noqa: F821
# A TLS pair root copied for the hub's account (hub.unprivileged), also one set above.
use_tls_copies(c)
