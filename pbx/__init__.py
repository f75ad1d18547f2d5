"""pbx: a self-hosted PBX and unified-communications server on one Twisted reactor."""

__version__ = "0.1.0"
