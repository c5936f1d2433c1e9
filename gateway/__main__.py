"""`python -m gateway` is `campusgw`."""

from gateway.cli import main

# Guarded: the video quality workers are spawned processes, which import the parent's main
# module (as `__mp_main__`) before they start.
if __name__ == "__main__":
    raise SystemExit(main())
