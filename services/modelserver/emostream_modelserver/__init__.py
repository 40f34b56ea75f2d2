"""emostream modelserver service."""
