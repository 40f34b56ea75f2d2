"""emostream capture service."""
