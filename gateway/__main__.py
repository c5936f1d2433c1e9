"""`python -m gateway` is `campusgw`."""

from gateway.cli import main

raise SystemExit(main())
