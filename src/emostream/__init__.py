"""emostream: shared library for the services (wire schema, streams, settings, telemetry) and the `emostream` command."""
