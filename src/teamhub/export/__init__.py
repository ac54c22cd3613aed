"""`teamhub export`: the same team on another platform.

z2jh (Zero to JupyterHub on Kubernetes): mapping.py says where every setting goes,
team.py reads the team, values.py builds the chart's values, chart.py validates them
against the chart's own schema, buildctx.py writes the images' build contexts, guide.py
the migration guide, bundle.py puts it all in place. The hub image's side is
teamhub.k8s.
"""
