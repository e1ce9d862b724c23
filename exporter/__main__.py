"""``python -m exporter`` behaves like ``entra-registration-exporter``."""

from exporter.launch import main

raise SystemExit(main())
