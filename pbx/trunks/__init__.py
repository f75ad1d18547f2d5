"""SIP trunks at run time: registrations at providers (and, next, inbound and outbound calls
through them). The stored configuration is pbx.store.trunks; presets are pbx.trunkpresets."""
