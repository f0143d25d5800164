"""The master and the control plane: listeners, fork, signals, respawn, reload, the shared-memory
tables it owns (shm/: scoreboard, balancer members), health checks, DNS discovery, mpmctl."""
