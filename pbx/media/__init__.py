"""pbx.media package."""
