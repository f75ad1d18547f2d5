"""Admin web UI and REST API (Flask), served by the reactor through twisted.web.wsgi."""
