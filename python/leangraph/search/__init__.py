"""Search shared between processes and machines through Optuna's storages.

storage.py opens a storage URL (PostgreSQL, MySQL, SQLite, an Optuna journal
file), records what a study was made from, and owns the host-wide timing lock;
shared.py runs tune's objective as one worker of a shared study; study.py
reads a study back (`leangraph study show`, `--export`).
"""
