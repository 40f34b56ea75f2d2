"""emostream: shared library (wire, streams, settings, telemetry) and the `emostream` command."""
