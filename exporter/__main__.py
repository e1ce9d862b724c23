"""``python -m exporter`` behaves like ``entra-registration-exporter``."""

from exporter.cli import main

raise SystemExit(main())
