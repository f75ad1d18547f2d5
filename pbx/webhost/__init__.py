"""Hosting of the admin web UI and REST API on the reactor, and the live data they show.

Modules: ``host`` (WebHost: HTTPS with the SIP certificate, WSGI thread pool, optional HTTP
redirect port, the web secret key), ``events`` (the native ``/events`` server-sent-events
resource), ``live`` (ServerLive, web.backend.Live for the running server; health sampling),
``jobs`` (devices upkeep from REGISTERs, daily call-record retention). The reactor never waits
for the web. Layers: pbx.service > pbx.webhost > web; must not import pbx.service.
"""

from pbx.webhost.host import WebHost, load_secret_key, tls_options
from pbx.webhost.live import ServerLive

__all__ = ["ServerLive", "WebHost", "load_secret_key", "tls_options"]
