"""What modal_app.py plans before any container starts, standard library at import: training runs
and sweeps (`runs`) and predict batches over a volume of recordings (`predict`)."""
