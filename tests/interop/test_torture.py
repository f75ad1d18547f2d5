"""RFC 4475 torture messages against the real running pbx server (tests/data/sip-torture).

Every corpus file goes to the server as ONE UDP datagram; the answer must be one the corpus
README's "PBX expectation" column allows (the table ``EXPECTED`` below maps each file to it),
and an OPTIONS sent right after every file must be answered within 1 s. The framing cases
(clerr, ncl, mcl01, baddn) also go over TCP and TLS: the server must answer or close the
connection in bounded time, never buffer without end. Finally the whole corpus is replayed in
a private network namespace under tcpdump to prove that the foreign domains in its URIs and
Vias never cause a DNS lookup.

Where answers go: none of the corpus requests carries ``rport`` (except mpart01), so RFC 3261
§18.2.2 sends the answer to the ``received`` address (our source address) at the Via port
(5060 by default, 5050 for quotbal). The UDP tests therefore run in a private netns, send
each file from its own address 127.0.0.<10+i>:5060 and also listen on :5050, so every answer
(and every retransmission of it) is attributed to exactly one file.

Imports nothing from ``pbx``.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from .harness.pbx_server import PbxServer, sip_options
from .harness.sip_wire import (
    SipResponse,
    StreamReader,
    options,
    parse_response,
    recv_datagrams,
    status_line,
    stream_connect,
    tokens,
    udp_socket,
)

CORPUS = Path(__file__).resolve().parents[1] / "data" / "sip-torture"
BADDN_TERMINATED = "variants/3.1.2.15-baddn.terminated.dat"
VIA_PORTS = (5060, 5050)  # every Via port in the corpus (sent-by default 5060; quotbal 5050)
WAIT = 1.0  # how long a silent file is watched, and the OPTIONS deadline (README invariant)
#: Shortened T1 (test-only env of the server): a server transaction over UDP then ends
#: 64*T1 = 0.64 s after its answer (RFC 3261 §17.2.2 Timer J, §17.2.1 Timer H), see _pace().
T1 = 0.01

#: RFC 3261 §21 reason phrases of the statuses the corpus may draw.
REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    488: "Not Acceptable Here",
    501: "Not Implemented",
    505: "Version Not Supported",
}

Check = Callable[[SipResponse], "str | None"]


@dataclass(frozen=True)
class Expect:
    """What pbx (registrar/B2BUA as UAS, no credentials sent) must do with one file over UDP."""

    finals: frozenset[int]  # allowed final statuses; empty: the file must get no answer at all
    why: str
    silence_ok: bool = False  # no answer is allowed as well (README: "400 (or drop)")
    check: Check | None = None  # extra check of the final answer; returns a problem or None

    def describe(self) -> str:
        if not self.finals:
            return "no answer"
        codes = "/".join(str(code) for code in sorted(self.finals))
        return codes + (" or no answer" if self.silence_ok else "")


def answer(*codes: int, why: str, silence_ok: bool = False, check: Check | None = None) -> Expect:
    return Expect(frozenset(codes), why, silence_ok, check)


def drop(why: str) -> Expect:
    return Expect(frozenset(), why)


def _allow_lists_methods(resp: SipResponse) -> str | None:
    if not {"invite", "register", "options"} <= tokens(resp, "Allow"):
        return (
            f"501 without an Allow listing the supported methods (Allow: {resp.get_all('Allow')})"
        )
    return None


def _unsupported_lists_require_tags(resp: SipResponse) -> str | None:
    wanted = {"nothingsupportsthis", "nothingsupportsthiseither"}
    if not wanted <= tokens(resp, "Unsupported"):
        return f"420 whose Unsupported is {resp.get_all('Unsupported')}, not the Require tags"
    return None


def _warning_399_on_406(resp: SipResponse) -> str | None:
    if resp.status == 406 and not any(w.startswith("399") for w in resp.get_all("Warning")):
        return f"406 without Warning: 399 (Warning: {resp.get_all('Warning')})"
    return None


def _digest_challenge(resp: SipResponse) -> str | None:
    if not any(v.lower().startswith("digest") for v in resp.get_all("WWW-Authenticate")):
        return "401 without a Digest WWW-Authenticate challenge"
    return None


def _register_only(resp: SipResponse) -> str | None:
    if resp.cseq_method != "REGISTER":
        return f"answer for CSeq {resp.get('CSeq')!r}: the trailing INVITE octets were processed"
    return None


#: file -> the expected behaviour: the README's "PBX expectation", narrowed to pbx's policy
#: (OPTIONS answered without authentication; INVITE/MESSAGE challenged with 407 and REGISTER
#: with 401 before anything else is decided about them, since the corpus sends no credentials).
EXPECTED: dict[str, Expect] = {
    "3.1.1.1-wsinv.dat": answer(
        407,
        481,
        why="valid INVITE, but its To has a tag: an in-dialog request for a dialog pbx does not "
        "know gets 481 (RFC 3261 §12.2.2), never 400",
    ),
    "3.1.1.2-intmeth.dat": answer(
        501, why="unknown method: 501 with Allow", check=_allow_lists_methods
    ),
    "3.1.1.3-esc01.dat": answer(407, why="valid INVITE with escapes: auth challenge"),
    "3.1.1.4-escnull.dat": answer(
        401, 403, 404, why="valid REGISTER, AOR with %00: challenge or 404-equivalent"
    ),
    "3.1.1.5-esc02.dat": answer(
        501, why="RE%47IST%45R is not REGISTER: 501", check=_allow_lists_methods
    ),
    "3.1.1.6-lwsdisp.dat": answer(200, why="valid OPTIONS: 200"),
    "3.1.1.7-longreq.dat": answer(407, why="valid long INVITE: auth challenge, no truncation"),
    "3.1.1.8-dblreq.dat": answer(
        401, why="REGISTER answered, trailing INVITE octets ignored", check=_register_only
    ),
    "3.1.1.9-semiuri.dat": answer(200, why="valid OPTIONS: 200"),
    "3.1.1.10-transports.dat": answer(200, why="valid OPTIONS with odd Via transports: 200"),
    "3.1.1.11-mpart01.dat": answer(
        407,
        415,
        488,
        501,
        why="valid MESSAGE with binary multipart: challenge/415/488, or 501 (pbx has no "
        "MESSAGE yet), never 400",
    ),
    "3.1.1.12-unreason.dat": drop("response matching no transaction: dropped silently"),
    "3.1.1.13-noreason.dat": drop("response matching no transaction: dropped silently"),
    "3.1.2.1-badinv01.dat": answer(400, why="extraneous header separators: 400"),
    "3.1.2.2-clerr.dat": answer(400, why="Content-Length larger than the datagram: 400"),
    "3.1.2.3-ncl.dat": answer(400, why="negative Content-Length: 400 or drop", silence_ok=True),
    "3.1.2.4-scalar02.dat": answer(400, why="overlarge CSeq: 400"),
    "3.1.2.5-scalarlg.dat": drop("response with overlarge scalars: dropped"),
    "3.1.2.6-quotbal.dat": answer(400, why="unterminated quoted display name: 400"),
    "3.1.2.7-ltgtruri.dat": answer(400, why="<> around the Request-URI: 400"),
    "3.1.2.8-lwsruri.dat": answer(400, why="LWS inside the Request-URI: 400"),
    "3.1.2.9-lwsstart.dat": answer(
        400, 407, why="multiple SP in the Request-Line: 400 (or accepted: challenge)"
    ),
    "3.1.2.10-trws.dat": answer(400, 200, why="SP before CRLF in the Request-Line: 400 or 200"),
    "3.1.2.11-escruri.dat": answer(400, why="escaped headers in the Request-URI: 400"),
    "3.1.2.12-baddate.dat": answer(
        407, 400, why="bad Date zone: ignore the Date (challenge) or 400"
    ),
    "3.1.2.13-regbadct.dat": answer(400, why="name-addr Contact without <>: 400"),
    "3.1.2.14-badaspec.dat": answer(400, why="spaces inside an addr-spec: 400"),
    "3.1.2.15-baddn.dat": answer(400, why="non-token display name: 400"),
    "3.1.2.16-badvers.dat": answer(505, why="SIP/7.0: 505"),
    "3.1.2.17-mismatch01.dat": answer(400, why="Request-Line and CSeq methods differ: 400"),
    "3.1.2.18-mismatch02.dat": answer(
        501, 400, why="unknown method, CSeq method differs: 501 (400 acceptable)"
    ),
    "3.1.2.19-bigcode.dat": drop("response code > 699: dropped"),
    "3.2.1-badbranch.dat": answer(
        400, 200, why="branch is just the magic cookie: 400 or RFC 2543 matching (200)"
    ),
    "3.3.1-insuf.dat": answer(400, why="no Call-ID, From, To: 400"),
    "3.3.2-unkscm.dat": answer(416, why="unknown Request-URI scheme: 416"),
    "3.3.3-novelsc.dat": answer(416, why="soap.beep Request-URI: 416"),
    "3.3.4-unksm2.dat": answer(400, why="REGISTER with a non-SIP AOR: 400, no binding"),
    "3.3.5-bext01.dat": answer(
        420, why="unknown Require tags: 420 + Unsupported", check=_unsupported_lists_require_tags
    ),
    "3.3.6-invut.dat": answer(415, why="INVITE with an unknown body type: 415"),
    "3.3.7-regaut01.dat": answer(
        401, why="unknown Authorization scheme: fresh Digest 401", check=_digest_challenge
    ),
    "3.3.8-multi01.dat": answer(400, why="several values in single-value fields: 400"),
    "3.3.9-mcl01.dat": answer(
        400, why="several Content-Length values: 400 or drop", silence_ok=True
    ),
    "3.3.10-bcast.dat": drop("200 OK via a broadcast Via: dropped, nothing sent anywhere"),
    "3.3.11-zeromf.dat": answer(200, why="Max-Forwards: 0 to the UAS itself: answered normally"),
    "3.3.12-cparam01.dat": answer(401, why="REGISTER with a contact-param: auth challenge first"),
    "3.3.13-cparam02.dat": answer(401, why="REGISTER with a url-param: auth challenge first"),
    "3.3.14-regescrt.dat": answer(401, why="REGISTER with an escaped header: challenge first"),
    "3.3.15-sdp01.dat": answer(
        406,
        400,
        why="Accept excludes application/sdp: 406 + Warning 399, or 400",
        check=_warning_399_on_406,
    ),
    "3.4.1-inv2543.dat": answer(407, 400, why="RFC 2543 INVITE: accepted (challenge) or 400"),
    "A.1-test.dat": answer(
        400, why="no SIP-Version and no Via: 400 or drop (cannot be answered)", silence_ok=True
    ),
    BADDN_TERMINATED: answer(400, why="non-token display name, header section terminated: 400"),
}

#: framing cases over a stream (RFC 4475 §3.1.2.2, §3.1.2.3, §3.3.9, §3.1.2.15): "close" =
#: framing is unrecoverable, the connection is closed at once; "wait" = the message is
#: incomplete, the server waits a bounded time (tcp_idle_timeout) and closes; "answer" = a
#: complete but invalid request, answered with 400 on the same connection.
FRAMING = {
    "3.1.2.2-clerr.dat": "wait",
    "3.1.2.3-ncl.dat": "close",
    "3.3.9-mcl01.dat": "close",
    "3.1.2.15-baddn.dat": "wait",
    BADDN_TERMINATED: "answer",
}
IDLE_TIMEOUT = 2


# -- the corpus ------------------------------------------------------------------------------


@cache
def _verified_corpus() -> dict[str, bytes]:
    """Every file of SHA256SUMS, checked byte for byte; the manifest and EXPECTED agree."""
    sums: dict[str, str] = {}
    for line in (CORPUS / "SHA256SUMS").read_text(encoding="ascii").splitlines():
        digest, name = line.split(None, 1)
        sums[name.lstrip("*")] = digest
    data: dict[str, bytes] = {}
    for name, digest in sums.items():
        raw = (CORPUS / name).read_bytes()
        actual = hashlib.sha256(raw).hexdigest()
        assert actual == digest, f"{name}: sha256 {actual} != SHA256SUMS {digest}"
        data[name] = raw
    with (CORPUS / "manifest.tsv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    for row in rows:
        assert sums[row["file"]] == row["sha256"], f"{row['file']}: manifest sha256 differs"
        assert len(data[row["file"]]) == int(row["bytes"]), f"{row['file']}: manifest size"
    on_disk = {p.name for p in CORPUS.glob("*.dat")}
    assert on_disk == {row["file"] for row in rows}, "manifest.tsv does not list every .dat"
    assert set(EXPECTED) == on_disk | {BADDN_TERMINATED}, "EXPECTED must map every file"
    return data


@pytest.fixture(scope="module")
def corpus() -> dict[str, bytes]:
    return _verified_corpus()


def test_corpus_files_match_sha256sums_and_every_file_has_an_expectation() -> None:
    data = _verified_corpus()
    assert len(data) == 52  # 50 archive members, the archive itself, one derived variant
    assert sum(1 for name in EXPECTED if not EXPECTED[name].finals) == 5  # the 5 responses


# -- UDP: one datagram per file --------------------------------------------------------------


def _describe(answers: list[tuple[int, bytes]]) -> str:
    if not answers:
        return "nothing"
    shown = []
    for port, raw in answers:
        resp = parse_response(raw)
        shown.append(
            f"{status_line(resp)} (to :{port})" if resp else f"unparsable {raw[:60]!r} (to :{port})"
        )
    return "; ".join(shown)


def _judge(name: str, expect: Expect, answers: list[tuple[int, bytes]]) -> list[str]:
    """Problems with the answers one file drew (empty list: as expected)."""
    problems: list[str] = []
    responses = [parse_response(raw) for _, raw in answers]
    sent = f"{name}: sent as one UDP datagram; expected {expect.describe()} ({expect.why})"
    got = f"received {_describe(answers)}"
    if any(resp is None for resp in responses):
        return [f"{sent}; {got} -- not a SIP/2.0 response"]
    parsed = [resp for resp in responses if resp is not None]
    finals = [resp for resp in parsed if resp.status >= 200]
    if not expect.finals:
        return [f"{sent}; {got}"] if parsed else []
    if any(resp.status != 100 for resp in parsed if resp.status < 200):
        problems.append(f"{sent}; {got} -- unexpected provisional response")
    if not finals:
        return problems if expect.silence_ok else [*problems, f"{sent}; {got} within {WAIT:g}s"]
    statuses = {resp.status for resp in finals}
    if not statuses <= expect.finals or len(statuses) > 1:
        problems.append(f"{sent}; {got}")
        return problems
    final = finals[0]
    reason = REASONS.get(final.status)
    if reason and not final.reason.lower().startswith(reason.lower()):
        problems.append(f"{sent}; {got} -- reason phrase should be {reason!r}")
    if expect.check is not None and (detail := expect.check(final)):
        problems.append(f"{sent}; {got} -- {detail}")
    return problems


def _wait_for_answer(socks: list[socket.socket], expect: Expect) -> list[tuple[int, bytes]]:
    """Datagrams for one file: until an allowed final answer came, at most WAIT seconds."""
    answers: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + WAIT
    while (left := deadline - time.monotonic()) > 0:
        for index, raw in recv_datagrams(socks, min(left, 0.05)):
            answers.append((VIA_PORTS[index], raw))
        if any(
            (resp := parse_response(raw)) is not None and resp.status in expect.finals
            for _, raw in answers
        ):
            break
    return answers


def _transaction_key(raw: bytes) -> tuple[str, str]:
    """Method and top Via line: what RFC 3261 §17.2.3 matches a request to a transaction by."""
    lines = raw.split(b"\r\n")
    via = next((line for line in lines[1:] if re.match(rb"(?i)(via|v)\s*:", line)), b"")
    return lines[0].split(b" ")[0].decode("latin-1"), " ".join(via.decode("latin-1").split())


def _pace(raw: bytes, sent: dict[tuple[str, str], float]) -> None:
    """Some corpus files reuse another file's branch, sent-by and method (cparam01/cparam02,
    escnull/regescrt, ...): to the server the later one is a retransmission of the earlier
    one's transaction, answered to the earlier sender. Each file is meant to be judged on
    its own, so wait until the earlier transaction has ended (64*T1 plus a margin)."""
    key = _transaction_key(raw)
    if key in sent:
        time.sleep(max(0.0, sent[key] + 64 * T1 + 0.3 - time.monotonic()))
    sent[key] = time.monotonic()


def _file_sockets(index: int) -> list[socket.socket]:
    """This file's own address 127.0.0.<10+index>, bound on every Via port of the corpus."""
    address = f"127.0.0.{10 + index}"
    return [udp_socket(address, port) for port in VIA_PORTS]


@pytest.mark.netns
def test_every_torture_file_over_udp_draws_an_allowed_answer_and_options_still_works(
    pbx_factory: Callable[..., PbxServer], corpus: dict[str, bytes]
) -> None:
    pbx = pbx_factory(env={"PBX_SIP_T1": str(T1)})
    server = ("127.0.0.1", pbx.sip_port)
    sockets: dict[str, list[socket.socket]] = {}
    answers: dict[str, list[tuple[int, bytes]]] = {}
    problems: list[str] = []
    sent: dict[tuple[str, str], float] = {}
    try:
        for index, (name, expect) in enumerate(EXPECTED.items()):
            socks = sockets[name] = _file_sockets(index)
            _pace(corpus[name], sent)
            socks[0].sendto(corpus[name], server)
            answers[name] = _wait_for_answer(socks, expect)
            status = sip_options("127.0.0.1", pbx.sip_port, timeout=WAIT)
            if status is None or not status.startswith("SIP/2.0 200"):
                problems.append(f"{name}: OPTIONS right after it got {status!r}, not 200 in 1 s")
            if not pbx.running:
                pytest.fail(f"pbx died after {name}\n{pbx.log_tail()}")
        for name, socks in sockets.items():  # late answers and retransmissions
            for index, raw in recv_datagrams(socks, 0.01):
                answers[name].append((VIA_PORTS[index], raw))
    finally:
        for socks in sockets.values():
            for sock in socks:
                sock.close()
    for name, expect in EXPECTED.items():
        problems += _judge(name, expect, answers[name])
    bindings = pbx.registrations()
    if bindings:
        problems.append(f"corpus created bindings (none expected): {bindings}")
    assert pbx.running
    assert not problems, "\n".join(problems)


# -- TCP / TLS: the framing cases ------------------------------------------------------------


def _stream(pbx: PbxServer, transport: str) -> socket.socket:
    port = pbx.sip_port if transport == "TCP" else pbx.tls_port
    return stream_connect(transport, "127.0.0.1", port, cafile=str(pbx.cert_path))


def _stream_options_answered(pbx: PbxServer, transport: str) -> SipResponse | None:
    sock = _stream(pbx, transport)
    try:
        host, port = sock.getsockname()[:2]
        target = ("127.0.0.1", pbx.sip_port if transport == "TCP" else pbx.tls_port)
        sock.sendall(options((host, port), target, transport=transport))
        return StreamReader(sock).read_response(WAIT)
    finally:
        sock.close()


def _close_limit(mode: str) -> float:
    """How long a framing case may keep its connection: at once, or the idle timeout."""
    return 1.0 if mode == "close" else IDLE_TIMEOUT + 2.0


def _watch_closing(readers: list[tuple[StreamReader, float]]) -> dict[int, float]:
    """Read all connections in parallel; when each was closed by the server (index -> time)."""
    closed_at: dict[int, float] = {}
    deadline = max(sent_at for _, sent_at in readers) + _close_limit("wait") + 0.5
    while len(closed_at) < len(readers) and time.monotonic() < deadline:
        for index, (reader, _) in enumerate(readers):
            if index not in closed_at and reader.wait_closed(0.01):
                closed_at[index] = time.monotonic()
    return closed_at


def test_framing_cases_over_tcp_and_tls_are_closed_or_answered_in_bounded_time(
    pbx_factory: Callable[..., PbxServer], corpus: dict[str, bytes]
) -> None:
    pbx = pbx_factory(site_toml=f"[sip]\ntcp_idle_timeout = {IDLE_TIMEOUT}\n")
    connected = [(t, name, _stream(pbx, t)) for t in ("TCP", "TLS") for name in FRAMING]
    opened: list[tuple[str, str, socket.socket, StreamReader, float]] = []
    for transport, name, sock in connected:  # handshakes done: send all at once
        sock.sendall(corpus[name])
        opened.append((transport, name, sock, StreamReader(sock), time.monotonic()))
    closed_at = _watch_closing([(reader, sent_at) for _, _, _, reader, sent_at in opened])
    problems: list[str] = []
    for index, (transport, name, sock, reader, sent_at) in enumerate(opened):
        mode = FRAMING[name]
        limit = _close_limit(mode)
        closed = index in closed_at and closed_at[index] - sent_at <= limit
        took = closed_at.get(index, time.monotonic()) - sent_at
        replies = []
        while (data := reader.read_message(0)) is not None:
            replies.append(parse_response(data))
        shown = ", ".join(status_line(r) for r in replies) or "no answer"
        what = f"{name} over {transport} ({mode})"
        if mode == "answer":
            if [r.status if r else None for r in replies] != [400]:
                problems.append(f"{what}: expected one 400 on the connection, received {shown}")
            if closed and took < IDLE_TIMEOUT - 0.5:
                problems.append(f"{what}: a complete message, yet closed after {took:.1f}s")
        else:
            if not closed:
                problems.append(
                    f"{what}: connection still open after {limit:g}s ({shown}; "
                    f"{len(corpus[name])} octets sent)"
                )
            if any(r is None or r.status < 400 for r in replies):
                problems.append(f"{what}: only an error may come back, received {shown}")
        sock.close()
    for transport in ("TCP", "TLS"):
        resp = _stream_options_answered(pbx, transport)
        if resp is None or resp.status != 200:
            problems.append(
                f"OPTIONS on a new {transport} connection afterwards got {status_line(resp)}"
            )
    assert pbx.running
    assert not problems, "\n".join(problems)


# -- no DNS ----------------------------------------------------------------------------------

PRIVATE_NAMESERVER = "127.0.0.53"


def _private_resolver_python(tmp_path: Path, python: str) -> Path:
    """A wrapper that runs ``python`` in its own mount namespace whose /etc/resolv.conf points
    at 127.0.0.53, so any lookup the server might start goes over lo, where tcpdump sees it
    (inside the netns the real nameserver is unreachable and would send nothing)."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {PRIVATE_NAMESERVER}\noptions timeout:1 attempts:1\n")
    wrapper = tmp_path / "python-private-resolver"
    wrapper.write_text(
        "#!/bin/sh\n"
        "exec unshare --mount --propagation private sh -c "
        f'\'mount --bind "$0" /etc/resolv.conf && exec "$@"\' '
        f'{shlex.quote(str(resolv))} {shlex.quote(python)} "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


@pytest.fixture
def dns_capture(tmp_path: Path) -> Iterator[Callable[[], list[str]]]:
    """tcpdump -i any -n port 53 in the current (private) netns; call the fixture to stop it
    (by pid) and get the captured packets, one tcpdump line each."""
    missing = [b for b in ("tcpdump", "unshare", "mount") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"missing binaries: {', '.join(missing)}")
    pcap, errors = tmp_path / "dns.pcap", tmp_path / "tcpdump.err"
    with errors.open("wb") as err:
        proc = subprocess.Popen(
            ["tcpdump", "-i", "any", "-n", "-U", "-Z", "root", "-w", str(pcap), "port", "53"],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    deadline = time.monotonic() + 10
    while b"listening on" not in errors.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"tcpdump did not start: {errors.read_text(errors='replace')}")
        time.sleep(0.05)

    def stop() -> list[str]:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)
            proc.wait(10)
        read = subprocess.run(
            ["tcpdump", "-n", "-r", str(pcap)], capture_output=True, text=True, timeout=30
        )
        return [line for line in read.stdout.splitlines() if line.strip()]

    yield stop
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)


@pytest.mark.netns
def test_no_dns_lookup_for_the_foreign_domains_of_the_corpus(
    pbx_factory: Callable[..., PbxServer],
    corpus: dict[str, bytes],
    dns_capture: Callable[[], list[str]],
    tmp_path: Path,
) -> None:
    host_resolv = Path("/etc/resolv.conf").read_bytes()
    wrapper = _private_resolver_python(tmp_path, sys.executable)
    view = subprocess.run(
        [str(wrapper), "-c", "print(open('/etc/resolv.conf').read())"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert f"nameserver {PRIVATE_NAMESERVER}" in view.stdout, view.stderr
    assert Path("/etc/resolv.conf").read_bytes() == host_resolv  # the mount stayed private
    control = udp_socket("127.0.0.1")  # proves the capture sees port-53 traffic on lo
    control.sendto(b"capture control, not a DNS query", (PRIVATE_NAMESERVER, 53))
    control_port = control.getsockname()[1]
    control.close()

    pbx = pbx_factory(python=str(wrapper), site_toml=f"[sip]\ntcp_idle_timeout = {IDLE_TIMEOUT}\n")
    server = ("127.0.0.1", pbx.sip_port)
    streams: list[socket.socket] = []
    for index, name in enumerate(EXPECTED):
        sock = udp_socket(f"127.0.0.{10 + index}", 5060)
        sock.sendto(corpus[name], server)
        sock.close()
        # the answer to OPTIONS comes after the file was handled: a barrier per file
        assert sip_options("127.0.0.1", pbx.sip_port, timeout=WAIT) is not None, name
    for transport in ("TCP", "TLS"):
        for name in (*FRAMING, "3.1.1.1-wsinv.dat", "3.3.4-unksm2.dat", "3.1.1.10-transports.dat"):
            sock = _stream(pbx, transport)
            sock.sendall(corpus[name])
            streams.append(sock)
    for transport in ("TCP", "TLS"):
        assert _stream_options_answered(pbx, transport) is not None
    time.sleep(1.0)  # a resolver thread would have sent its query by now
    for sock in streams:
        sock.close()
    packets = dns_capture()
    control_line = f"127.0.0.1.{control_port} > {PRIVATE_NAMESERVER}.53"
    assert sum(control_line in line for line in packets) == 1, packets
    lookups = [line for line in packets if control_line not in line]
    assert lookups == [], "pbx sent DNS traffic:\n" + "\n".join(lookups)
    assert pbx.running
