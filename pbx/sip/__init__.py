"""SIP protocol stack: sans-IO message, framing, transaction, dialog and auth layers, plus
the Twisted transports, the transaction stack and the registrar that sit on top of them.

Knows nothing about calls, features or SQL (the registrar reaches the store through a small
protocol passed in by the service)."""
