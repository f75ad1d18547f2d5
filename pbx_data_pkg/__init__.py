"""Marker package: resources installed from config/, templates/ and firmware/."""
