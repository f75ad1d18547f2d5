"""pbx.calls package."""
