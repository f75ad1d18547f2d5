"""Real-peer interop harness: drives the pbx server and real SIP peers from outside.

Owns the drivers every interop/feature test uses; imports nothing from ``pbx`` (the server is a
black box reached through its CLI, DIR/run/status.json and the network). Every address is in
127.0.0.0/8, every wait is bounded, every process is stopped by its own pid.

Modules
- ``ports``        free UDP+TCP ports on 127.0.0.1, reserved across processes with record
                   locks on one file; ``Reservation`` = the ports one driver holds.
- ``pbx_server``   ``PbxServer``: ``python -m pbx serve`` on free ports, ready = status.json with
                   our pid + an OPTIONS answered; cli(), status(), stop(), kill9(), restart().
- ``sipp``         ``Sipp``: bounded SIPp runs (blocking or background) with stats parsed into
                   ``SippResult``; ``write_users_csv`` for digest scenarios.
- ``baresip``      ``Baresip``: baresip over ctrl_tcp (netstring JSON). Needs a private netns.
- ``linphone``     ``Linphone``: linphone-daemon over stdin (fresh HOME + rc; no call-stats).
- ``pyvoip_phone`` ``PyVoipPhone``: pyVoIP 1.6.8 in a thread (UDP, MD5).
- ``netns``        ``private_netns()``: moves the calling thread into a new network namespace.
- ``sip_wire``     raw SIP over plain UDP/TCP/TLS sockets: build requests, read/parse responses.
- ``raw_phone``    ``RawPhone``: a scripted SIP phone on plain UDP sockets (MD5 REGISTER, calls
                   both ways, hold by re-INVITE/UPDATE, REFER with any headers, INVITE with
                   Replaces, PCMU tone RTP sent and received) for what no peer can script.
- ``sip_message``  one SIP request/response parser; baresip ``-s`` traces and linphone logs
                   read back as messages (what a phone received from pbx).
- ``tones``        G.711 mu-law, sine WAVs, and the order of tones a recording carries.

Network namespaces (why and how)
    baresip advertises the host's primary (eth0) address in SDP even when it listens on
    127.0.0.1, and fails with only ``lo`` present. So tests that use baresip run the WHOLE test
    -- pbx server, peers, and the test's own sockets -- inside a private network namespace:
    ``netns.private_netns()`` calls ``unshare(CLONE_NEWNET)`` on the test's thread, brings
    ``lo`` up and adds a veth pair holding 127.0.0.2/32 (baresip then uses 127.0.0.2 in SDP),
    and returns the thread to its original namespace afterwards with ``setns``. Everything the
    test starts inside inherits the namespace. Chosen over re-executing pytest under
    ``unshare -n`` because fixtures, assertions and tracebacks stay in one process.
    In pytest: mark the test ``@pytest.mark.netns``; an autouse fixture in
    tests/interop/conftest.py enters the namespace BEFORE any other fixture (so a pbx_server
    fixture starts inside it) and leaves it after they are torn down. Function scope only: a
    module- or session-scoped server started outside is not reachable from inside. Needs root
    (CAP_SYS_ADMIN); without it such tests are skipped with the reason.
"""

from __future__ import annotations

import shutil


def missing_binaries(*names: str) -> list[str]:
    """The names in ``names`` not found on PATH (for skip reasons)."""
    return [name for name in names if shutil.which(name) is None]
