"""``python -m entra_simulator`` runs the simulator's command line."""

from entra_simulator.cli import main

raise SystemExit(main())
