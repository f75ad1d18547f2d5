"""Every read and change the admin pages and the REST API make, in one place.

Owns the web layer's business rules: permission checks (web.auth.can), input validation
(web.validate), one store write per change (all or nothing: each change runs as one job on the
store's writer thread, inside its own savepoint) with its audit entry (pbx.store.audit.record,
who/what/old/new). Functions take the WebContext, the acting Account and plain data (a dict from
a form or a JSON body) and return plain dicts/lists that pages render and the API serialises.
They raise web.errors.ValidationError / Forbidden / NotFound / Conflict.
Accounts, logins and passwords of web accounts live in web.accounts.

The work is split by subject: users (extensions, SIP credentials, provisioning, CSV), sites,
live (devices, registrations, active calls, health, call records), settings (live and process),
audit (reading the log), tokens (API tokens, support access), featurecodes (the feature-code
table and the extensions it keeps off), music (a site's hold music), callcontrol (click-to-call,
hang-up, transfer); _common holds shared helpers.
This module only re-exports their public names, so callers keep using ``services.<name>``.
Must not import flask or twisted.
"""

from __future__ import annotations

from pbx.media.codecs import CODECS
from pbx.store import cdr
from web.services.audit import AUDIT_FILTERS, list_audit
from web.services.callcontrol import hang_up_call, originate_call, transfer_call
from web.services.featurecodes import list_feature_codes
from web.services.live import (
    CALL_FILTERS,
    DIRECTIONS,
    call_counts,
    call_filters,
    export_calls_csv,
    health,
    history_line,
    list_active_calls,
    list_devices,
    list_registrations,
    list_trunks,
    record_dict,
    search_calls,
)
from web.services.music import delete_site_music, get_site_music, upload_site_music
from web.services.settings import (
    DEFAULT_CODEC_ORDER,
    LIVE_CODECS_KEY,
    LIVE_NUMBERS,
    PROCESS_SETTINGS,
    live_settings,
    process_settings,
    update_process_settings,
    update_settings,
)
from web.services.sites import (
    SITE_FIELDS,
    create_site,
    delete_site,
    get_site,
    list_sites,
    site_dict,
    update_site,
)
from web.services.tokens import (
    TOKEN_PREFIX,
    create_support_access,
    create_token,
    hash_token,
    list_tokens,
    revoke_token,
    token_dict,
)
from web.services.trunks import list_dids, list_presets, list_routes, list_trunk_configs
from web.services.users import (
    MAX_IMPORT_ROWS,
    USER_FIELDS,
    create_user,
    delete_user,
    export_users_csv,
    get_user,
    import_users_csv,
    list_users,
    provisioning_summary,
    reset_sip_password,
    show_provisioning,
    update_own_user,
    update_user,
    user_dict,
)

__all__ = [
    "list_dids",
    "list_presets",
    "list_routes",
    "list_trunk_configs",
    "AUDIT_FILTERS",
    "CALL_FILTERS",
    "CODECS",
    "DEFAULT_CODEC_ORDER",
    "DIRECTIONS",
    "LIVE_CODECS_KEY",
    "LIVE_NUMBERS",
    "MAX_IMPORT_ROWS",
    "PROCESS_SETTINGS",
    "SITE_FIELDS",
    "TOKEN_PREFIX",
    "USER_FIELDS",
    "call_counts",
    "call_filters",
    "cdr",
    "create_site",
    "create_support_access",
    "create_token",
    "create_user",
    "delete_site",
    "delete_site_music",
    "delete_user",
    "export_calls_csv",
    "export_users_csv",
    "get_site",
    "get_site_music",
    "get_user",
    "hang_up_call",
    "hash_token",
    "health",
    "history_line",
    "import_users_csv",
    "list_active_calls",
    "list_trunks",
    "list_audit",
    "list_devices",
    "list_feature_codes",
    "list_registrations",
    "list_sites",
    "list_tokens",
    "list_users",
    "originate_call",
    "live_settings",
    "process_settings",
    "provisioning_summary",
    "record_dict",
    "reset_sip_password",
    "revoke_token",
    "search_calls",
    "show_provisioning",
    "site_dict",
    "token_dict",
    "transfer_call",
    "update_own_user",
    "update_process_settings",
    "update_settings",
    "update_site",
    "update_user",
    "upload_site_music",
    "user_dict",
]
