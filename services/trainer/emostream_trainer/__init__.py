"""emostream trainer service."""
