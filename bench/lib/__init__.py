"""Helpers shared by the bench/ scripts (stdlib only; never imports pbx, twisted or ../shared)."""
