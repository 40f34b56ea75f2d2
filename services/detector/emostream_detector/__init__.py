"""emostream detector service."""
