"""The Quix and Bytewax jobs import their libraries, which live only in the peers' venv (bench/peers_env.py)."""

collect_ignore = ["quix_job.py", "bytewax_job.py", "publish_job.py"]
