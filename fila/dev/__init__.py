"""Development and tests only: the embedded servers, local clusters and child-process lifetime.

No production process (control plane, workers, TUI) imports this package; its S3 server (moto)
comes with the `local` extra that `run.sh` installs.
"""
