"""SDES a=crypto lines and SRTP offer/answer on SDP (RFC 4568, RFC 7714 §14.2)."""

from __future__ import annotations

import base64

import pytest

from pbx.media.sdes import (
    SUITES,
    CryptoAttribute,
    SdesError,
    accept_answer,
    accept_offer,
    is_secure,
    make_offer_crypto,
    secure_stream,
    strip_crypto,
)
from pbx.media.sdp import SessionDescription

# RFC 4568 §4 and §8.1 (offer and answer) examples, and §6.3 session parameters
RFC_LINES = [
    "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4",
    "1 AES_CM_128_HMAC_SHA1_80 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj|2^20|1:32",
    "2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^20|1:32"
    " KDR=1 UNENCRYPTED_SRTCP",
]
KEY30 = "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"


def crlf(text: str) -> str:
    return text.strip("\n").replace("\n", "\r\n") + "\r\n"


# the shape baresip 1.0 sends with mediaenc=srtp-mand: both AES-CM suites, no lifetime or MKI
SRTP_OFFER = crlf(f"""
v=0
o=- 123 456 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 10000 RTP/SAVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=crypto:1 F8_128_HMAC_SHA1_80 inline:{KEY30}
a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{KEY30}|2^20|1:4
a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj
a=crypto:4 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj
a=sendrecv
""")


def offer() -> SessionDescription:
    return SessionDescription.parse(SRTP_OFFER)


@pytest.mark.parametrize("text", RFC_LINES)
def test_rfc_4568_examples_parse_and_serialize_back_unchanged(text: str) -> None:
    attr = CryptoAttribute.parse(text)
    assert attr.serialize() == text
    assert CryptoAttribute.parse(attr.serialize()) == attr


def test_parse_splits_key_and_salt_and_keeps_lifetime_and_mki_as_written() -> None:
    attr = CryptoAttribute.parse(RFC_LINES[0])
    assert (attr.tag, attr.suite) == (1, "AES_CM_128_HMAC_SHA1_80")
    assert attr.key == base64.b64decode(KEY30) and len(attr.key) == 30
    assert attr.master_key == attr.key[:16] and attr.master_salt == attr.key[16:]
    assert (attr.lifetime, attr.mki, attr.lifetime_packets) == ("2^20", "1:4", 1 << 20)
    assert CryptoAttribute.parse(RFC_LINES[2]).session_params == ("KDR=1", "UNENCRYPTED_SRTCP")


def test_a_lone_field_is_a_lifetime_unless_it_has_an_mki_colon() -> None:
    assert CryptoAttribute.parse(f"7 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|1048576").lifetime
    only_mki = CryptoAttribute.parse(f"7 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|3:2")
    assert (only_mki.lifetime, only_mki.mki) == (None, "3:2")


def test_several_master_keys_are_kept_verbatim() -> None:
    text = f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|2^20|1:4;inline:{KEY30}|2^20|2:4 WSH=64"
    attr = CryptoAttribute.parse(text)
    assert attr.other_keys == (f"inline:{KEY30}|2^20|2:4",)
    assert attr.serialize() == text
    assert "several master keys" in (attr.unusable_reason() or "")


def test_gcm_suites_take_28_and_44_bytes_of_key_and_salt() -> None:
    k28 = base64.b64encode(bytes(range(28))).decode()
    k44 = base64.b64encode(bytes(range(44))).decode()
    assert CryptoAttribute.parse(f"1 AEAD_AES_128_GCM inline:{k28}").usable
    assert CryptoAttribute.parse(f"1 AEAD_AES_256_GCM inline:{k44}").master_key == bytes(range(32))
    with pytest.raises(ValueError, match="AEAD_AES_128_GCM needs 28 bytes"):
        CryptoAttribute.parse(f"1 AEAD_AES_128_GCM inline:{KEY30}")


def test_unpadded_base64_is_accepted() -> None:
    k28 = base64.b64encode(bytes(28)).decode()
    assert k28.endswith("==")
    assert CryptoAttribute.parse(f"1 AEAD_AES_128_GCM inline:{k28.rstrip('=')}").key == bytes(28)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30[:-4]}",
            "needs 30 bytes of key and salt, got 27",
        ),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:PS1u*CVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR", "not base64"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}A", "not base64"),
        (f"1 AES_CM_128_HMAC_SHA1_80 uri:{KEY30}", "key method is not inline"),
        (f"x AES_CM_128_HMAC_SHA1_80 inline:{KEY30}", "tag is not 1 to 9 digits"),
        (f"1234567890 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}", "tag is not 1 to 9 digits"),
        (f"1 AES-CM inline:{KEY30}", "suite name is malformed"),
        ("1 AES_CM_128_HMAC_SHA1_80", "needs tag, suite and key"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|2^20|1:4|5", "too many"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|forever", "neither lifetime nor MKI"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|1:200", "MKI length must be 1 to 128"),
    ],
)
def test_malformed_crypto_lines_raise_a_value_error_naming_the_problem(
    text: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        CryptoAttribute.parse(text)


def test_unknown_suites_parse_but_are_not_usable() -> None:
    attr = CryptoAttribute.parse(f"1 F8_128_HMAC_SHA1_80 inline:{KEY30}")
    assert attr.unusable_reason() == "suite F8_128_HMAC_SHA1_80 is not supported"


@pytest.mark.parametrize(
    ("params", "usable"),
    [("WSH=128", True), ("KDR=0", True), ("KDR=1", False), ("UNENCRYPTED_SRTP", False)],
)
def test_only_session_parameters_libsrtp_can_honour_are_usable(params: str, usable: bool) -> None:
    attr = CryptoAttribute.parse(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30} {params}")
    assert attr.usable is usable


def test_accept_offer_chooses_the_first_usable_line_and_answers_with_a_fresh_key() -> None:
    theirs, ours = accept_offer(offer(), 0)
    assert (theirs.tag, theirs.suite) == (3, "AES_CM_128_HMAC_SHA1_80")  # 1: F8, 2: has MKI
    assert (ours.tag, ours.suite) == (3, "AES_CM_128_HMAC_SHA1_80")
    assert len(ours.key) == 30 and ours.key != theirs.key
    assert (ours.lifetime, ours.mki, ours.session_params) == (None, None, ())
    assert accept_offer(offer(), 0)[1].key != ours.key  # a new key every time


def test_accept_offer_honours_a_restricted_suite_list() -> None:
    theirs, ours = accept_offer(offer(), 0, suites=["AES_CM_128_HMAC_SHA1_32"])
    assert (theirs.tag, ours.tag, ours.suite) == (4, 4, "AES_CM_128_HMAC_SHA1_32")


def test_accept_offer_without_a_usable_line_raises_sdes_error() -> None:
    desc = offer()
    with pytest.raises(SdesError, match="no usable a=crypto line in m-line 0"):
        accept_offer(desc, 0, suites=["AEAD_AES_256_GCM"])
    with pytest.raises(ValueError):  # SdesError is a ValueError
        accept_offer(strip_crypto(desc, 0), 0)


def test_is_secure_needs_a_savp_profile_and_a_usable_crypto_line() -> None:
    desc = offer()
    assert is_secure(desc, 0)
    assert not is_secure(strip_crypto(desc, 0), 0)
    only_f8 = crlf(SRTP_OFFER.replace("\r\n", "\n").split("a=crypto:2")[0] + "a=sendrecv")
    assert not is_secure(SessionDescription.parse(only_f8), 0)
    avp_with_crypto = SessionDescription.parse(SRTP_OFFER.replace("RTP/SAVP", "RTP/AVP"))
    assert not is_secure(avp_with_crypto, 0)  # best-effort SRTP (mediaenc=srtp) is not taken


def test_strip_crypto_gives_a_plain_avp_stream_and_keeps_everything_else() -> None:
    plain = strip_crypto(offer(), 0)
    media = plain.media[0]
    assert media.proto == "RTP/AVP" and not media.has_attribute("crypto")
    assert [c.encoding for c in media.codecs()] == ["PCMU", "telephone-event"]
    assert "a=crypto" not in plain.serialize() and "a=sendrecv" in plain.serialize()


def test_secure_stream_puts_exactly_our_crypto_line_on_a_savp_answer() -> None:
    theirs, ours = accept_offer(offer(), 0)
    plain_answer = strip_crypto(offer(), 0)  # stands for the callee's plain answer
    answer = secure_stream(plain_answer, 0, ours)
    media = answer.media[0]
    assert media.proto == "RTP/SAVP"
    assert media.attribute_values("crypto") == (ours.serialize(),)
    reparsed = SessionDescription.parse(answer.serialize())
    assert CryptoAttribute.parse(reparsed.media[0].attribute_values("crypto")[0]) == ours


def test_secure_stream_keeps_a_feedback_profile_or_takes_the_given_one() -> None:
    avpf = SessionDescription.parse(SRTP_OFFER.replace("RTP/SAVP", "RTP/AVPF"))
    _, ours = accept_offer(offer(), 0)
    assert secure_stream(avpf, 0, ours).media[0].proto == "RTP/SAVPF"
    assert secure_stream(avpf, 0, ours, proto="RTP/SAVP").media[0].proto == "RTP/SAVP"


def test_make_offer_crypto_gives_fresh_lines_tagged_from_one() -> None:
    lines = make_offer_crypto(["AES_CM_128_HMAC_SHA1_80", "AEAD_AES_256_GCM"])
    assert [(a.tag, a.suite, len(a.key)) for a in lines] == [
        (1, "AES_CM_128_HMAC_SHA1_80", 30),
        (2, "AEAD_AES_256_GCM", 44),
    ]
    assert all(a.usable for a in lines) and lines[0].key != make_offer_crypto()[0].key
    with pytest.raises(SdesError, match="F8_128_HMAC_SHA1_80"):
        make_offer_crypto(["F8_128_HMAC_SHA1_80"])


def answer_with(line: str) -> SessionDescription:
    return SessionDescription.parse(
        crlf(f"""
v=0
o=- 1 1 IN IP4 127.0.0.2
s=-
c=IN IP4 127.0.0.2
t=0 0
m=audio 20000 RTP/SAVP 0
a=crypto:{line}
""")
    )


def test_offering_srtp_then_accepting_the_answer_by_its_tag() -> None:
    offered = make_offer_crypto()
    sent = secure_stream(strip_crypto(offer(), 0), 0, offered)
    assert [CryptoAttribute.parse(v) for v in sent.media[0].attribute_values("crypto")] == offered
    ours, theirs = accept_answer(
        offered, answer_with(f"2 AES_CM_128_HMAC_SHA1_32 inline:{KEY30}"), 0
    )
    assert ours == offered[1] and theirs.key == base64.b64decode(KEY30)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (f"3 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}", "matches no offered line"),
        (f"1 AES_CM_128_HMAC_SHA1_32 inline:{KEY30}", "matches no offered line"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|2^20|1:4", "MKI"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:AAAA", "needs 30 bytes"),
    ],
)
def test_an_answer_that_does_not_match_the_offer_raises_sdes_error(line: str, message: str) -> None:
    with pytest.raises(SdesError, match=message):
        accept_answer(make_offer_crypto(), answer_with(line), 0)


def test_an_answer_needs_exactly_one_crypto_line_on_a_savp_stream() -> None:
    offered = make_offer_crypto()
    plain = SessionDescription.parse(
        answer_with(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}").serialize().replace("SAVP", "AVP")
    )
    with pytest.raises(SdesError, match="not SRTP"):
        accept_answer(offered, plain, 0)
    two = secure_stream(answer_with(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}"), 0, offered)
    with pytest.raises(SdesError, match="2 a=crypto lines"):
        accept_answer(offered, two, 0)


def test_every_supported_suite_round_trips_through_make_and_parse() -> None:
    for attr in make_offer_crypto(list(SUITES)):
        assert CryptoAttribute.parse(attr.serialize()) == attr
