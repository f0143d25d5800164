"""The master and the control plane: listeners, fork, signals, respawn, reload, scoreboard, mpmctl."""
