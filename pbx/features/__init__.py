"""Call features built on the call-control API (pbx.calls.control): echo test, transfer,
park, pickup, click-to-call. Each module owns one feature and its state machine; they use
legs, bridges and commands only, never SIP messages or media sockets (setup.cfg contracts)."""
