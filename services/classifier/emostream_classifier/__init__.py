"""emostream classifier service."""
