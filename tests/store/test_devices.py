"""Devices learnt from registrations: User-Agent parsing, upkeep and computed state."""

from __future__ import annotations

import pytest

from pbx.store import devices, sites, users
from pbx.store.db import Store
from pbx.store.devices import Sighting, UserAgentInfo, parse_user_agent
from pbx.store.registrations import apply_register

from .conftest import make_binding


@pytest.mark.parametrize(
    ("ua", "expected"),
    [
        ("Yealink SIP-T46S 66.86.0.15", UserAgentInfo("Yealink", "SIP-T46S", None)),
        (
            "Yealink SIP-T54W 96.86.0.100 80:5e:c0:12:34:56",
            UserAgentInfo("Yealink", "SIP-T54W", "805ec0123456"),
        ),
        ("snomD785/10.1.39.11", UserAgentInfo("Snom", "D785", None)),
        ("snom370-SIP 8.7.3.25", UserAgentInfo("Snom", "370", None)),
        (
            "Grandstream GXP2170 1.0.9.69 000b82a1b2c3",
            UserAgentInfo("Grandstream", "GXP2170", "000b82a1b2c3"),
        ),
        ("PolycomVVX-VVX_410-UA/5.9.0.9373", UserAgentInfo("Polycom", "VVX 410", None)),
        (
            "PolycomSoundPointIP-SPIP_650-UA/4.0.3.7562",
            UserAgentInfo("Polycom", "SPIP 650", None),
        ),
        ("innovaphone-IP232/13r2 sr13 [13.7130]", UserAgentInfo("innovaphone", "IP232", None)),
        ("baresip v1.0.0 (x86_64/linux)", UserAgentInfo("baresip", "baresip", None)),
        (
            "Linphone Desktop/4.4.0 (Ubuntu 20.04) LinphoneCore/5.0.0",
            UserAgentInfo("Linphone", "Linphone Desktop", None),
        ),
        ("Zoiper rv2.10.11.1", UserAgentInfo("Zoiper", "Zoiper", None)),
        ("Z 5.4.9 rv2.10.11.1", UserAgentInfo("Zoiper", "Zoiper", None)),
        ("MicroSIP/3.20.7", UserAgentInfo("MicroSIP", "MicroSIP", None)),
        ("sipp/3.6.1", UserAgentInfo("sipp", "", None)),
        ("", UserAgentInfo("", "", None)),
    ],
)
def test_parse_user_agent(ua: str, expected: UserAgentInfo) -> None:
    assert parse_user_agent(ua) == expected


def test_build_numbers_are_not_taken_for_macs() -> None:
    assert parse_user_agent("Phone/1.0 build 123456789012").mac is None


def test_sightings_upsert_one_row_per_device(store: Store) -> None:
    yealink = "Yealink SIP-T46S 66.86.0.15 00:15:65:aa:bb:cc"
    store.write(
        devices.record_sightings,
        [
            Sighting("100", yealink, "127.0.0.5:5060", 10.0),
            Sighting("101", "baresip v1.0.0", "127.0.0.6:5060", 11.0),
            Sighting("101", "baresip v1.0.0", "127.0.0.6:5062", 12.0),
        ],
    )
    # the same MAC registering another extension is the same device
    store.write(devices.record_sightings, [Sighting("102", yealink, "127.0.0.5:5060", 20.0)])
    listed = store.read(devices.list_devices, now=0.0)
    assert [(d.extension, d.mac, d.address) for d in listed] == [
        ("102", "001565aabbcc", "127.0.0.5:5060"),
        ("101", None, "127.0.0.6:5062"),
    ]
    first = listed[0]
    assert (first.first_seen, first.last_seen, first.vendor, first.model) == (
        10.0,
        20.0,
        "Yealink",
        "SIP-T46S",
    )


def test_instance_id_tells_apart_devices_without_mac(store: Store) -> None:
    store.write(
        devices.record_sightings,
        [
            Sighting("100", "MicroSIP/3.20.7", "127.0.0.5:5060", 1.0, "<urn:uuid:1>"),
            Sighting("100", "MicroSIP/3.20.7", "127.0.0.6:5060", 1.0, "<urn:uuid:2>"),
        ],
    )
    assert len(store.read(devices.list_devices)) == 2


def test_state_follows_active_bindings_and_site_filter(store: Store) -> None:
    site = store.write(sites.add_site, "A", "UTC")
    store.write(users.add_user, "100", "Alice", site_id=site.id)
    store.write(users.add_user, "200", "Bob")
    store.write(
        devices.record_sightings,
        [
            Sighting("100", "baresip v1.0.0", "127.0.0.5:5060", 1.0),
            Sighting("200", "MicroSIP/3.20.7", "127.0.0.6:5060", 1.0),
        ],
    )
    binding = make_binding("100", "sip:100@127.0.0.5:5060", 100.0, user_agent="baresip v1.0.0")
    store.write(apply_register, "100", upserts=[binding], removes=[], remove_all=False, now=1.0)
    states = {d.extension: d.state for d in store.read(devices.list_devices, now=50.0)}
    assert states == {"100": "registered", "200": "offline"}
    assert store.read(devices.list_devices, now=100.0)[0].state == "offline"
    assert [d.extension for d in store.read(devices.list_devices, site.id)] == ["100"]
    device_id = store.read(devices.list_devices, site.id)[0].id
    assert store.write(devices.delete_device, device_id) is True
    assert store.write(devices.delete_device, device_id) is False
